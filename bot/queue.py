"""The queue: jobs past a running cap wait in the database and start, fairly, as slots free.

A waiting job is a generations row in the `queued` state holding all its options; it was counted against the daily
limits when it was accepted. The runner moves one to `submitting` (before its request leaves, as a direct create)
when the caps allow, and hands it to the same send path as a direct create. The order is fair between servers:
the server whose last job started longest ago goes first, within it the member whose last job started longest ago,
then the oldest job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .models import Generation, State
from .quota import GuildRules
from .storage import GenerationStore

log = logging.getLogger(__name__)

# Who started a job within this long counts for fairness; longer ago is as good as never.
FAIRNESS_MEMORY_SECONDS = 86_400.0
# A status message's position is edited at most this often (Discord's rate limits, and members' eyes).
POSITION_EDIT_INTERVAL = 3.0
# A job that left the queue before its status message was known is shown for this long once the id arrives.
LEFT_QUEUE_MEMORY_SECONDS = 120.0
MAX_STARTS_PER_PASS = 100

# A start time: never started (-1, 0) before a real time (0, t) before a place given in this ordering (1, n).
_Stamp = tuple[int, float]
_NEVER: _Stamp = (-1, 0.0)


@dataclass(frozen=True)
class Waiting:
    """What the fair order looks at of a waiting job."""

    row_id: int
    guild_id: int
    requester_id: int
    queued_at: float


def fair_order(waiting: Sequence[Waiting], last_starts: Mapping[tuple[int, int], float]) -> list[Waiting]:
    """The order in which waiting jobs start: each turn goes to the server that started a job least recently, within
    it to the member who started one least recently, then to the oldest job. A job given its turn counts as a start
    for the turns after it, so one busy server takes every other turn at most."""
    server_last: dict[int, _Stamp] = {}
    member_last: dict[tuple[int, int], _Stamp] = {}
    for (guild_id, user_id), started in last_starts.items():
        member_last[(guild_id, user_id)] = (0, started)
        server_last[guild_id] = max(server_last.get(guild_id, _NEVER), (0, started))
    remaining = sorted(waiting, key=lambda job: (job.queued_at, job.row_id))
    order: list[Waiting] = []
    while remaining:
        turn = min(
            remaining,
            key=lambda job: (
                server_last.get(job.guild_id, _NEVER),
                member_last.get((job.guild_id, job.requester_id), _NEVER),
                job.queued_at,
                job.row_id,
            ),
        )
        remaining.remove(turn)
        stamp: _Stamp = (1, float(len(order)))
        server_last[turn.guild_id] = stamp
        member_last[(turn.guild_id, turn.requester_id)] = stamp
        order.append(turn)
    return order


def waiting_of(row: Generation) -> Waiting:
    return Waiting(row.id, row.guild_id, row.requester_id, row.queued_at or row.created_at)


async def positions(store: GenerationStore, now: float) -> dict[int, int]:
    """Each waiting job's place in the queue (1 = next), by row id."""
    waiting = [waiting_of(row) for row in await store.queued()]
    if not waiting:
        return {}  # the usual case: nothing to order, and the day's starts need not be read
    order = fair_order(waiting, await store.last_starts(now - FAIRNESS_MEMORY_SECONDS))
    return {job.row_id: place for place, job in enumerate(order, start=1)}


class QueuedSender(Protocol):
    """The generation workflow, as the runner needs it: the one send path every create takes."""

    @property
    def closing(self) -> bool: ...

    async def send_queued(self, row: Generation) -> Generation: ...


class QueueBoard(Protocol):
    """The Discord side: a waiting job's status message, edited to show its place or that it left the queue."""

    async def show(self, generation: Generation, position: int | None) -> None:
        """Edit the status message; a failed edit is dropped (the next change edits it again)."""


