"""The workflow against the simulator: checks, the one create per command, refusals in plain words."""

from __future__ import annotations

import asyncio

import pytest

from bot.api_client import LumaClient
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.models import ApiGeneration, GenerationOptions, Kind, State
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore
from tests.conftest import FakeClock

HERE = Origin(guild_id=1, channel_id=11, user_id=100)
OTHER_SERVER = Origin(guild_id=2, channel_id=22, user_id=200)
CREATES = ("POST", "/luma-ai/generations")


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


@pytest.fixture
def service(store: GenerationStore, api: LumaClient, clock: FakeClock) -> GenerationService:
    return GenerationService(store, api, clock=clock)


async def test_generate_records_the_request_and_the_api_id(
    service: GenerationService, store: GenerationStore, simulator: RunningSimulator
) -> None:
    generation = await service.generate(HERE, GenerationOptions("  A  fox in snow ", "4:3", False))
    assert generation.state is State.RUNNING and generation.api_id in simulator.state.generations
    assert generation.prompt == "A fox in snow"
    stored = await store.get_by_api_id(generation.api_id or "")
    assert stored is not None and (stored.guild_id, stored.channel_id, stored.requester_id) == (1, 11, 100)
    sent = simulator.state.requests[-1].json
    assert sent == {"user_prompt": "A fox in snow", "aspect_ratio": "4:3", "expand_prompt": False}


async def test_bad_input_changes_nothing(service: GenerationService, simulator: RunningSimulator, store) -> None:
    for options in [GenerationOptions("   "), GenerationOptions("hi @everyone"), GenerationOptions("ok", "7:1")]:
        with pytest.raises(UserFacingError):
            await service.generate(HERE, options)
    assert simulator.state.count(*CREATES) == 0
    assert await store.recent_for_member(1, 100) == []


async def test_an_api_refusal_is_explained_and_recorded(
    service: GenerationService, simulator: RunningSimulator, store: GenerationStore
) -> None:
    simulator.state.create_faults.append(403)
    with pytest.raises(UserFacingError, match="out of credits"):
        await service.generate(HERE, GenerationOptions("a sunrise"))
    [row] = await store.recent_for_member(1, 100)
    assert row.state is State.REJECTED and row.announced_at is not None


async def test_an_unknown_outcome_is_looked_for_never_resent_and_told_honestly(
    service: GenerationService, simulator: RunningSimulator, store: GenerationStore
) -> None:
    simulator.state.create_faults.append("accept_then_500")
    generation = await service.generate(HERE, GenerationOptions("a sunrise"))
    assert simulator.state.count(*CREATES) == 1
    [row] = await store.recent_for_member(1, 100)
    assert row.state is State.CHECKING and generation.state is State.CHECKING
    assert row.notice_sent_at is not None  # the command's answer told the requester
    note = row.failure_reason or ""
    assert "checking with the video service" in note and "not sent again" in note
    assert "please try again" not in note.lower()
    assert row.next_check_at is not None and row.check_until is not None and row.next_check_at < row.check_until


async def test_another_servers_generation_is_not_found_and_not_leaked(service: GenerationService) -> None:
    mine = await service.generate(HERE, GenerationOptions("secret plans of the castle"))
    with pytest.raises(UserFacingError) as caught:
        await service.find(OTHER_SERVER.guild_id, mine.api_id or "")
    assert "No generation" in caught.value.message and "castle" not in caught.value.message
    with pytest.raises(UserFacingError, match="No generation"):
        await service.find(HERE.guild_id, "a4a8f1ff-e59b-4969-abcb-98b3e16f003e")


async def test_extend_needs_a_finished_video_of_this_server(
    service: GenerationService, simulator: RunningSimulator, clock: FakeClock
) -> None:
    parent = await service.generate(HERE, GenerationOptions("a paper boat"))
    ref = parent.api_id or ""
    with pytest.raises(UserFacingError, match="not finished yet"):
        await service.extend(HERE, ref, GenerationOptions("it sails on"))
    clock.advance(120)
    parent = await service.refresh(parent)
    assert parent.state is State.COMPLETED and parent.video_url
    with pytest.raises(UserFacingError, match="No generation"):
        await service.extend(OTHER_SERVER, ref, GenerationOptions("it sails on"))
    child = await service.extend(HERE, ref, GenerationOptions("it sails on"))
    assert child.kind is Kind.EXTEND and child.parent_api_id == ref
    assert simulator.state.generations[child.api_id or ""].parent_id == ref


async def test_a_failed_parent_cannot_be_extended(service: GenerationService, clock: FakeClock) -> None:
    parent = await service.generate(HERE, GenerationOptions("this will #fail"))
    clock.advance(120)
    parent = await service.refresh(parent)
    assert parent.state is State.FAILED
    with pytest.raises(UserFacingError, match="failed"):
        await service.extend(HERE, parent.api_id or "", GenerationOptions("more"))


async def test_status_refresh_updates_the_row(
    service: GenerationService, store: GenerationStore, clock: FakeClock
) -> None:
    generation = await service.generate(HERE, GenerationOptions("rain on glass"))
    clock.advance(10)
    refreshed = await service.refresh(generation)
    assert refreshed.display_state == "processing"
    stored = await store.get(generation.id)
    assert stored is not None and stored.api_state == "processing"


class SlowApi:
    """An API whose create answers only when the test says so."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.creates = 0

    def model_for(self, parent_api_id: str | None) -> str:
        return "legacy"

    def can_list(self, model: str) -> bool:
        return True

    async def create(self, options: GenerationOptions, model: str) -> ApiGeneration:
        self.creates += 1
        await self.release.wait()
        return ApiGeneration(id=f"slow-{self.creates}", state="pending")


async def test_a_shutdown_waits_for_the_answer_of_a_create_under_way(store: GenerationStore, clock: FakeClock) -> None:
    api = SlowApi()
    service = GenerationService(store, api, clock=clock)  # type: ignore[arg-type]
    submission = asyncio.create_task(service.generate(HERE, GenerationOptions("paid for")))
    while api.creates == 0:
        await asyncio.sleep(0)
    draining = asyncio.create_task(service.drain(5))
    await asyncio.sleep(0.05)
    assert not draining.done()  # still waiting for the API's answer
    api.release.set()
    await draining
    generation = await submission
    assert generation.state is State.RUNNING and generation.api_id == "slow-1"
    with pytest.raises(UserFacingError, match="restarting"):
        await service.generate(HERE, GenerationOptions("too late"))
    assert api.creates == 1


async def test_a_create_still_unanswered_after_the_grace_is_left_to_be_looked_for(
    store: GenerationStore, clock: FakeClock
) -> None:
    api = SlowApi()
    service = GenerationService(store, api, clock=clock)  # type: ignore[arg-type]
    submission = asyncio.create_task(service.generate(HERE, GenerationOptions("never answered")))
    while api.creates == 0:
        await asyncio.sleep(0)
    await service.drain(0.05)
    assert submission.cancelled()
    [row] = await store.recent_for_member(HERE.guild_id, HERE.user_id)
    # Looked for by reconciliation; the tracker tells the requester, who never had an answer.
    assert row.state is State.CHECKING and row.notice_sent_at is None and row.announced_at is None
