"""The tracker against the simulator: batched look-ups, deadlines, and exactly-once announcements."""

from __future__ import annotations

import pytest

from bot.api_client import LumaClient
from bot.generations import GenerationService, Origin
from bot.models import Delivery, GenerationOptions, State
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore
from bot.tracker import Tracker
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