class QueueRunner:
    """Expires jobs that waited too long, starts what the caps allow in the fair order, keeps positions shown."""

    def __init__(
        self,
        store: GenerationStore,
        sender: QueuedSender,
        rules: Callable[[int], Awaitable[GuildRules]],
        *,
        max_running: int,
        timeout_seconds: float,
        board: QueueBoard | None = None,
        clock: Callable[[], float] = time.time,
        edit_interval: float = POSITION_EDIT_INTERVAL,
        shows_positions: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """`shows_positions` says whether this process is the one (of those sharing the database) that edits the
        waiting jobs' status messages now; without it, this one does."""
        self._shows_positions = shows_positions
        self._store = store
        self._sender = sender
        self._rules = rules
        self._max_running = max_running
        self._timeout_seconds = timeout_seconds
        self.board = board
        self._clock = clock
        self._edit_interval = edit_interval
        self._lock = asyncio.Lock()
        self._sending: set[asyncio.Task[Generation]] = set()
        self._wake: asyncio.Task[None] | None = None
        self._wake_again = False
        # What each status message shows now (a place, or None once the job left the queue), and when it was edited.
        self._shown: dict[int, tuple[int | None, float]] = {}
        self._left: dict[int, float] = {}
        # Status messages are edited beside the passes, so a slow Discord never holds up starting jobs.
        self._showing: asyncio.Task[None] | None = None
        self._show_again = False
        self._stopped = False

    async def run_once(self) -> None:
        """One pass: drop stale jobs, start what fits, then (in the background) edit positions that changed."""
        if self._lock.locked():
            self._wake_again = True  # a woken pass is under way: it runs once more
            return
        await self._pass()

    async def _pass(self) -> None:
        async with self._lock:
            await self._expire()
            await self._start_what_fits()
        self._show_soon()

    def _show_soon(self) -> None:
        if self.board is None:
            return
        if self._showing is not None and not self._showing.done():
            self._show_again = True
            return
        self._showing = asyncio.create_task(self._show_while_changing(), name="queue-positions")

    async def _show_while_changing(self) -> None:
        self._show_again = True
        while self._show_again:
            self._show_again = False
            try:
                await self._show_positions()
            except Exception:
                log.exception("Updating the queue's status messages failed; the next pass tries again")

    def wake(self) -> None:
        """Run a pass soon (a slot freed, or a job was queued); passes asked for meanwhile are merged into one."""
        if self._stopped:
            return
        if self._wake is not None and not self._wake.done():
            self._wake_again = True
            return
        self._wake = asyncio.create_task(self._woken(), name="queue-runner")

    async def _woken(self) -> None:
        self._wake_again = True
        while self._wake_again:
            self._wake_again = False
            try:
                await self._pass()
            except Exception:
                # The tracker's cycle runs the queue again soon; a bad pass must not end waking.
                log.exception("Running the queue failed; the next tracker cycle tries again")

    async def idle(self) -> None:
        """Until every send the runner started has its answer (and the pass it wakes has run)."""
        while True:
            pending = [*self._sending, self._wake, self._showing]
            waiting = [task for task in pending if task is not None and not task.done()]
            if not waiting:
                return
            await asyncio.gather(*waiting, return_exceptions=True)

    async def stop(self) -> None:
        """After the workflow's drain: sends it waited for are done; one that was just claimed puts its job back."""
        self._stopped = True
        # A pass under way finishes (it may be between a claim and its send) before anything is cancelled.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0), self._lock:
                pass
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=1.0)
        for task in (self._wake, self._showing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _expire(self) -> None:
        now = self._clock()
        minutes = self._timeout_seconds / 60
        reason = (
            f"It waited more than {minutes:g} minutes in the queue, so the bot dropped it. Nothing was sent or "
            "charged, and it does not count toward your limits: trying again is safe."
        )
        for row in await self._store.expire_queued(now - self._timeout_seconds, reason, now):
            log.info("Row %d waited %.0f s in the queue and was dropped", row.id, now - (row.queued_at or now))
            self._left[row.id] = now

    async def _start_what_fits(self) -> None:
        # Bounded: each start is one slot, and a pass that found nothing to start ends at once.
        for _ in range(MAX_STARTS_PER_PASS):
            if self._sender.closing or not await self._start_one():
                return

    async def _start_one(self) -> bool:
        """Start the first job of the fair order that the caps allow; False when none can start now."""
        now = self._clock()
        ready = {row.id: row for row in await self._store.queued() if (row.not_before or 0.0) <= now}
        if not ready:
            return False
        running = await self._store.running_counts()
        if self._max_running and sum(running.values()) >= self._max_running:
            return False
        last_starts = await self._store.last_starts(now - FAIRNESS_MEMORY_SECONDS)
        order = fair_order([waiting_of(row) for row in ready.values()], last_starts)
        rules: dict[int, GuildRules] = {}
        for job in order:
            row = ready[job.row_id]
            if row.guild_id not in rules:
                rules[row.guild_id] = await self._rules(row.guild_id)
            server_cap, user_cap = _caps(rules[row.guild_id], row)
            server_running = sum(n for (guild, _), n in running.items() if guild == row.guild_id)
            if (server_cap and server_running >= server_cap) or (
                user_cap and running.get((row.guild_id, row.requester_id), 0) >= user_cap
            ):
                continue
            claimed = await self._store.claim_queued(
                row.id, now, max_running=self._max_running, server_cap=server_cap, user_cap=user_cap
            )
            if claimed is None:
                return True  # a direct command took the slot meanwhile: count again
            log.info("Row %d leaves the queue after %.0f s", row.id, now - (row.queued_at or now))
            self._left[row.id] = now
            task = asyncio.create_task(self._sender.send_queued(claimed), name=f"send-queued-{row.id}")
            self._sending.add(task)
            task.add_done_callback(self._sent)
            return True
        return False

    def _sent(self, task: asyncio.Task[Generation]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Sending a queued job failed", exc_info=task.exception())
        # A 429 put it back, or a refusal freed its slot: look again.
        with contextlib.suppress(RuntimeError):
            self.wake()

    async def _show_positions(self) -> None:
        board = self.board
        if board is None or (self._shows_positions is not None and not await self._shows_positions()):
            return
        now = self._clock()
        if not self._shown and not self._left and not await self._store.queued():
            return
        places = await positions(self._store, now)
        waiting = await self._store.queued()
        # A job shown waiting that left the queue otherwise (cancelled) is shown once more as it is now: that edit
        # comes after any of ours still on its way, so an older place never stays on its message.
        for row_id in set(self._shown) - {row.id for row in waiting} - set(self._left):
            del self._shown[row_id]
            self._left[row_id] = now
        for row in waiting:
            place = places.get(row.id)
            shown = self._shown.get(row.id)
            if row.status_message_id is None or (shown is not None and shown[0] == place):
                continue
            if shown is not None and now - shown[1] < self._edit_interval:
                continue  # throttled: the next pass shows the newest place
            self._shown[row.id] = (place, now)
            await board.show(row, place)
        for row_id, left_at in list(self._left.items()):
            left = await self._store.get(row_id)
            if left is None or now - left_at > LEFT_QUEUE_MEMORY_SECONDS:
                del self._left[row_id]
                continue
            if left.state is State.QUEUED:
                # A 429 put it back: the loop above shows its place again.
                del self._left[row_id]
                self._shown.pop(row_id, None)
                continue
            if left.status_message_id is None or left.state is State.SUBMITTING:
                continue  # shown once its send has an answer, or once the command stored the message's id
            del self._left[row_id]
            self._shown.pop(row_id, None)
            await board.show(left, None)


def _caps(rules: GuildRules, row: Generation) -> tuple[int, int]:
    """The server's and the member's running caps for this job (none for a member of an exempt role)."""
    if row.limits_exempt:
        return 0, 0
    return rules.limits.server_concurrent, rules.limits.user_concurrent
