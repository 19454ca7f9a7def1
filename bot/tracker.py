"""The tracker: follows every running generation and announces each finished one exactly once.

A pipeline whose cost follows what changed: the running set is read (ids and states only), looked up in concurrent
batches, each batch's changed rows are written in one short transaction, and the generations it finished go straight
to the announcements, which run at their own pace in a task of their own. Periodic side jobs (the balance watch)
have their own task too, so that none of the three waits for a whole pass of another.

Several processes may share the database: each takes its look-ups and announcements by lease, and one at a time
does reconciliation (see bot/sharing.py), so nothing is looked up or announced twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol

from .api_client import LOOKUP_BATCH_SIZE, VideoApiError
from .balance import BalanceService
from .generations import VideoApi
from .models import ApiGeneration, Delivery, Generation, State
from .progress import ProgressBoard, StatusView, ending
from .queue import QueueRunner
from .reconcile import Reconciler
from .sharing import ANNOUNCE_LEASE_SECONDS, BEAT_INTERVAL_SECONDS, RECONCILE_JOB, job_lease, lookup_lease
from .storage import GenerationStore, StorageUnavailable, TrackedGeneration
from .video_api import model_of

log = logging.getLogger(__name__)

# Announcements that fail for passing reasons (Discord down) are retried this many times, about once a cycle.
MAX_ANNOUNCE_ATTEMPTS = 20
# Look-up requests in flight at once: at a 150 ms round trip, the 200 requests of 10 000 running generations need
# at least 10 to end within 3 seconds.
LOOKUP_CONCURRENCY = 16
# Announcements sent at once (discord.py still queues them per rate-limit bucket).
ANNOUNCE_CONCURRENCY = 4


class Announcer(Protocol):
    """The Discord side, as the tracker sees it."""

    async def announce(self, generation: Generation) -> Delivery | None:
        """Tell the requester how a generation ended. None means 'could not now, try again later'."""

    async def find_announcement(self, generation: Generation) -> Delivery | None:
        """Where an earlier announcement of this generation already went, if one did."""


class Tracker:
    """Background tasks: batched look-ups, deadlines, exactly-once announcements, periodic side jobs."""

    def __init__(
        self,
        store: GenerationStore,
        api: VideoApi,
        announcer: Announcer,
        *,
        poll_interval: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.time,
        balance: BalanceService | None = None,
        lookup_concurrency: int = LOOKUP_CONCURRENCY,
        reconciler: Reconciler | None = None,
        queue: QueueRunner | None = None,
        progress: ProgressBoard | None = None,
        recover: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`recover` takes over creates that processes now gone left in flight (reconciliation's part)."""
        self._recover = recover
        self._queue = queue
        self._progress = progress
        self._balance = balance
        self._reconciler = reconciler
        self._store = store
        self._api = api
        self._announcer = announcer
        self._poll_interval = poll_interval
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._lookup_concurrency = lookup_concurrency
        self._tasks: list[asyncio.Task[None]] = []
        # Finished generations waiting to be announced (an ordered set of row ids), and those being announced.
        self._to_announce: dict[int, None] = {}
        self._announcing: set[int] = set()
        self._announce_wake = asyncio.Event()
        self.last_cycle_at: float | None = None  # read by the heartbeat: when a look-up pass last ended

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._every_interval(self.poll), name="generation-lookups"),
            asyncio.create_task(self._announce_continuously(), name="generation-announcements"),
            asyncio.create_task(self._every_interval(self.run_side_jobs), name="tracker-side-jobs"),
            # Its own task: a slow side job must not make the other processes take this one for gone.
            asyncio.create_task(self._every_interval(self.beat, BEAT_INTERVAL_SECONDS), name="process-heartbeat"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> None:
        """One whole cycle, in order: look up running generations, announce finished ones, run the side jobs."""
        # Each step on its own: a failed look-up must not hold back announcing what already finished.
        await _each((self.poll, self.announce_finished, self.run_side_jobs))

    async def _run_queue(self) -> None:
        if self._queue is not None:
            await self._queue.run_once()

    async def _reconcile(self) -> None:
        if self._reconciler is not None:
            await self._reconciler.run_once()

    async def notify_checking(self) -> None:
        """Tell requesters whose create was cut off by a restart that the bot is looking for it."""
        for generation in await self._store.checking():
            if generation.notice_sent_at is None and await self._announcer.announce(generation) is not None:
                await self._store.mark_notice_sent(generation.id, self._clock())
                self._show(generation)

    async def _every_interval(self, step: Callable[[], Awaitable[None]], interval: float | None = None) -> None:
        """Run `step` once per poll interval (or `interval`), counted from the start of each run; a slow run is
        followed at once, after a short breather."""
        period = min(self._poll_interval, interval) if interval is not None else self._poll_interval
        while True:
            started = time.monotonic()
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bad cycle must not end tracking for good: log it and try again next period.
                log.exception("Tracker step %s failed; retrying in %.1fs", step.__name__, period)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(period - elapsed, period / 4))

    # --- periodic side jobs --------------------------------------------------------------------------------

    async def run_side_jobs(self) -> None:
        """Jobs that run beside the look-ups, once per interval; one failing never stops the others."""
        await _each((self._run_queue, self._shared_jobs, self._watch_balance))

    async def _shared_jobs(self) -> None:
        """Done by one process at a time, the one holding their lease: reconciliation, and the sweep of the endings
        that no status message shows yet."""
        if await self._store.hold_lease(RECONCILE_JOB, self._clock(), job_lease(self._poll_interval)):
            await _each((self._take_over, self._reconcile, self.notify_checking, self._sweep_endings))

    async def _take_over(self) -> None:
        if self._recover is not None:
            await self._recover()

    async def beat(self) -> None:
        """Note in the database that this process is alive."""
        await self._store.beat(self._clock())

    async def _sweep_endings(self) -> None:
        if self._progress is not None:
            await self._progress.sweep()

    async def _watch_balance(self) -> None:
        if self._balance is not None:
            await self._balance.watch()

    # --- look-ups ----------------------------------------------------------------------------------------

    async def poll(self) -> None:
        """One pass over the running generations: concurrent batched look-ups; each batch writes what changed and
        hands what finished to the announcements at once."""
        started = time.monotonic()
        try:
            running = await self._store.lease_lookups(self._clock(), lookup_lease(self._poll_interval))
            if not running:
                return
            batches = self._batches(running)

            async def worker() -> None:
                # Workers share one iterator, so each batch is taken once and a slow batch holds up only its worker.
                for batch in batches:
                    await self._track_batch(batch)

            workers = min(self._lookup_concurrency, -(-len(running) // LOOKUP_BATCH_SIZE))
            await asyncio.gather(*(worker() for _ in range(workers)))
            log.debug("Looked up %d running generations in %.2fs", len(running), time.monotonic() - started)
        finally:
            self.last_cycle_at = self._clock()

    @staticmethod
    def _batches(running: Sequence[TrackedGeneration]) -> Iterator[list[TrackedGeneration]]:
        """Batches of one endpoint each, so that a legacy batch is exactly one request."""
        by_endpoint: dict[str, list[TrackedGeneration]] = {}
        for generation in running:
            by_endpoint.setdefault(model_of(generation.api_id), []).append(generation)
        for generations in by_endpoint.values():
            for start in range(0, len(generations), LOOKUP_BATCH_SIZE):
                yield generations[start : start + LOOKUP_BATCH_SIZE]

    async def _track_batch(self, batch: Sequence[TrackedGeneration]) -> None:
        try:
            found = await self._look_up(batch)
            finished = await self._record(batch, found)
            self._show_progress(batch, found, finished)
        except StorageUnavailable:
            return  # named in the log once a minute by the store; looked up again next cycle
        except Exception:
            # One batch that breaks must not hold up the others; its rows are looked up again next cycle.
            log.exception("Tracking a batch of %d generations failed; retrying next cycle", len(batch))
            return
        if finished:
            if self._queue is not None:
                self._queue.wake()  # slots freed: the next waiting jobs start now, not at the next cycle
            self._to_announce.update(dict.fromkeys(finished))
            self._announce_wake.set()

    async def _look_up(self, batch: Sequence[TrackedGeneration]) -> dict[str, ApiGeneration]:
        try:
            return await self._api.fetch_many([generation.api_id for generation in batch])
        except VideoApiError as error:
            log.warning("Looking up %d running generations failed: %s", len(batch), error)
            return {}

    async def _record(self, batch: Sequence[TrackedGeneration], found: dict[str, ApiGeneration]) -> list[int]:
        """Write what changed in this batch (nothing when nothing did); returns the rows it finished."""
        now = self._clock()
        updates: list[tuple[int, ApiGeneration]] = []
        timed_out: list[int] = []
        for generation in batch:
            fresh = found.get(generation.api_id)
            if fresh is not None and (fresh.is_final or fresh.state != generation.api_state):
                log.debug("Generation %s is now %s", generation.api_id, fresh.state)
                updates.append((generation.id, fresh))
                if fresh.is_final:
                    log.info("Generation %s finished: %s", generation.api_id, fresh.state)
                    continue
            if now - generation.started_at > self._timeout_seconds:
                log.info("Generation %s timed out after %.0f minutes", generation.api_id, self._timeout_seconds / 60)
                timed_out.append(generation.id)
        return await self._store.record_lookups(updates, timed_out, self._timeout_reason(), now)

    def _show_progress(
        self, batch: Sequence[TrackedGeneration], found: dict[str, ApiGeneration], finished: Sequence[int]
    ) -> None:
        """Hand what the look-ups said to the status messages: each job's API state and wait estimate, or its end.
        The board sends only what a member would see change."""
        if self._progress is None:
            return
        now = self._clock()
        ended = set(finished)
        for generation in batch:
            message_id = generation.status_message_id
            if message_id is None:
                continue
            fresh = found.get(generation.api_id)
            if generation.id in ended:
                if fresh is not None and fresh.is_final:
                    state = State.COMPLETED if fresh.is_completed else State.FAILED
                else:
                    state = State.TIMED_OUT
                self._progress.note_row(generation.id, generation.channel_id, message_id, ending(state), final=True)
                continue
            if fresh is None:
                continue
            wait = fresh.estimate_wait_seconds
            view = StatusView(stage=fresh.state, ready_at=None if wait is None else now + wait)
            self._progress.note_row(generation.id, generation.channel_id, message_id, view)

    def _show(self, generation: Generation) -> None:
        if self._progress is not None:
            self._progress.note(generation)

    def _timeout_reason(self) -> str:
        minutes = self._timeout_seconds / 60
        return f"The video was not ready after {minutes:g} minutes, so the bot stopped waiting for it."

    # --- announcements -------------------------------------------------------------------------------------

    async def announce_finished(self) -> None:
        """Announce every finished generation whose requester has not been told yet, and return when done."""
        self._to_announce.update(dict.fromkeys(await self._store.unannounced_ids()))

        async def worker() -> None:
            while self._to_announce:
                await self._announce_next()

        await asyncio.gather(*(worker() for _ in range(ANNOUNCE_CONCURRENCY)))

    async def _announce_continuously(self) -> None:
        """Workers announce what the look-ups hand over as soon as they do; once an interval, the database is also
        searched for what is still unannounced (a restart's leftovers, retries after Discord failed, videos that
        /status saw finish)."""
        workers = [asyncio.create_task(self._announce_forever()) for _ in range(ANNOUNCE_CONCURRENCY)]
        try:
            while True:
                try:
                    waiting = await self._store.unannounced_ids()
                except Exception:
                    log.exception("Looking for unannounced generations failed; retrying in %.1fs", self._poll_interval)
                else:
                    self._to_announce.update(dict.fromkeys(waiting))
                    self._announce_wake.set()
                await asyncio.sleep(self._poll_interval)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _announce_forever(self) -> None:
        # Each worker on its own: one announcement that Discord holds up occupies one worker, not the others.
        while True:
            while not self._to_announce:
                self._announce_wake.clear()
                await self._announce_wake.wait()
            await self._announce_next()

    async def _announce_next(self) -> None:
        row_id = next(iter(self._to_announce))
        del self._to_announce[row_id]
        if row_id in self._announcing:
            return
        self._announcing.add(row_id)
        try:
            generation = await self._store.lease_announcement(row_id, self._clock(), ANNOUNCE_LEASE_SECONDS)
            if generation is not None:
                await self._announce(generation)
        except StorageUnavailable:
            pass  # named in the log once a minute by the store; the sweep hands it over again
        except Exception:
            # One generation that can't be announced must not hold up the others.
            log.exception("Announcing generation row %d failed; retrying next cycle", row_id)
        finally:
            self._announcing.discard(row_id)

    async def _announce(self, generation: Generation) -> None:
        if generation.announce_attempts >= MAX_ANNOUNCE_ATTEMPTS:
            # Covers announcers that keep raising, not only those that answer "try later".
            log.error("Giving up announcing generation row %d after %d attempts", generation.id, MAX_ANNOUNCE_ATTEMPTS)
            await self._store.mark_announced(generation.id, Delivery.UNDELIVERABLE, self._clock())
            return
        if generation.announce_claimed_at is not None:
            # An earlier attempt may have reached Discord just before a crash: look before sending again.
            earlier = await self._announcer.find_announcement(generation)
            if earlier is not None:
                log.info("Generation row %d was already announced (%s)", generation.id, earlier.value)
                await self._store.mark_announced(generation.id, earlier, self._clock())
                return
        await self._store.claim_announcement(generation.id, self._clock())
        delivery = await self._announcer.announce(generation)
        if delivery is not None:
            await self._store.mark_announced(generation.id, delivery, self._clock())
            # Whatever path ended it (the look-ups, the queue, the search for a lost request), its message shows it.
            self._show(generation)


async def _each(steps: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run every step, whatever happens to the others; a failure is retried at the next cycle."""
    for step in steps:
        try:
            await step()
        except StorageUnavailable:
            pass  # the store names the cause in the log once a minute
        except Exception:
            log.exception("Tracker step %s failed; retrying next cycle", step.__name__)
