"""Live progress in simulated time: status messages edited at Discord's pace, only their latest state, never stale.

The board runs against the fake Discord's own rate-limit model on a clock the test moves, so every count is exact
and nothing depends on how busy the machine is.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Sequence

from bot.models import Generation, Kind, State
from bot.progress import (
    GONE,
    MAX_EDIT_ATTEMPTS,
    MESSAGE_INTERVAL,
    SHOWN,
    EditOutcome,
    EditResult,
    ProgressBoard,
    StatusView,
    ending,
)
from tests.conftest import FakeClock
from tests.e2e.fake_discord.ratelimits import EDIT_MESSAGE, RateLimits

START = 1_800_000_000.0


def make(row_id: int, channel_id: int, **changes: object) -> Generation:
    values: dict[str, object] = dict(
        id=row_id, api_id=f"api-{row_id}", parent_api_id=None, kind=Kind.GENERATE, guild_id=1, channel_id=channel_id,
        requester_id=3, prompt="a cat", aspect_ratio="16:9", expand_prompt=True, state=State.RUNNING,
        api_state="pending", video_url=None, thumbnail_url=None, last_frame_url=None, failure_reason=None,
        status_message_id=10_000 + row_id, created_at=START, updated_at=START, submitted_at=START, finished_at=None,
        announce_claimed_at=None, announce_attempts=0, announced_at=None, delivery=None,
    )  # fmt: skip
    values.update(changes)
    return Generation(**values)  # type: ignore[arg-type]


class Rows:
    """The rows the board reads, as the tracker and the queue leave them."""

    def __init__(self) -> None:
        self.rows: dict[int, Generation] = {}
        self.shown: list[int] = []

    def put(self, generation: Generation) -> Generation:
        self.rows[generation.id] = generation
        return generation

    def change(self, row_id: int, **changes: object) -> Generation:
        return self.put(dataclasses.replace(self.rows[row_id], **changes))  # type: ignore[arg-type]

    async def status_generation(self, row_id: int) -> Generation | None:
        return self.rows.get(row_id)

    async def unshown_endings(self, since: float) -> list[Generation]:
        return [g for g in self.rows.values() if g.state.is_final and g.id not in self.shown]

    async def mark_status_shown(self, row_ids: Sequence[int], now: float) -> None:
        self.shown.extend(row_ids)


class DiscordEdits:
    """Message edits as the fake Discord answers them: within its per-channel limits, or 429."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.limits = RateLimits(clock=clock)
        self.edits: dict[int, list[tuple[float, Generation, StatusView]]] = defaultdict(list)
        self.gone: set[int] = set()
        self.refusing: dict[int, EditResult] = {}

    async def edit(self, generation: Generation, view: StatusView) -> EditResult:
        message_id = generation.status_message_id
        assert message_id is not None
        if message_id in self.gone:
            return GONE
        if message_id in self.refusing:
            return self.refusing[message_id]
        verdict = self.limits.check(EDIT_MESSAGE, {"channel_id": str(generation.channel_id)})
        if verdict is not None and not verdict.allowed:
            return EditResult(EditOutcome.LATER, retry_after=verdict.reset_after)
        self.edits[message_id].append((self.clock(), generation, view))
        return SHOWN

    def shown(self, generation: Generation) -> Generation:
        assert generation.status_message_id is not None
        return self.edits[generation.status_message_id][-1][1]


def board_for(rows: Rows, discord: DiscordEdits, clock: FakeClock) -> ProgressBoard:
    return ProgressBoard(rows, discord, clock=clock, wall_clock=clock)


async def run_until(board: ProgressBoard, clock: FakeClock, until: float) -> None:
    """Send whatever is due, moving the clock from due time to due time, up to `until`."""
    while True:
        next_at = await board.send_due()
        if next_at is None or next_at > until:
            clock.now = max(clock.now, until)
            return
        clock.now = max(clock.now, next_at)


