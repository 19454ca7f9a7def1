"""A database that cannot be written: nothing accepted is lost, nothing is promised twice, and members hear plainly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from bot.adopt import adopt
from bot.api_client import LumaClient
from bot.api_v2 import RayClient
from bot.config import Secret
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.model_choice import ModelChoice
from bot.models import ApiGeneration, Generation, GenerationOptions, State
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore, StorageOutcomeUnknown
from bot.tracker import Tracker
from bot.video_api import VideoApiRouter
from tests.conftest import FAST_RETRY, SIM_KEY, FakeClock
from tests.fakes import RecordingAnnouncer

ALICE = Origin(guild_id=1, channel_id=11, user_id=100)
CREATES = ("POST", "/luma-ai/generations")


async def refuse_writes(store: GenerationStore, refused: bool) -> None:
    """Make the store's own connection read-only (as a read-only or full disk would), or writable again."""
    await store._writer.run(lambda connection: connection.execute(f"PRAGMA query_only = {'ON' if refused else 'OFF'}"))


class DiskFailsDuringCreate:
    """The API accepts the create; while its answer travels back, the database stops taking writes."""

    def __init__(self, inner: LumaClient, store: GenerationStore) -> None:
        self._inner = inner
        self._store = store

    def can_list(self, model: str) -> bool:
        return self._inner.can_list(model)

    async def create(self, options: GenerationOptions, model: str) -> ApiGeneration:
        accepted = await self._inner.create(options, model)
        await refuse_writes(self._store, True)
        return accepted


async def wait_for_state(store: GenerationStore, row_id: int, state: State) -> None:
    async with asyncio.timeout(5.0):
        while (found := await store.get(row_id)) is None or found.state is not state:
            await asyncio.sleep(0.05)


async def test_an_accepted_id_is_kept_until_the_database_takes_it_and_then_announced_once(
    store: GenerationStore, api: LumaClient, clock: FakeClock, simulator: RunningSimulator
) -> None:
    service = GenerationService(store, DiskFailsDuringCreate(api, store), clock=clock)  # type: ignore[arg-type]
    generation = await service.generate(ALICE, GenerationOptions("A paid video on a bad disk"))
    # The member is told the video is on its way, not to try again.
    assert generation.state is State.RUNNING and generation.api_id in simulator.state.generations
    stored = await store.get(generation.id)
    assert stored is not None and stored.state is State.SUBMITTING
    await service.attach_status_message(generation, 4242)  # harmless while the disk refuses
    await asyncio.sleep(1.0)
    assert (await store.get(generation.id)).state is State.SUBMITTING  # type: ignore[union-attr]
    await refuse_writes(store, False)
    await wait_for_state(store, generation.id, State.RUNNING)
    recorded = await store.get(generation.id)
    assert recorded is not None and recorded.api_id == generation.api_id

    announcer = RecordingAnnouncer()
    tracker = Tracker(store, api, announcer, poll_interval=0.01, timeout_seconds=600, clock=clock)
    clock.advance(61)
    for _ in range(3):
        await tracker.run_once()
    assert announcer.sent_ids() == [generation.api_id]
    assert simulator.state.count(*CREATES) == 1


async def test_a_database_that_cannot_be_written_refuses_new_videos_in_plain_words(
    store: GenerationStore,
    api: LumaClient,
    clock: FakeClock,
    simulator: RunningSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = GenerationService(store, api, clock=clock)
    await refuse_writes(store, True)
    with caplog.at_level(logging.ERROR):
        for n in range(3):
            with pytest.raises(UserFacingError) as refused:
                await service.generate(ALICE, GenerationOptions(f"Video number {n}"))
            assert "Nothing was sent or charged" in refused.value.message
    assert simulator.state.count(*CREATES) == 0
    # The cause once (not a traceback per command), in the operator's log.
    causes = [record for record in caplog.records if "cannot be written" in record.getMessage()]
    assert len(causes) == 1 and "readonly" in causes[0].getMessage() and causes[0].exc_info is None
    # Reads still work.
    assert (await store.usage_now(1, ALICE.user_id, 0)).user_today == 0
    await refuse_writes(store, False)
    assert (await service.generate(ALICE, GenerationOptions("Back to work"))).state is State.RUNNING


async def test_an_unknown_create_on_an_endpoint_without_a_list_is_told_honestly(
    store: GenerationStore,
    clock: FakeClock,
    simulator: RunningSimulator,
    http_session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    legacy = LumaClient(http_session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY)
    current = RayClient(http_session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY)
    service_api = VideoApiRouter(legacy, current, ("luma/ray-2",))
    service = GenerationService(store, service_api, clock=clock, models=ModelChoice(service_api.models))
    simulator.state.create_faults.append("accept_then_500")
    with caplog.at_level(logging.WARNING), pytest.raises(UserFacingError) as told:
        await service.generate(ALICE, GenerationOptions("A ray of light"))
    assert "could not confirm" in told.value.message and "`/status` will show it" in told.value.message
    assert "try again" not in told.value.message
    [row] = await store.recent_for_member(1, ALICE.user_id)
    assert row.state is State.UNCONFIRMED and row.announced_at is not None  # told by the command's answer
    # The operator has what is needed to check by hand.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"row {row.id}" in logged and "A ray of light" in logged and "python -m bot.adopt" in logged
    assert simulator.state.count("POST", "/v2/video/generations") == 1

    # The operator finds it by hand and hands it over: the requester gets the video, once.
    [made] = simulator.state.generations
    with pytest.raises(UserFacingError, match="no row"):
        await adopt(store, service_api, row.id + 1, made)
    with pytest.raises(UserFacingError, match="made with legacy"):
        await adopt(store, service_api, row.id, made.split(":")[0])  # the id without its model
    with pytest.raises(UserFacingError, match="does not know"):
        await adopt(store, service_api, row.id, "00000000-0000-4000-8000-000000000000:luma/ray-2")
    assert "announces it" in await adopt(store, service_api, row.id, made)
    with pytest.raises(UserFacingError, match="only a request without a confirmed id"):
        await adopt(store, service_api, row.id, made)
    announcer = RecordingAnnouncer()
    tracker = Tracker(store, service_api, announcer, poll_interval=0.01, timeout_seconds=600, clock=clock)
    clock.advance(61)
    for _ in range(3):
        await tracker.run_once()
    assert announcer.sent_ids() == [made] and announcer.sent[0].state is State.COMPLETED


async def test_a_request_whose_saving_had_no_answer_is_not_called_unsent(
    store: GenerationStore,
    api: LumaClient,
    clock: FakeClock,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reserve = store.reserve

    async def commit_unanswered(**request: Any) -> Generation:
        await reserve(**request)  # kept by the database, but the answer to its commit was lost
        raise StorageOutcomeUnknown("connection was closed in the middle of operation")

    monkeypatch.setattr(store, "reserve", commit_unanswered)
    service = GenerationService(store, api, clock=clock)
    with pytest.raises(UserFacingError) as told:
        await service.generate(ALICE, GenerationOptions("A request in a storm"))
    answer = told.value.message
    assert "may have been recorded" in answer and "`/status` will show it" in answer
    assert "Nothing was sent" not in answer and "try again" not in answer
    assert [row.prompt for row in await store.recent_for_member(1, ALICE.user_id)] == ["A request in a storm"]
    # Not sent by this command, which does not know what was kept: nothing can be sent twice.
    assert simulator.state.count(*CREATES) == 0
