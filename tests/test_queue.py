"""The queue on a real SQLite file and the simulator: the fair order, the caps, 429s, cancel, expiry, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.api_client import LumaClient
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.models import Generation, GenerationOptions, State
from bot.moderation import ModerationService
from bot.queue import QueueRunner, Waiting, fair_order
from bot.quota import LimitReached, ServerLimits
from bot.reconcile import CheckSchedule, Reconciler
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore, SqliteStore
from bot.tracker import Tracker
from cogs.moderation import usage_embed
from tests.conftest import FAST_RETRY, FakeClock
from tests.fakes import RecordingAnnouncer

ALICE = Origin(guild_id=1, channel_id=11, user_id=100)
BOB = Origin(guild_id=1, channel_id=11, user_id=200)
MODERATOR = Origin(guild_id=1, channel_id=11, user_id=300, is_moderator=True)
CAROL = Origin(guild_id=2, channel_id=22, user_id=400)
DAVE = Origin(guild_id=3, channel_id=33, user_id=500)
CREATES = ("POST", "/luma-ai/generations")
TIMEOUT = 3600.0


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


class RecordingBoard:
    """The status messages, as the runner edits them."""

    def __init__(self) -> None:
        self.shown: list[tuple[int, State, int | None]] = []

    async def show(self, generation: Generation, position: int | None) -> None:
        self.shown.append((generation.id, generation.state, position))

    def last(self, row_id: int) -> tuple[State, int | None]:
        return [(state, place) for shown_id, state, place in self.shown if shown_id == row_id][-1]


class Bot:
    """The services of one bot process over one database."""

    def __init__(self, store: GenerationStore, api: LumaClient, clock: FakeClock, *, max_running: int) -> None:
        self.store = store
        self.moderation = ModerationService(store, ServerLimits(), global_daily=0, clock=clock)
        self.service = GenerationService(store, api, moderation=self.moderation, clock=clock, max_running=max_running)
        self.board = RecordingBoard()
        self.runner = QueueRunner(
            store,
            self.service,
            self.moderation.rules,
            max_running=max_running,
            timeout_seconds=TIMEOUT,
            board=self.board,
            clock=clock,
            edit_interval=0.0,
        )
        self.service.wake_queue = self.runner.wake
        self.announcer = RecordingAnnouncer()
        reconciler = Reconciler(store, api, schedule=CheckSchedule(first_check_seconds=1), clock=clock)
        self.tracker = Tracker(
            store,
            api,
            self.announcer,
            poll_interval=1,
            timeout_seconds=1800,
            clock=clock,
            queue=self.runner,
            reconciler=reconciler,
        )

    async def generate(self, origin: Origin, prompt: str) -> Generation:
        return await self.service.generate(origin, GenerationOptions(prompt))

    async def settle(self) -> None:
        """Let the queue start what fits and every send get its answer."""
        await self.runner.idle()
        await self.runner.run_once()
        await self.runner.idle()


@pytest.fixture
def bot(store: GenerationStore, api: LumaClient, clock: FakeClock) -> Bot:
    return Bot(store, api, clock, max_running=2)


def job(row_id: int, guild: int, user: int) -> Waiting:
    return Waiting(row_id, guild, user, queued_at=float(row_id))


def test_the_fair_order_takes_turns_between_servers_then_members_then_age() -> None:
    # Server 1 floods the queue (two members), server 2 has three jobs, server 3 one, queued last.
    waiting = [job(1, 1, 10), job(2, 1, 10), job(3, 1, 10), job(4, 1, 11), job(5, 2, 20), job(6, 1, 11)]
    waiting += [job(7, 2, 20), job(8, 2, 21), job(9, 3, 30), job(10, 1, 10)]
    order = [w.row_id for w in fair_order(waiting, {})]
    # Each round: server 1, 2, 3 in turn (none started yet, so by their oldest job); within server 1 the members
    # alternate; oldest first within a member.
    assert order == [1, 5, 9, 4, 8, 2, 7, 6, 3, 10]
    # A server that started a job a moment ago comes last; one that started long ago before one that just did.
    recent = {(1, 10): 500.0, (2, 20): 100.0}
    assert [w.row_id for w in fair_order(waiting, recent)][:4] == [9, 8, 4, 5]


def test_one_flooding_server_delays_another_servers_first_job_by_one_turn_at_most() -> None:
    flood = [job(n, 1, 10) for n in range(1, 51)]
    late = job(99, 2, 20)
    order = [w.row_id for w in fair_order([*flood, late], {(2, 20): 10.0, (1, 10): 5.0})]
    assert order.index(99) <= 1


async def test_the_operator_cap_queues_what_would_pass_it_and_starts_it_when_a_slot_frees(
    bot: Bot, simulator: RunningSimulator, clock: FakeClock
) -> None:
    first = await bot.generate(ALICE, "first of three")
    second = await bot.generate(CAROL, "second of three")
    third = await bot.generate(DAVE, "third of three")
    assert (first.state, second.state, third.state) == (State.RUNNING, State.RUNNING, State.QUEUED)
    await bot.settle()
    assert simulator.state.count(*CREATES) == 2
    assert await bot.service.position(third) == 1
    clock.advance(61)  # the simulator finishes the first two
    await bot.tracker.poll()
    await bot.settle()
    started = await bot.service.current(third)
    assert started.state is State.RUNNING and started.api_id in simulator.state.generations
    assert simulator.state.count(*CREATES) == 3


async def test_the_server_cap_queues_within_the_server_only(bot: Bot, simulator: RunningSimulator) -> None:
    await bot.moderation.set_limits(1, {"server_concurrent": 1})
    mine = await bot.generate(ALICE, "the server's one slot")
    bobs = await bot.generate(BOB, "waits for the server's slot")
    elsewhere = await bot.generate(CAROL, "another server is not held up")
    assert (mine.state, bobs.state, elsewhere.state) == (State.RUNNING, State.QUEUED, State.RUNNING)
    await bot.settle()
    assert (await bot.service.current(bobs)).state is State.QUEUED  # the operator's 2 are used, and the server's 1


async def test_the_member_cap_queues_and_the_member_queue_is_limited(
    store: GenerationStore, api: LumaClient, clock: FakeClock, simulator: RunningSimulator
) -> None:
    bot = Bot(store, api, clock, max_running=0)
    await bot.moderation.set_limits(1, {"user_concurrent": 1, "user_queued": 1})
    running = await bot.generate(ALICE, "alice's running one")
    waiting = await bot.generate(ALICE, "alice's waiting one")
    assert (running.state, waiting.state) == (State.RUNNING, State.QUEUED)
    with pytest.raises(LimitReached, match="1 of 1 videos waiting") as refused:
        await bot.generate(ALICE, "one too many")
    assert refused.value.limit == "user_queued"
    assert (await bot.generate(BOB, "bob is not held up")).state is State.RUNNING
    clock.advance(61)
    await bot.tracker.poll()
    await bot.settle()
    assert (await bot.service.current(waiting)).state is State.RUNNING
    assert simulator.state.count(*CREATES) == 3


async def test_a_429_puts_the_job_back_at_its_place_and_it_is_sent_once_later(
    store: GenerationStore, api: LumaClient, simulator: RunningSimulator, clock: FakeClock
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    await bot.generate(ALICE, "holds the slot")
    waiting = await bot.generate(CAROL, "refused with 429 first")
    behind = await bot.generate(CAROL, "queued behind it")
    clock.advance(61)
    await bot.tracker.poll()
    # The API refuses every try of the client (429: provably not accepted, not charged).
    simulator.state.create_faults.extend([429] * FAST_RETRY.attempts)
    made_before = len(simulator.state.generations)
    await bot.settle()
    back = await bot.service.current(waiting)
    assert back.state is State.QUEUED and back.queue_attempts == 1 and back.api_id is None
    assert back.queued_at == waiting.queued_at  # its place is kept
    assert (await bot.service.current(behind)).state is State.RUNNING  # the free slot did not stay idle
    assert len(simulator.state.generations) == made_before + 1
    await bot.settle()
    assert (await bot.service.current(waiting)).state is State.QUEUED  # backing off
    clock.advance(61)  # the one that took the free slot is done, and the backoff is over
    await bot.tracker.poll()
    await bot.settle()
    sent = await bot.service.current(waiting)
    assert sent.state is State.RUNNING
    prompts = [g.prompt for g in simulator.state.generations.values()]
    assert prompts.count("refused with 429 first") == 1


async def test_a_direct_create_answered_429_waits_in_the_queue_instead_of_failing(
    bot: Bot, simulator: RunningSimulator, clock: FakeClock
) -> None:
    simulator.state.create_faults.extend([429] * FAST_RETRY.attempts)
    waiting = await bot.generate(ALICE, "the api is busy")
    assert waiting.state is State.QUEUED and waiting.api_id is None
    clock.advance(20)
    await bot.settle()
    assert (await bot.service.current(waiting)).state is State.RUNNING
    assert [g.prompt for g in simulator.state.generations.values()] == ["the api is busy"]


async def test_cancel_and_expiry_give_the_count_back(
    store: GenerationStore, api: LumaClient, clock: FakeClock, simulator: RunningSimulator
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    await bot.moderation.set_limits(1, {"user_daily": 2})
    await bot.generate(ALICE, "runs")
    waiting = await bot.generate(ALICE, "waits, counted")
    with pytest.raises(LimitReached, match="2 of 2"):
        await bot.generate(ALICE, "over the daily limit")
    cancelled = await bot.service.cancel(ALICE, waiting.reference)
    assert cancelled.state is State.CANCELLED
    expiring = await bot.generate(ALICE, "accepted once the count came back")
    assert expiring.state is State.QUEUED
    clock.advance(TIMEOUT + 1)
    # The running one is over too by now, but expiry comes first: it waited longer than the timeout.
    await bot.settle()
    await bot.tracker.poll()
    dropped = await bot.service.current(expiring)
    assert dropped.state is State.EXPIRED and dropped.finished_at is not None
    await bot.tracker.announce_finished()
    await bot.tracker.announce_finished()
    # Its requester is told, once; the cancelled one is not announced (the canceller was answered).
    told = [g.id for g in bot.announcer.sent if g.state is not State.COMPLETED]
    assert told == [expiring.id]
    assert (await bot.generate(ALICE, "the expired one gave its count back")).state is State.RUNNING
    assert simulator.state.count(*CREATES) == 2


async def test_positions_are_shown_and_follow_the_queue(
    store: GenerationStore, api: LumaClient, clock: FakeClock
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    await bot.generate(ALICE, "the one slot")
    first = await bot.generate(CAROL, "first in line")
    second = await bot.generate(CAROL, "second in line")
    for row, message_id in ((first, 9001), (second, 9002)):
        await bot.service.attach_status_message(row, message_id)
    await bot.settle()
    assert bot.board.last(first.id) == (State.QUEUED, 1) and bot.board.last(second.id) == (State.QUEUED, 2)
    edits = len(bot.board.shown)
    await bot.settle()
    assert len(bot.board.shown) == edits  # nothing moved, nothing edited
    clock.advance(61)
    await bot.tracker.poll()
    await bot.settle()
    # The first left the queue (its message shows it running, without a place); the second moved up.
    assert bot.board.last(first.id) == (State.RUNNING, None)
    assert bot.board.last(second.id) == (State.QUEUED, 1)


async def test_only_the_process_holding_the_board_edits_the_status_messages(
    store: GenerationStore, api: LumaClient, clock: FakeClock
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    holds = [False]

    async def shows_positions() -> bool:
        return holds[0]

    bot.runner = QueueRunner(
        store,
        bot.service,
        bot.moderation.rules,
        max_running=1,
        timeout_seconds=TIMEOUT,
        board=bot.board,
        clock=clock,
        edit_interval=0.0,
        shows_positions=shows_positions,
    )
    bot.service.wake_queue = bot.runner.wake
    await bot.generate(ALICE, "the one slot")
    waiting = await bot.generate(CAROL, "in line")
    await bot.service.attach_status_message(waiting, 9001)
    await bot.settle()
    assert bot.board.shown == []  # another process edits them
    holds[0] = True
    await bot.settle()
    assert bot.board.last(waiting.id) == (State.QUEUED, 1)


async def test_cancel_by_requester_or_moderator_never_another_member_nor_a_running_job(bot: Bot) -> None:
    running = await bot.generate(ALICE, "slot one")
    await bot.generate(BOB, "slot two")
    own = await bot.generate(ALICE, "alice cancels this")
    moderated = await bot.generate(ALICE, "a moderator cancels this")
    with pytest.raises(UserFacingError, match="another member"):
        await bot.service.cancel(BOB, own.reference)
    assert (await bot.service.current(own)).state is State.QUEUED
    assert (await bot.service.cancel(ALICE, own.reference)).state is State.CANCELLED
    assert (await bot.service.cancel(MODERATOR, moderated.reference)).state is State.CANCELLED
    with pytest.raises(UserFacingError, match="can't stop a video once it has started"):
        await bot.service.cancel(ALICE, running.api_id or "")
    with pytest.raises(UserFacingError, match="not waiting any more"):
        await bot.service.cancel(ALICE, own.reference)
    with pytest.raises(UserFacingError, match="No generation"):
        await bot.service.cancel(Origin(guild_id=2, channel_id=22, user_id=100), moderated.reference)


async def test_a_crash_while_jobs_wait_and_one_is_being_sent_sends_each_once_and_announces_each_once(
    tmp_path: Path, api: LumaClient, clock: FakeClock, simulator: RunningSimulator
) -> None:
    path = tmp_path / "bot.sqlite3"
    store = await SqliteStore.open(path)
    before = Bot(store, api, clock, max_running=1)
    await before.generate(ALICE, "running before the crash")
    waiting = [await before.generate(origin, f"waiting {n}") for n, origin in enumerate((BOB, CAROL, DAVE))]
    await before.runner.idle()
    # The runner had moved one to 'submitting' and its request was on the way when the process died (kill -9:
    # nothing after this line of the old process runs). It reached the API.
    being_sent = await store.claim_queued(waiting[0].id, clock(), max_running=0, server_cap=0, user_cap=0)
    assert being_sent is not None
    await api.create(GenerationOptions(being_sent.prompt), "legacy")
    await store.close()

    store = await SqliteStore.open(path)
    after = Bot(store, api, clock, max_running=1)
    [recovered] = await after.service.recover_interrupted()
    assert recovered.id == being_sent.id and recovered.state is State.CHECKING
    for _ in range(12):
        clock.advance(61)
        await after.tracker.run_once()
        await after.runner.idle()
    prompts = [g.prompt for g in simulator.state.generations.values()]
    assert sorted(prompts) == sorted(["running before the crash", "waiting 0", "waiting 1", "waiting 2"])
    announced = [g.prompt for g in after.announcer.sent if g.state is State.COMPLETED]
    assert sorted(announced) == sorted(prompts)
    await store.close()


async def test_usage_counts_the_jobs_that_waited_and_their_median_wait(
    store: GenerationStore, api: LumaClient, clock: FakeClock
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    await bot.generate(ALICE, "starts at once")
    await bot.generate(BOB, "waits one round")
    await bot.generate(ALICE, "waits two rounds")
    for _ in range(2):
        clock.advance(61)
        await bot.tracker.poll()
        await bot.settle()
    summary = await bot.moderation.usage(1, 1)
    assert summary.waited == 2 and summary.median_wait == pytest.approx((61 + 122) / 2)
    fields = {field.name: field.value for field in usage_embed(summary).fields}
    assert fields["Waited in the queue"] == "2, median wait 2 min"


async def test_a_job_that_waited_long_and_lost_its_create_answer_is_still_found_by_when_it_was_sent(
    store: GenerationStore, api: LumaClient, clock: FakeClock, simulator: RunningSimulator
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    first = await bot.generate(ALICE, "the one running")
    waiting = await bot.generate(BOB, "waits ten minutes")
    assert waiting.state is State.QUEUED
    clock.advance(600)  # the running one finishes only now: the waiting job is sent ten minutes after it was queued
    simulator.state.create_faults.append("accept_then_500")
    await bot.tracker.poll()
    await bot.settle()
    assert (await bot.service.current(waiting)).state is State.CHECKING
    clock.advance(31)  # the workflow's first look comes after 30 s
    await bot.tracker.run_side_jobs()
    found = await bot.service.current(waiting)
    [made] = [gen.id for gen in simulator.state.generations.values() if gen.prompt == "waits ten minutes"]
    assert found.state is State.RUNNING and found.api_id == made
    assert first.api_id != made and simulator.state.count(*CREATES) == 2


async def test_a_new_command_does_not_overtake_a_job_of_its_server_waiting_for_a_freed_slot(
    store: GenerationStore, api: LumaClient, clock: FakeClock, simulator: RunningSimulator
) -> None:
    bot = Bot(store, api, clock, max_running=1)
    await bot.generate(ALICE, "the one running")
    waiting = await bot.generate(BOB, "first in line")
    clock.advance(61)
    await bot.tracker.poll()  # the running one finishes: its slot is free, the runner not yet through its pass
    later = await bot.generate(MODERATOR, "asked after the slot freed")
    await bot.settle()
    assert (await bot.service.current(waiting)).state is State.RUNNING
    assert (await bot.service.current(later)).state is State.QUEUED