async def test_two_hundred_running_jobs_stay_within_discords_limits_and_end_showing_their_last_state() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    jobs = [rows.put(make(n, channel_id=500 + n % 10)) for n in range(200)]  # 20 jobs in each of 10 channels
    notes = 0
    # Every second for two minutes each job moves (a new state or a new wait estimate), then all of them finish.
    for second in range(120):
        for job in jobs:
            stage = ("pending", "dreaming")[second % 2]
            rows.change(job.id, api_state=stage)
            board.note_row(job.id, job.channel_id, 10_000 + job.id, StatusView(stage, ready_at=START + 1000 + second))
            notes += 1
        await run_until(board, clock, START + second + 1)
    for job in jobs:
        board.note(rows.change(job.id, state=State.COMPLETED, video_url=f"https://cdn.example/{job.id}.mp4"))
    await run_until(board, clock, START + 1000)

    assert board.waiting == 0
    assert discord.limits.refused() == 0, "Discord answered 429"
    edits = sum(len(sent) for sent in discord.edits.values())
    assert edits < notes / 10, f"{edits} edits for {notes} changes: not coalesced"
    for job in jobs:
        sent = discord.edits[10_000 + job.id]
        gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(sent)]
        assert min(gaps) >= 5.0, f"message of job {job.id} edited {min(gaps)} s after the last edit"
        assert discord.shown(job).state is State.COMPLETED, "a finished job's message still shows it running"
    for channel in range(500, 510):
        # Discord's own window for message edits in a channel: 5 per 5 s. The board keeps one free.
        assert discord.limits.busiest_window(EDIT_MESSAGE, f"channel_id={channel}", 5.0) <= 4
    assert sorted(rows.shown) == sorted(job.id for job in jobs)


async def test_a_message_is_edited_once_per_interval_with_only_the_newest_state() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    job = rows.put(make(1, channel_id=5))
    board.note(job, StatusView("pending"))
    await board.send_due()
    for stage in ("processing", "dreaming", "pending", "dreaming"):
        board.note(rows.change(1, api_state=stage), StatusView(stage))
        await board.send_due()
        clock.advance(1)
    await run_until(board, clock, clock.now + 60)

    sent = discord.edits[job.status_message_id or 0]
    assert [view.stage for _, _, view in sent] == ["pending", "dreaming"]
    assert sent[1][0] - sent[0][0] == MESSAGE_INTERVAL


async def test_a_change_members_would_not_see_sends_no_edit() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    job = rows.put(make(1, channel_id=5))
    board.note(job, StatusView("dreaming", ready_at=START + 100))
    await run_until(board, clock, START + 10)
    board.note(job, StatusView("dreaming", ready_at=START + 105))  # the estimate moved by 5 s: same countdown
    await run_until(board, clock, START + 20)
    board.note(job, StatusView("dreaming", ready_at=START + 300))  # it moved by minutes: worth telling
    await run_until(board, clock, START + 30)

    assert [view.ready_at for _, _, view in discord.edits[job.status_message_id or 0]] == [START + 100, START + 300]


async def test_endings_go_before_jobs_that_merely_moved() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = ProgressBoard(rows, discord, clock=clock, wall_clock=clock, edits_in_flight=1)
    moving = [rows.put(make(n, channel_id=5)) for n in range(1, 4)]
    for job in moving:
        board.note(job, StatusView("dreaming"))
    finished = rows.put(make(9, channel_id=5, state=State.FAILED, failure_reason="The prompt was refused."))
    board.note(finished)
    await board.send_due()

    assert list(discord.edits) == [finished.status_message_id]


async def test_a_deleted_message_is_dropped_and_never_tried_again() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    job = rows.put(make(1, channel_id=5))
    discord.gone.add(job.status_message_id or 0)
    attempts_before = board.edits_sent
    board.note(job, StatusView("pending"))
    await run_until(board, clock, START + 60)
    for stage in ("processing", "dreaming"):
        board.note(rows.change(1, api_state=stage), StatusView(stage))
        await run_until(board, clock, clock.now + 60)
    board.note(rows.change(1, state=State.COMPLETED))
    await board.sweep()
    await run_until(board, clock, clock.now + 60)

    assert board.edits_sent - attempts_before == 1, "a message found gone was tried again"
    assert board.waiting == 0
    assert rows.shown == [1], "the ending of a gone message is not recorded as done: the sweep would try forever"


