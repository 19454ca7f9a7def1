"""The tracker against the simulator: batched look-ups, deadlines, and exactly-once announcements."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.api_client import LumaClient
from bot.generations import GenerationService, Origin
from bot.models import ApiGeneration, Delivery, Generation, GenerationOptions, State
from bot.progress import SHOWN, EditResult, ProgressBoard, StatusView
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore
from bot.tracker import MAX_ANNOUNCE_ATTEMPTS, Tracker
from tests.conftest import FakeClock
from tests.fakes import RecordingAnnouncer

HERE = Origin(guild_id=1, channel_id=11, user_id=100)
LOOKUP = ("GET", "/luma-ai/generation")


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


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
    clock.advance(1)  # a cycle later (the last one's look-up lease ran out)
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


class CommitWatcher:
    """An outside connection to the bot's file that notices whether anything was committed since it last looked."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path)
        self._seen = self._version()

    def _version(self) -> int:
        return int(self._connection.execute("PRAGMA data_version").fetchone()[0])

    def written(self) -> bool:
        version = self._version()
        changed, self._seen = version != self._seen, version
        return changed

    def close(self) -> None:
        self._connection.close()


async def start_many(service: GenerationService, count: int) -> list[Generation]:
    return [await service.generate(HERE, GenerationOptions(f"shot {n}")) for n in range(count)]


# Watched through SQLite's own file: the tracker's restraint is the same on either backend.
@pytest.mark.parametrize("any_store", ["sqlite"], indirect=True)
async def test_a_cycle_where_nothing_changed_writes_nothing(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, tmp_path: Path
) -> None:
    started = await start_many(service, 60)
    tracker = make_tracker(store, api, announcer, clock)
    watcher = CommitWatcher(tmp_path / "data" / "bot.sqlite3")
    try:
        await tracker.run_once()
        await tracker.run_once()
        assert not watcher.written()
        clock.advance(6)  # every video moves from pending to processing
        await tracker.run_once()
        assert watcher.written()
        assert {g.api_state for g in await store.running()} == {"processing"}
        await tracker.run_once()
        assert not watcher.written()
    finally:
        watcher.close()
    assert len(await store.running()) == len(started) and announcer.sent == []


async def test_look_ups_run_concurrently_up_to_the_cap_and_stay_at_one_request_per_fifty(
    service: GenerationService, store, api, announcer, clock, simulator: RunningSimulator
) -> None:
    await start_many(service, 101)
    simulator.config.latency_seconds = 0.3

    def most_at_once(requests: Sequence) -> int:  # type: ignore[type-arg]
        return max(sum(1 for o in requests if o.received_at <= r.received_at < (o.answered_at or 0)) for r in requests)

    for cap, expected in ((2, 2), (16, 3)):
        before = len(simulator.state.requests)
        tracker = Tracker(
            store, api, announcer, poll_interval=1, timeout_seconds=600, clock=clock, lookup_concurrency=cap
        )
        await tracker.poll()
        lookups = [r for r in simulator.state.requests[before:] if r.endpoint == "GET /luma-ai/generation"]
        assert len(lookups) == 3
        assert most_at_once(lookups) == expected
        clock.advance(1)  # a cycle later (its look-up leases ran out)


async def test_a_slow_batch_holds_up_neither_the_other_batches_nor_their_announcements(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, simulator
) -> None:
    started = await start_many(service, 101)
    finishing = [started[0], started[50], started[100]]  # one in each batch of fifty
    for generation in finishing:
        simulator.state.generations[generation.api_id].forced_state = "completed"
    simulator.state.lookup_faults.append("slow")  # the first look-up to arrive hangs
    tracker = make_tracker(store, api, announcer, clock)
    tracker.start()
    try:
        async with asyncio.timeout(5):
            while len(announcer.sent) < 2:
                await asyncio.sleep(0.01)
            [slow] = [r for r in simulator.state.requests if r.endpoint == "GET /luma-ai/generation"][:1]
            # Two batches were looked up, written and announced while the third still waits for its answer.
            assert slow.answered_at is None
            while len(announcer.sent) < 3:
                await asyncio.sleep(0.01)
    finally:
        await tracker.stop()
    assert sorted(announcer.sent_ids()) == sorted(g.api_id for g in finishing)


async def test_a_failing_batch_holds_up_neither_the_other_batches_nor_their_announcements(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, simulator
) -> None:
    started = await start_many(service, 101)
    finishing = [started[0], started[50], started[100]]
    for generation in finishing:
        simulator.state.generations[generation.api_id].forced_state = "completed"

    class OneBatchBreaks:
        def __init__(self) -> None:
            self.broken = True

        async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]:
            if self.broken and started[50].api_id in ids:
                raise RuntimeError("unexpected")
            return await api.fetch_many(ids)

    flaky = OneBatchBreaks()
    tracker = Tracker(store, flaky, announcer, poll_interval=1, timeout_seconds=600, clock=clock)  # type: ignore[arg-type]
    await tracker.run_once()
    assert sorted(announcer.sent_ids()) == sorted([started[0].api_id, started[100].api_id])
    flaky.broken = False
    clock.advance(1)  # a cycle later (the last one's look-up leases ran out)
    await tracker.run_once()
    assert sorted(announcer.sent_ids()) == sorted(g.api_id for g in finishing)


