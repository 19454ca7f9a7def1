"""The tracker against the simulator: batched look-ups, deadlines, and exactly-once announcements."""

from __future__ import annotations

import asyncio

import pytest

from bot.api_client import LumaClient
from bot.generations import GenerationService, Origin
from bot.models import Delivery, GenerationOptions, Kind, State
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore
from bot.tracker import MAX_ANNOUNCE_ATTEMPTS, Tracker
from tests.conftest import FakeClock
from tests.fakes import RecordingAnnouncer

HERE = Origin(guild_id=1, channel_id=11, user_id=100)
LOOKUP = ("GET", "/luma-ai/generation")


@pytest.fixture
def announcer() -> RecordingAnnouncer:
    return RecordingAnnouncer()


@pytest.fixture
def service(store: GenerationStore, api: LumaClient, clock: FakeClock) -> GenerationService:
    return GenerationService(store, api, clock=clock)


def make_tracker(store, api, announcer, clock, timeout_seconds: float = 600) -> Tracker:
    return Tracker(store, api, announcer, poll_interval=0.01, timeout_seconds=timeout_seconds, clock=clock)


async def test_each_finished_generation_is_announced_once(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock
) -> None:
    tracker = make_tracker(store, api, announcer, clock)
    ok = await service.generate(HERE, GenerationOptions("a calm sea"))
    bad = await service.generate(HERE, GenerationOptions("a storm #fail"))
    await tracker.run_once()
    assert announcer.sent == []
    clock.advance(61)
    for _ in range(3):
        await tracker.run_once()
    assert sorted(announcer.sent_ids()) == sorted([ok.api_id, bad.api_id])
    by_id = {g.api_id: g for g in announcer.sent}
    assert by_id[ok.api_id].state is State.COMPLETED and by_id[ok.api_id].video_url
    assert by_id[bad.api_id].state is State.FAILED and by_id[bad.api_id].failure_reason
    stored = await store.get(ok.id)
    assert stored is not None and stored.delivery is Delivery.CHANNEL


async def test_look_up_requests_grow_with_pending_over_fifty(
    service: GenerationService, store, api, announcer, clock, simulator: RunningSimulator
) -> None:
    tracker = make_tracker(store, api, announcer, clock)
    for n in range(101):
        await service.generate(HERE, GenerationOptions(f"shot {n}"))
    before = simulator.state.count(*LOOKUP)
    await tracker.run_once()
    assert simulator.state.count(*LOOKUP) - before == 3


async def test_a_generation_past_the_deadline_is_timed_out_and_told(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, simulator
) -> None:
    tracker = make_tracker(store, api, announcer, clock, timeout_seconds=30)
    generation = await service.generate(HERE, GenerationOptions("very slow"))
    clock.advance(31)
    await tracker.run_once()
    [told] = announcer.sent
    assert told.id == generation.id
    assert told.state is State.TIMED_OUT and "0.5 minutes" in (told.failure_reason or "")


async def test_look_up_outages_delay_but_do_not_lose_announcements(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, simulator
) -> None:
    tracker = make_tracker(store, api, announcer, clock)
    generation = await service.generate(HERE, GenerationOptions("resilient"))
    clock.advance(61)
    simulator.state.lookup_faults.extend([500] * 4)
    await tracker.run_once()
    assert announcer.sent == []
    await tracker.run_once()
    assert announcer.sent_ids() == [generation.api_id]


async def test_a_restart_after_an_unconfirmed_send_checks_before_announcing_again(
    service: GenerationService, store, api, clock: FakeClock
) -> None:
    generation = await service.generate(HERE, GenerationOptions("once only"))
    clock.advance(61)
    # First life: the message reaches Discord but the bot dies before recording it.
    await make_tracker(store, api, RecordingAnnouncer(), clock).poll()
    await store.claim_announcement(generation.id, clock())
    # Second life: the announcer finds the earlier message, so nothing is sent again.
    second = RecordingAnnouncer()
    second.visible_earlier[generation.id] = Delivery.CHANNEL
    await make_tracker(store, api, second, clock).run_once()
    assert second.sent == [] and second.lookups == [generation.id]
    stored = await store.get(generation.id)
    assert stored is not None and stored.announced_at is not None