async def test_an_edit_refused_for_now_waits_as_long_as_discord_asks_and_is_given_up_after_a_few_tries() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    job = rows.put(make(1, channel_id=5, state=State.COMPLETED))
    neighbour = rows.put(make(2, channel_id=5))
    discord.refusing[job.status_message_id or 0] = EditResult(EditOutcome.LATER, retry_after=30.0)
    board.note(job)
    await board.send_due()
    board.note(neighbour, StatusView("dreaming"))
    await run_until(board, clock, START + 29)
    assert discord.edits[neighbour.status_message_id or 0] == [], "the channel was edited during Discord's pause"
    await run_until(board, clock, START + 3600)

    assert board.edits_sent == MAX_EDIT_ATTEMPTS + 1  # the refused ending's attempts, then the neighbour
    assert discord.edits[neighbour.status_message_id or 0][0][0] >= START + 30
    assert rows.shown == [1], "a given-up ending would be swept up and tried again, in a loop"
    await board.sweep()
    await run_until(board, clock, START + 7200)
    assert board.edits_sent == MAX_EDIT_ATTEMPTS + 1


async def test_a_global_limit_pauses_every_channel() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    first = rows.put(make(1, channel_id=5))
    other = rows.put(make(2, channel_id=6))
    discord.refusing[first.status_message_id or 0] = EditResult(EditOutcome.LATER, retry_after=10.0, everywhere=True)
    board.note(first, StatusView("dreaming"))
    await board.send_due()
    del discord.refusing[first.status_message_id or 0]
    board.note(other, StatusView("dreaming"))
    await run_until(board, clock, START + 60)

    assert discord.edits[other.status_message_id or 0][0][0] >= START + 10
    assert discord.edits[first.status_message_id or 0][0][0] >= START + 10


async def test_the_sweep_shows_endings_nobody_noted_once() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    # A job that ended while the bot was down, and one without a status message.
    ended = rows.put(make(1, channel_id=5, state=State.NOT_RECEIVED, failure_reason="It never arrived."))
    rows.put(make(2, channel_id=5, state=State.COMPLETED, status_message_id=None))
    for _ in range(3):
        await board.sweep()
        await run_until(board, clock, clock.now + 60)

    assert [g.state for _, g, _ in discord.edits[ended.status_message_id or 0]] == [State.NOT_RECEIVED]
    assert rows.shown == [1]


async def test_a_row_whose_message_changed_is_not_edited_at_its_old_message() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    job = rows.put(make(1, channel_id=5))
    board.note(job, StatusView("dreaming"))
    rows.change(1, status_message_id=99)
    await run_until(board, clock, START + 60)

    assert discord.edits == {}


async def test_an_ending_noted_by_every_path_is_shown_once_and_a_later_different_ending_again() -> None:
    clock, rows = FakeClock(START), Rows()
    discord = DiscordEdits(clock)
    board = board_for(rows, discord, clock)
    job = rows.put(make(1, channel_id=5))
    late = rows.change(1, state=State.TIMED_OUT, failure_reason="It took too long.")
    # The look-up that timed it out, its announcement and the sweep all note the same ending.
    board.note_row(job.id, job.channel_id, job.status_message_id or 0, ending(State.TIMED_OUT), final=True)
    await run_until(board, clock, START + 10)
    board.note(late)
    await board.sweep()
    await run_until(board, clock, START + 20)
    assert [g.state for _, g, _ in discord.edits[job.status_message_id or 0]] == [State.TIMED_OUT]
    # The video arrived after all (/status saw it): the message shows it, once.
    arrived = rows.change(1, state=State.COMPLETED, video_url="https://cdn.example/1.mp4")
    rows.shown.clear()
    board.note(arrived)
    await board.sweep()
    await run_until(board, clock, START + 60)
    assert [g.state for _, g, _ in discord.edits[job.status_message_id or 0]] == [State.TIMED_OUT, State.COMPLETED]
    assert rows.shown == [1]
