"""Live progress: every generation's public status message kept current, at Discord's pace.

Changes are noted into a coalescing map "status message → latest state": a message whose job moved ten times while
it waited for its turn is edited once, showing where the job is now (the row is read when the edit leaves). A drain
task of its own sends the edits within three budgets: one edit per message every `MESSAGE_INTERVAL`, evenly spaced
edits in each channel (Discord counts message edits per channel), and a share of the bot's global request rate, so
that announcements, which run in the tracker's own task, always find room. Jobs that ended go before jobs that
merely moved. An edit Discord refuses for good (message deleted, channel gone, access lost) is dropped; one refused
for now (429, a server error) waits its turn again, a bounded number of times, and a 429 pauses its channel (or every
channel, for a global limit) for as long as Discord asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .models import Generation, State
from .pacing import SlidingWindow

log = logging.getLogger(__name__)

# A status message is edited at most this often: members read it, and Discord counts every edit.
MESSAGE_INTERVAL = 5.0
# Discord allows 5 message edits per 5 s in a channel; the board makes 4, evenly spaced (so that a late request does
# not bunch up with the next ones at Discord), and leaves one for edits made in answer to a press or a command.
CHANNEL_EDIT_SPACING = 1.25
# Of Discord's 50 requests a second per bot, progress edits take at most this many; announcements take theirs
# (bot/pacing.py), and the rest stays free (command answers do not count).
GLOBAL_EDITS = 15
GLOBAL_WINDOW = 1.0
EDITS_IN_FLIGHT = 4
# An edit refused for now is tried again this many times in all, at its turn, then dropped.
MAX_EDIT_ATTEMPTS = 5
# A wait estimate moved by less than this is not worth an edit (the message shows a time that counts down by itself).
READY_AT_TOLERANCE = 20.0
# Messages found gone, and the endings shown, are remembered so that later notes of their job send nothing; the
# oldest are forgotten.
DONE_MEMORY = 10_000
# Endings older than this are not looked for after a restart: their messages are long scrolled away.
SWEEP_HORIZON = 86_400.0


@dataclass(frozen=True)
class StatusView:
    """What a status message shows beyond the stored row: where the job stood when it was noted (which decides
    whether anything visible changed), a waiting job's place in the queue, and when the API expects the video."""

    stage: str = ""
    position: int | None = None
    ready_at: float | None = None

    def looks_like(self, other: StatusView) -> bool:
        """Whether a member would see no difference between the two."""
        if (self.stage, self.position) != (other.stage, other.position):
            return False
        if self.ready_at is None or other.ready_at is None:
            return self.ready_at is other.ready_at
        return abs(self.ready_at - other.ready_at) < READY_AT_TOLERANCE


def ending(state: State) -> StatusView:
    """How an ending is noted: the same whoever notes it, so that it is shown once (another ending, such as a video
    that arrived after all once the bot had stopped waiting, is shown again)."""
    return StatusView(stage=f"ended:{state.value}")


class EditOutcome(Enum):
    SHOWN = "shown"
    # The message can never be edited again (deleted, channel gone, access lost): drop it.
    GONE = "gone"
    # Discord refused for now (429, a server error, no answer): try again at the message's next turn.
    LATER = "later"


@dataclass(frozen=True)
class EditResult:
    outcome: EditOutcome
    # For LATER: how long Discord asked to wait, and whether that holds for every channel (a global limit).
    retry_after: float | None = None
    everywhere: bool = False


SHOWN = EditResult(EditOutcome.SHOWN)
GONE = EditResult(EditOutcome.GONE)


class StatusEditor(Protocol):
    """The Discord side: edit a generation's status message in its channel (never through the interaction)."""

    async def edit(self, generation: Generation, view: StatusView) -> EditResult: ...


class ShownEndings(Protocol):
    """Where the board reads rows, finds endings not shown yet, and records those shown."""

    async def status_generation(self, row_id: int) -> Generation | None: ...

    async def unshown_endings(self, since: float) -> list[Generation]: ...

    async def mark_status_shown(self, row_ids: Sequence[int], now: float) -> None: ...


@dataclass
class _Pending:
    row_id: int
    channel_id: int
    view: StatusView
    final: bool
    attempts: int = 0