async def test_a_claimed_announcement_that_never_arrived_is_sent(
    service: GenerationService, store, api, clock: FakeClock
) -> None:
    generation = await service.generate(HERE, GenerationOptions("once only"))
    clock.advance(61)
    await make_tracker(store, api, RecordingAnnouncer(), clock).poll()
    await store.claim_announcement(generation.id, clock())
    second = RecordingAnnouncer()
    await make_tracker(store, api, second, clock).run_once()
    assert second.sent_ids() == [generation.api_id]


async def test_interrupted_creates_are_reported_not_resent(
    store: GenerationStore, api, clock: FakeClock, simulator: RunningSimulator
) -> None:
    row = await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=11,
        requester_id=100,
        options=GenerationOptions("cut short"),
        parent_api_id=None,
        now=clock(),
    )
    announcer = RecordingAnnouncer()
    tracker = make_tracker(store, api, announcer, clock)
    recovered = await tracker.recover()
    await tracker.run_once()
    assert [g.id for g in recovered] == [row.id]
    [told] = announcer.sent
    assert told.state is State.UNCONFIRMED and "not sent again" in (told.failure_reason or "")
    assert simulator.state.count("POST", "/luma-ai/generations") == 0


async def test_passing_discord_failures_are_retried_then_given_up(
    service: GenerationService, store, api, clock: FakeClock
) -> None:
    generation = await service.generate(HERE, GenerationOptions("unlucky"))
    clock.advance(61)
    announcer = RecordingAnnouncer()
    announcer.outcome = None
    tracker = make_tracker(store, api, announcer, clock)
    for _ in range(MAX_ANNOUNCE_ATTEMPTS):
        await tracker.run_once()
    assert await store.unannounced() != []  # every attempt so far failed for passing reasons: keep trying
    await tracker.run_once()
    stored = await store.get(generation.id)
    assert stored is not None and stored.delivery is Delivery.UNDELIVERABLE
    assert await store.unannounced() == []


async def test_the_background_task_runs_and_stops(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock
) -> None:
    tracker = make_tracker(store, api, announcer, clock)
    generation = await service.generate(HERE, GenerationOptions("in the background"))
    clock.advance(61)
    tracker.start()
    try:
        async with asyncio.timeout(5):
            while not announcer.sent:
                await asyncio.sleep(0.01)
    finally:
        await tracker.stop()
    assert announcer.sent_ids() == [generation.api_id]


async def test_a_late_video_shows_in_status_without_a_second_announcement(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock
) -> None:
    tracker = make_tracker(store, api, announcer, clock, timeout_seconds=30)
    generation = await service.generate(HERE, GenerationOptions("fashionably late"))
    clock.advance(31)
    await tracker.run_once()
    clock.advance(60)
    late = await service.refresh(await service.find(HERE.guild_id, generation.api_id or ""))
    assert late.state is State.COMPLETED and late.video_url
    await tracker.run_once()
    assert [g.state for g in announcer.sent] == [State.TIMED_OUT]


async def test_an_announcer_that_keeps_raising_is_given_up_too(
    service: GenerationService, store, api, clock: FakeClock
) -> None:
    class Broken(RecordingAnnouncer):
        async def announce(self, generation):  # type: ignore[no-untyped-def]
            raise RuntimeError("unexpected")

    generation = await service.generate(HERE, GenerationOptions("cursed"))
    clock.advance(61)
    tracker = make_tracker(store, api, Broken(), clock)
    for _ in range(MAX_ANNOUNCE_ATTEMPTS + 1):
        await tracker.run_once()
    stored = await store.get(generation.id)
    assert stored is not None and stored.delivery is Delivery.UNDELIVERABLE


async def test_a_failing_look_up_does_not_hold_back_finished_announcements(
    service: GenerationService, store, api, clock: FakeClock
) -> None:
    class BrokenApi:
        async def fetch_many(self, ids):  # type: ignore[no-untyped-def]
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "garbled")

    generation = await service.generate(HERE, GenerationOptions("already done"))
    clock.advance(61)
    await service.refresh(generation)
    announcer = RecordingAnnouncer()
    await Tracker(store, BrokenApi(), announcer, poll_interval=1, timeout_seconds=600, clock=clock).run_once()  # type: ignore[arg-type]
    assert announcer.sent_ids() == [generation.api_id]
