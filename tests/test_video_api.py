"""The maintained endpoint, the router over both endpoints, image frames and the balance, against the simulator."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from bot.api_client import LumaClient
from bot.api_v2 import RayClient, parse_v2_generation, v2_body
from bot.balance import BalanceService
from bot.config import Secret
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.model_choice import ModelChoice
from bot.models import GenerationOptions, State
from bot.prompts import check_image
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore
from bot.tracker import Tracker
from bot.video_api import VideoApiRouter, model_of
from tests.conftest import FAST_RETRY, SIM_KEY, FakeClock
from tests.fakes import RecordingAnnouncer

HERE = Origin(guild_id=1, channel_id=11, user_id=100)
V2_CREATE = ("POST", "/v2/video/generations")
V2_LOOKUP = ("GET", "/v2/video/generations")
LEGACY_CREATE = ("POST", "/luma-ai/generations")


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


def make_router(simulator: RunningSimulator, session: aiohttp.ClientSession, model: str) -> VideoApiRouter:
    def make(kind: type[LumaClient] | type[RayClient]):  # type: ignore[no-untyped-def]
        return kind(session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY, read_timeout=1.0)

    return VideoApiRouter(make(LumaClient), make(RayClient), (model,))


@pytest.fixture
def ray2(simulator: RunningSimulator, http_session: aiohttp.ClientSession) -> VideoApiRouter:
    return make_router(simulator, http_session, "luma/ray-2")


@pytest.fixture
def legacy(simulator: RunningSimulator, http_session: aiohttp.ClientSession) -> VideoApiRouter:
    return make_router(simulator, http_session, "legacy")


def service_for(store: GenerationStore, api: VideoApiRouter, clock: FakeClock, balance=None) -> GenerationService:  # type: ignore[no-untyped-def]
    return GenerationService(store, api, clock=clock, balance=balance, models=ModelChoice(api.models))


async def test_a_generation_on_the_current_endpoint_keeps_its_model_suffix(
    ray2: VideoApiRouter, simulator: RunningSimulator, clock: FakeClock, store: GenerationStore
) -> None:
    service = service_for(store, ray2, clock)
    options = GenerationOptions("a neon city", "21:9", resolution="1080p", duration=9, loop=True)
    generation = await service.generate(HERE, options)
    assert generation.api_id and generation.api_id.endswith(":luma/ray-2")
    assert generation.model == "luma/ray-2" and generation.extras == {
        "resolution": "1080p",
        "duration": 9,
        "loop": True,
    }
    sent = simulator.state.requests[-1].json
    assert sent == {
        "model": "luma/ray-2", "prompt": "a neon city", "aspect_ratio": "21:9",
        "resolution": "1080p", "duration": 9, "loop": True,
    }  # fmt: skip
    assert simulator.state.count(*LEGACY_CREATE) == 0
    clock.advance(10)
    assert (await service.refresh(generation)).display_state == "generating"
    clock.advance(60)
    done = await service.refresh(generation)
    assert done.state is State.COMPLETED and done.video_url


async def test_look_ups_are_one_id_per_request_run_concurrently(
    ray2: VideoApiRouter, simulator: RunningSimulator
) -> None:
    ids = [(await ray2.create(GenerationOptions(f"shot {n}"), "luma/ray-2")).id for n in range(12)]
    found = await ray2.fetch_many([*ids, "00000000-0000-0000-0000-000000000000:luma/ray-2"])
    assert set(found) == set(ids)
    assert simulator.state.count(*V2_LOOKUP) == 13


async def test_one_failing_look_up_does_not_hide_the_others(
    simulator: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = RayClient(http_session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY)
    client.lookup_concurrency = 1  # one at a time, so the first look-up meets every fault
    ids = [(await client.create(GenerationOptions(f"shot {n}"), "luma/ray-2")).id for n in range(3)]
    simulator.state.lookup_faults.extend([500] * FAST_RETRY.attempts)
    found = await client.fetch_many(ids)
    assert set(found) == set(ids[1:])


async def test_an_error_status_is_a_failure_with_its_reason(
    ray2: VideoApiRouter, clock: FakeClock, store: GenerationStore
) -> None:
    service = service_for(store, ray2, clock)
    generation = await service.generate(HERE, GenerationOptions("doomed #fail"))
    clock.advance(61)
    failed = await service.refresh(generation)
    assert failed.state is State.FAILED and failed.failure_reason


async def test_extend_on_the_current_endpoint_sends_the_parent_as_frame0(
    ray2: VideoApiRouter, simulator: RunningSimulator, clock: FakeClock, store: GenerationStore
) -> None:
    service = service_for(store, ray2, clock)
    parent = await service.generate(HERE, GenerationOptions("a door opens"))
    clock.advance(61)
    await service.refresh(parent)
    child = await service.extend(HERE, parent.api_id or "", GenerationOptions("we walk through"))
    assert simulator.state.requests[-1].json["keyframes"] == {"frame0": {"type": "generation", "id": parent.api_id}}
    assert child.parent_api_id == parent.api_id and child.model == "luma/ray-2"


async def test_switching_the_setting_keeps_older_generations_working(
    simulator: RunningSimulator, http_session: aiohttp.ClientSession, clock: FakeClock, store: GenerationStore
) -> None:
    old = await service_for(store, make_router(simulator, http_session, "legacy"), clock).generate(
        HERE, GenerationOptions("made on the legacy endpoint")
    )
    router = make_router(simulator, http_session, "luma/ray-flash-2")
    service = service_for(store, router, clock)
    new = await service.generate(HERE, GenerationOptions("made on the current endpoint"))
    announcer = RecordingAnnouncer()
    clock.advance(61)
    await Tracker(store, router, announcer, poll_interval=1, timeout_seconds=600, clock=clock).run_once()
    assert sorted(announcer.sent_ids()) == sorted([old.api_id, new.api_id])
    child = await service.extend(HERE, old.api_id or "", GenerationOptions("continued where it was made"))
    assert child.model == "legacy" and simulator.state.generations[child.api_id or ""].parent_id == old.api_id


async def test_a_retired_endpoint_is_told_plainly_to_members_and_named_to_the_operator(
    legacy: VideoApiRouter, simulator: RunningSimulator, clock: FakeClock, store: GenerationStore, caplog
) -> None:  # type: ignore[no-untyped-def]
    simulator.config.legacy_enabled = False
    service = service_for(store, legacy, clock)
    with caplog.at_level(logging.ERROR), pytest.raises(UserFacingError) as caught:
        await service.generate(HERE, GenerationOptions("anyone there?"))
    assert "Dream Machine is unavailable" in caught.value.message and "LUMA" not in caught.value.message
    assert any("LUMA_MODELS" in record.getMessage() for record in caplog.records)
    # From then on it is refused before anything is sent.
    with pytest.raises(UserFacingError, match="unavailable right now"):
        await service.generate(HERE, GenerationOptions("anyone at all?"))
    assert simulator.state.count(*LEGACY_CREATE) == 1


async def test_options_a_model_does_not_take_are_refused_naming_the_model(
    legacy: VideoApiRouter, clock: FakeClock, store: GenerationStore, simulator: RunningSimulator
) -> None:
    with pytest.raises(UserFacingError, match="Dream Machine has one resolution"):
        await service_for(store, legacy, clock).generate(HERE, GenerationOptions("x y z", resolution="4k", loop=False))
    assert simulator.state.count(*LEGACY_CREATE) == 0


@pytest.mark.parametrize("model", ["legacy", "luma/ray-2"])
async def test_image_frames_reach_the_api_on_both_endpoints(
    model: str, simulator: RunningSimulator, http_session: aiohttp.ClientSession, clock: FakeClock, store
) -> None:  # type: ignore[no-untyped-def]
    service = service_for(store, make_router(simulator, http_session, model), clock)
    options = GenerationOptions(
        "from a photo", image_url="https://cdn.example/a.png", image_end_url="https://cdn.example/b.png"
    )
    generation = await service.generate(HERE, options)
    made = simulator.state.generations[generation.api_id or ""]
    assert (made.image_url, made.image_end_url) == ("https://cdn.example/a.png", "https://cdn.example/b.png")


async def test_a_finished_videos_last_frame_can_start_a_new_one(
    legacy: VideoApiRouter, clock: FakeClock, store: GenerationStore
) -> None:
    service = service_for(store, legacy, clock)
    first = await service.generate(HERE, GenerationOptions("a sunset"))
    with pytest.raises(UserFacingError, match="not a finished video"):
        await service.last_frame_of(1, first.api_id or "")
    clock.advance(61)
    await service.refresh(first)
    frame = await service.last_frame_of(1, first.api_id or "")
    assert frame.endswith("-last.jpg")


@pytest.mark.parametrize(
    ("content_type", "size", "reason"),
    [
        ("image/gif", 10, "PNG, JPEG or WebP"),
        (None, 10, "PNG, JPEG or WebP"),
        ("image/png", 11 * 1024 * 1024, "at most 10 MiB"),
    ],
)
def test_images_are_checked_for_type_and_size(content_type: str | None, size: int, reason: str) -> None:
    check_image("image", "image/jpeg", 1024)
    with pytest.raises(UserFacingError, match=reason):
        check_image("image", content_type, size)


async def test_a_balance_that_cannot_cover_a_video_refuses_before_sending(
    legacy: VideoApiRouter, simulator: RunningSimulator, clock: FakeClock, store: GenerationStore
) -> None:
    simulator.state.balance = 400_000
    balance = BalanceService(legacy, low_warning=0, clock=clock)
    with pytest.raises(UserFacingError, match="can't cover a video"):
        await service_for(store, legacy, clock, balance).generate(HERE, GenerationOptions("too expensive"))
    assert simulator.state.count(*LEGACY_CREATE) == 0


async def test_the_cached_balance_counts_down_with_each_video(
    legacy: VideoApiRouter, simulator: RunningSimulator, clock: FakeClock, store: GenerationStore
) -> None:
    simulator.state.balance = 1_200_000
    balance = BalanceService(legacy, low_warning=0, clock=clock)
    service = service_for(store, legacy, clock, balance)
    await service.generate(HERE, GenerationOptions("one"))
    await service.generate(HERE, GenerationOptions("two"))
    with pytest.raises(UserFacingError, match="can't cover"):
        await service.generate(HERE, GenerationOptions("three"))
    assert simulator.state.count("GET", "/v1/billing/balance") == 1


async def test_a_balance_the_key_cannot_read_does_not_block(
    simulator: RunningSimulator, http_session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    unauthorised = LumaClient(http_session, simulator.base_url, Secret("wrong"), retry=FAST_RETRY)
    balance = BalanceService(unauthorised, low_warning=0, clock=clock)
    assert await balance.read() is None
    await balance.ensure_affordable()


async def test_a_low_balance_is_logged_once_an_hour(
    legacy: VideoApiRouter, simulator, clock: FakeClock, caplog
) -> None:  # type: ignore[no-untyped-def]
    simulator.state.balance = 2_000_000
    balance = BalanceService(legacy, low_warning=5_000_000, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bot.balance"):
        for _ in range(5):
            await balance.read(max_age=0)
            clock.advance(60)
        clock.advance(3600)
        await balance.read(max_age=0)
    warnings = [r for r in caplog.records if "balance is low" in r.getMessage()]
    assert len(warnings) == 2 and "about 4 videos" in warnings[0].getMessage()


async def test_the_newer_billing_path_is_used_when_the_older_is_gone(legacy: VideoApiRouter, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.state.lookup_faults.clear()
    simulator.state.balance = 7_000_000
    # The simulator serves both; ask the newer one directly through the same parser.
    reading = await legacy.balance()
    assert reading.amount == 7_000_000


def test_model_of_reads_the_id_suffix() -> None:
    assert model_of("a4a8f1ff-e59b-4969-abcb-98b3e16f003e") == "legacy"
    assert model_of("7c88:luma/ray-flash-2") == "luma/ray-flash-2"


def test_v2_parsing_and_bodies() -> None:
    parsed = parse_v2_generation(
        {"id": "x:luma/ray-2", "status": "error", "video": None, "error": {"name": "E", "message": "blocked"}}
    )
    assert parsed.is_failed and parsed.failure_reason == "blocked"
    done = parse_v2_generation(
        {
            "id": "x:luma/ray-2",
            "status": "completed",
            "video": {"url": "u"},
            "meta": {"usage": {"credits_used": 120000}},
        }
    )
    assert done.is_completed and done.video_url == "u" and done.credits_used == 120000
    body = v2_body(GenerationOptions("p", image_url="https://a", image_end_url="https://b"), "luma/ray-2")
    assert body["keyframes"] == {
        "frame0": {"type": "image", "url": "https://a"},
        "frame1": {"type": "image", "url": "https://b"},
    }


async def test_a_low_balance_is_logged_once_an_hour_across_processes_sharing_the_database(
    legacy: VideoApiRouter, simulator, clock: FakeClock, caplog, store: GenerationStore
) -> None:  # type: ignore[no-untyped-def]
    simulator.state.balance = 2_000_000
    # Three processes (each its own balance service) noting their notices in one database.
    processes = [
        BalanceService(legacy, low_warning=5_000_000, clock=clock, notices=store, wall_clock=clock) for _ in range(3)
    ]
    with caplog.at_level(logging.WARNING, logger="bot.balance"):
        for _ in range(5):
            for balance in processes:
                await balance.read(max_age=0)
            clock.advance(60)
        clock.advance(3600)
        for balance in processes:
            await balance.read(max_age=0)
    warnings = [r for r in caplog.records if "balance is low" in r.getMessage()]
    assert len(warnings) == 2