class ProgressBoard:
    """The coalescing map of status messages to their latest state, and the task that drains it."""

    def __init__(
        self,
        store: ShownEndings,
        editor: StatusEditor,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        message_interval: float = MESSAGE_INTERVAL,
        channel_spacing: float = CHANNEL_EDIT_SPACING,
        global_edits: int = GLOBAL_EDITS,
        global_window: float = GLOBAL_WINDOW,
        edits_in_flight: int = EDITS_IN_FLIGHT,
    ) -> None:
        self._store = store
        self.editor = editor
        self._clock = clock
        self._wall_clock = wall_clock
        self._message_interval = message_interval
        self._channel_spacing = channel_spacing
        self._edits_in_flight = edits_in_flight
        # Jobs that ended first, then jobs that moved; each in the order first noted (a newer state keeps the turn).
        self._endings: dict[int, _Pending] = {}
        self._moves: dict[int, _Pending] = {}
        self._noted: dict[int, StatusView] = {}  # what each message was last asked to show
        self._last_edit: dict[int, float] = {}  # when each message was last edited
        self._channel_last: dict[int, float] = {}  # when each channel's last edit left
        self._paused: dict[int, float] = {}  # channel (0: every channel) -> until when Discord asked us to wait
        self._global = SlidingWindow(global_edits, global_window)
        # Messages never edited again, the ending each message shows, and rows whose ending is shown (or never can
        # be) but not yet recorded so.
        self._gone: dict[int, None] = {}
        self._ended: dict[int, str] = {}
        self._to_record: dict[int, None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.edits_sent = 0

    # --- noting --------------------------------------------------------------------------------------------

    def note(self, generation: Generation, view: StatusView | None = None) -> None:
        """Show this generation as it is (and as `view` says) on its status message, soon."""
        if generation.status_message_id is None:
            return
        final = generation.state.is_final
        if final:
            view = ending(generation.state)
        view = view or StatusView(stage=generation.state.value)
        self.note_row(generation.id, generation.channel_id, generation.status_message_id, view, final=final)

    def note_row(self, row_id: int, channel_id: int, message_id: int, view: StatusView, *, final: bool = False) -> None:
        """The same, by ids: the row is read when the edit leaves, so the message shows its latest state. An ending
        is noted with `ending(state)`."""
        shown = self._ended.get(message_id)
        if message_id in self._gone or (shown is not None and (not final or view.stage == shown)):
            if final:
                self._to_record[row_id] = None  # shown already, or as shown as a deleted message can be
                self._wake.set()
            return
        if shown is not None:
            del self._ended[message_id]  # a new ending of the same job
        last = self._noted.get(message_id)
        if last is not None and last.looks_like(view):
            return
        pending = self._endings.get(message_id) or self._moves.get(message_id)
        if pending is not None and pending.final and not final:
            return  # the job ended already: nothing it did before is newer
        self._noted[message_id] = view
        if pending is not None and pending.final == final:
            pending.view = view  # coalesced: the newer state takes the older one's turn
            return
        self._moves.pop(message_id, None)
        (self._endings if final else self._moves)[message_id] = _Pending(row_id, channel_id, view, final)
        self._wake.set()

    async def sweep(self) -> None:
        """Note the endings not shown yet: after a restart, or where a job ended by a path that noted nothing."""
        for generation in await self._store.unshown_endings(self._wall_clock() - SWEEP_HORIZON):
            self.note(generation)

    @property
    def waiting(self) -> int:
        """Status messages with a change not yet sent."""
        return len(self._endings) + len(self._moves)

    # --- draining ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain_forever(), name="status-messages")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                next_at = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The map keeps every change: a later round sends it.
                log.exception("Editing status messages failed; trying again shortly")
                next_at = self._clock() + self._message_interval
            timeout = None if next_at is None else max(0.0, next_at - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def send_due(self) -> float | None:
        """Send the edits the budgets allow now; returns when to look again (None: nothing waits)."""
        await self._record_shown()
        now = self._clock()
        shared = max(self._global.free_at(now), self._paused.get(0, now))
        if shared > now:
            return shared if self.waiting else None
        chosen: list[tuple[int, _Pending]] = []
        next_at: float | None = None
        for queue in (self._endings, self._moves):
            for message_id, pending in list(queue.items()):
                if len(chosen) >= self._edits_in_flight or self._global.free_at(now) > now:
                    break
                free_at = self._free_at(message_id, pending.channel_id, now)
                if free_at > now:
                    next_at = free_at if next_at is None else min(next_at, free_at)
                    continue
                del queue[message_id]
                self._take(message_id, pending.channel_id, now)
                chosen.append((message_id, pending))
        if not chosen:
            return next_at
        await asyncio.gather(*(self._edit(message_id, pending) for message_id, pending in chosen))
        await self._record_shown()
        self._forget_idle(now)
        return self._clock()  # more may be due at once

    def _free_at(self, message_id: int, channel_id: int, now: float) -> float:
        """When an edit of this message may leave: the latest of its own interval, its channel's spacing and a pause
        Discord asked for there."""
        last_edit = self._last_edit.get(message_id)
        last_in_channel = self._channel_last.get(channel_id)
        return max(
            now if last_edit is None else last_edit + self._message_interval,
            now if last_in_channel is None else last_in_channel + self._channel_spacing,
            self._paused.get(channel_id, now),
        )

    def _take(self, message_id: int, channel_id: int, now: float) -> None:
        self._last_edit[message_id] = now
        self._channel_last[channel_id] = now
        self._global.take(now)

    async def _edit(self, message_id: int, pending: _Pending) -> None:
        try:
            generation = await self._store.status_generation(pending.row_id)
            if generation is None or generation.status_message_id != message_id:
                self._noted.pop(message_id, None)
                return
            result = await self.editor.edit(generation, pending.view)
        except Exception:
            log.exception("Editing the status message of row %d failed", pending.row_id)
            generation, result = None, EditResult(EditOutcome.LATER)
        self.edits_sent += 1
        final = pending.final or (generation is not None and generation.state.is_final)
        if result.outcome is EditOutcome.LATER:
            if self._again_later(message_id, pending, result):
                return
            log.warning(
                "Gave up editing the status message of row %d after %d attempts", pending.row_id, pending.attempts
            )
            if not final:
                self._noted.pop(message_id, None)  # the job's next change tries again
                return
        elif result.outcome is EditOutcome.GONE:
            log.info("The status message of row %d is gone; it is not edited again", pending.row_id)
            self._forget(message_id)
        elif not final:
            return
        if final:
            shown = ending(generation.state).stage if generation is not None else pending.view.stage
            self._remember_ending(message_id, shown)
            self._to_record[pending.row_id] = None

    def _again_later(self, message_id: int, pending: _Pending, result: EditResult) -> bool:
        """Put a refused edit back for its next turn (unless a newer state was noted meanwhile); False once it has
        had its attempts."""
        if result.retry_after is not None:
            scope = 0 if result.everywhere else pending.channel_id
            self._paused[scope] = max(self._paused.get(scope, 0.0), self._clock() + result.retry_after)
        pending.attempts += 1
        if pending.attempts >= MAX_EDIT_ATTEMPTS:
            return False
        if message_id not in self._endings and message_id not in self._moves:
            (self._endings if pending.final else self._moves)[message_id] = pending
        return True

    def _forget(self, message_id: int) -> None:
        """This message is gone: it is edited no more."""
        self._gone[message_id] = None
        if len(self._gone) > DONE_MEMORY:
            del self._gone[next(iter(self._gone))]
        self._endings.pop(message_id, None)
        self._moves.pop(message_id, None)
        self._noted.pop(message_id, None)
        self._last_edit.pop(message_id, None)

    def _remember_ending(self, message_id: int, stage: str) -> None:
        """This message shows its job's ending (or was given up on it): notes of that same ending send nothing."""
        self._ended[message_id] = stage
        if len(self._ended) > DONE_MEMORY:
            del self._ended[next(iter(self._ended))]
        self._noted.pop(message_id, None)

    def _forget_idle(self, now: float) -> None:
        """Drop the pacing state of messages and channels quiet for longer than their windows."""
        if len(self._last_edit) > 4 * max(self.waiting, 256):
            horizon = now - self._message_interval
            self._last_edit = {m: t for m, t in self._last_edit.items() if t > horizon}
        if len(self._channel_last) > 256:
            horizon = now - self._channel_spacing
            self._channel_last = {c: t for c, t in self._channel_last.items() if t > horizon}
        for scope, until in list(self._paused.items()):
            if until <= now:
                del self._paused[scope]

    async def _record_shown(self) -> None:
        if not self._to_record:
            return
        rows, self._to_record = list(self._to_record), {}
        try:
            await self._store.mark_status_shown(rows, self._wall_clock())
        except Exception as error:
            # Costs at most one more edit of the same endings after a restart.
            log.info("Could not record that %d endings were shown: %s", len(rows), error)

    async def idle(self, clock_step: Callable[[float], Awaitable[None]] | None = None) -> None:
        """Send until nothing waits (for tests and shutdown): `clock_step` moves a test's clock to each due time."""
        while True:
            next_at = await self.send_due()
            if next_at is None:
                return
            if clock_step is not None:
                await clock_step(next_at)
            else:
                await asyncio.sleep(max(0.0, next_at - self._clock()))


class QueuePlaces:
    """The queue runner's board: a waiting job's place, or that it left the queue, goes to its status message."""

    def __init__(self, board: ProgressBoard) -> None:
        self._board = board

    async def show(self, generation: Generation, position: int | None) -> None:
        self._board.note(generation, StatusView(stage=generation.state.value, position=position))