async def test_a_video_that_finished_while_the_bot_was_down_is_announced_in_the_first_cycle(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, simulator
) -> None:
    started = await start_many(service, 120)
    clock.advance(6)
    simulator.state.generations[started[77].api_id].forced_state = "completed"
    # A long interval: the second cycle, and the next look through the database for unannounced rows, are
    # 5 seconds away, so only the first cycle can hand this video over within the 3 seconds waited.
    tracker = Tracker(store, api, announcer, poll_interval=5, timeout_seconds=600, clock=clock)
    tracker.start()
    try:
        async with asyncio.timeout(3):
            while not announcer.sent:
                await asyncio.sleep(0.01)
    finally:
        await tracker.stop()
    assert announcer.sent_ids() == [started[77].api_id]


async def test_a_stuck_announcement_holds_up_neither_the_look_ups_nor_other_announcements(
    service: GenerationService, store, api, clock: FakeClock, simulator
) -> None:
    started = await start_many(service, 3)
    simulator.state.generations[started[0].api_id].forced_state = "completed"

    class DiscordHangsOnce(RecordingAnnouncer):
        def __init__(self) -> None:
            super().__init__()
            self.hanging = asyncio.Event()

        async def announce(self, generation: Generation) -> Delivery | None:
            if generation.id == started[0].id:
                self.hanging.set()
                await asyncio.Event().wait()  # Discord never answers this one
            return await super().announce(generation)

    announcer = DiscordHangsOnce()
    # The tracker runs on its own here: its clock moves with real time, so its look-up leases run out each cycle.
    started_at = time.monotonic()
    tracker = Tracker(
        store,
        api,
        announcer,
        poll_interval=0.05,
        timeout_seconds=600,
        clock=lambda: clock() + time.monotonic() - started_at,
    )
    tracker.start()
    try:
        async with asyncio.timeout(5):
            await announcer.hanging.wait()
            lookups_then = simulator.state.count(*LOOKUP)
            while simulator.state.count(*LOOKUP) < lookups_then + 3:  # cycles go on
                await asyncio.sleep(0.01)
            simulator.state.generations[started[1].api_id].forced_state = "completed"
            while not announcer.sent:
                await asyncio.sleep(0.01)
    finally:
        await tracker.stop()
    assert announcer.sent_ids() == [started[1].api_id]


class RecordingEditor:
    """Status message edits, as Discord would receive them; `stuck` makes Discord never answer."""

    def __init__(self) -> None:
        self.edits: list[tuple[Generation, StatusView]] = []
        self.stuck = False
        self.reached = asyncio.Event()

    async def edit(self, generation: Generation, view: StatusView) -> EditResult:
        self.reached.set()
        if self.stuck:
            await asyncio.Event().wait()
        self.edits.append((generation, view))
        return SHOWN


async def test_a_status_message_follows_its_job_to_the_end(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock
) -> None:
    editor = RecordingEditor()
    board = ProgressBoard(store, editor, clock=clock, wall_clock=clock)
    tracker = Tracker(store, api, announcer, poll_interval=0.01, timeout_seconds=600, clock=clock, progress=board)
    job = await service.generate(HERE, GenerationOptions("a lighthouse at dusk"))
    await store.set_status_message(job.id, 4242)
    clock.advance(10)  # the simulator: processing after 5 s, done after 60 s
    await tracker.run_once()
    await board.idle()
    [(dreaming, view)] = editor.edits
    assert dreaming.state is State.RUNNING and dreaming.api_state == "processing"
    assert view.ready_at is not None and view.ready_at == pytest.approx(clock.now + 50, abs=1)
    await tracker.run_once()
    await board.idle()
    assert len(editor.edits) == 1, "nothing changed, yet the message was edited again"
    clock.advance(60)
    await tracker.run_once()
    await board.idle()
    finished = editor.edits[-1][0]
    assert finished.state is State.COMPLETED and finished.video_url
    assert await store.unshown_endings(since=0.0) == []  # recorded: a restart does not edit it again


async def test_an_ending_no_look_up_saw_still_reaches_its_status_message(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock
) -> None:
    editor = RecordingEditor()
    board = ProgressBoard(store, editor, clock=clock, wall_clock=clock)
    tracker = Tracker(store, api, announcer, poll_interval=0.01, timeout_seconds=600, clock=clock, progress=board)
    job = await service.generate(HERE, GenerationOptions("a kite over dunes"))
    await store.set_status_message(job.id, 4243)
    # It ended while the bot was down (or by /status): no look-up of this process saw it change.
    await store.apply_api_update(job.id, ApiGeneration(id=job.api_id or "", state="failed"), clock.now)
    await tracker.run_once()
    await board.idle()
    assert [g.state for g, _ in editor.edits] == [State.FAILED]


async def test_a_discord_that_never_answers_edits_delays_no_announcement(
    service: GenerationService, store, api, announcer: RecordingAnnouncer, clock: FakeClock, simulator
) -> None:
    editor = RecordingEditor()
    editor.stuck = True
    board = ProgressBoard(store, editor, clock=clock, wall_clock=clock)
    tracker = Tracker(store, api, announcer, poll_interval=0.01, timeout_seconds=600, clock=clock, progress=board)
    jobs = await start_many(service, 20)
    for n, job in enumerate(jobs):
        await store.set_status_message(job.id, 5000 + n)
    board.start()
    try:
        clock.advance(10)
        await tracker.poll()
        async with asyncio.timeout(5):
            await editor.reached.wait()  # the board's task is stuck in Discord
        for job in jobs:
            simulator.state.generations[job.api_id].forced_state = "completed"
        clock.advance(1)  # a cycle later (the last one's look-up leases ran out)
        await tracker.poll()
        async with asyncio.timeout(5):
            await tracker.announce_finished()
    finally:
        await board.stop()
    assert sorted(announcer.sent_ids()) == sorted(job.api_id for job in jobs)
    assert board.waiting > 0  # the edits wait their turn; the announcements did not wait for them
