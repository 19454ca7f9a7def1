"""The tracker: follows every running generation and announces each finished one exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .api_client import VideoApiError
from .balance import BalanceService
from .generations import VideoApi
from .models import Delivery, Generation
from .queue import QueueRunner
from .reconcile import Reconciler
from .storage import GenerationStore, StorageUnavailable

log = logging.getLogger(__name__)

# Announcements that fail for passing reasons (Discord down) are retried this many times, about once a cycle.
MAX_ANNOUNCE_ATTEMPTS = 20


class Announcer(Protocol):
    """The Discord side, as the tracker sees it."""

    async def announce(self, generation: Generation) -> Delivery | None:
        """Tell the requester how a generation ended. None means 'could not now, try again later'."""

    async def find_announcement(self, generation: Generation) -> Delivery | None:
        """Where an earlier announcement of this generation already went, if one did."""


class Tracker:
    """One background task: batched look-ups, deadlines, exactly-once announcements."""

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
        reconciler: Reconciler | None = None,
        queue: QueueRunner | None = None,
    ) -> None:
        self._queue = queue
        self._balance = balance
        self._reconciler = reconciler
        self._store = store
        self._api = api
        self._announcer = announcer
        self._poll_interval = poll_interval
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.last_cycle_at: float | None = None  # read by the heartbeat

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="generation-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bad cycle must not end tracking for good: log it and try again next period.
                log.exception("Tracker cycle failed; retrying in %.1fs", self._poll_interval)
            await asyncio.sleep(self._poll_interval)

    async def run_once(self) -> None:
        """One cycle: look up running generations, then announce finished ones."""
        # Each step on its own: a failed look-up must not hold back announcing what already finished.
        steps = (self.poll, self._run_queue, self._reconcile, self.notify_checking, self.announce_finished)
        for step in (*steps, self._watch_balance):
            try:
                await step()
            except StorageUnavailable:
                pass  # the store names the cause in the log once a minute; the next cycle tries again
            except Exception:
                log.exception("Tracker step %s failed; retrying next cycle", step.__name__)
        self.last_cycle_at = self._clock()

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

    async def _watch_balance(self) -> None:
        if self._balance is not None:
            await self._balance.watch()

    async def poll(self) -> None:
        running = await self._store.running()
        if not running:
            return
        ids = [generation.api_id for generation in running if generation.api_id]
        try:
            found = await self._api.fetch_many(ids)
        except VideoApiError as error:
            log.warning("Looking up %d running generations failed: %s", len(ids), error)
            found = {}
        now = self._clock()
        for generation in running:
            assert generation.api_id is not None
            fresh = found.get(generation.api_id)
            if fresh is not None:
                if fresh.state != generation.api_state:
                    log.debug("Generation %s is now %s", generation.api_id, fresh.state)
                generation = await self._store.apply_api_update(generation.id, fresh, now)
                if generation.state.is_final:
                    log.info("Generation %s finished: %s", generation.api_id, generation.state.value)
                    continue
            started = generation.submitted_at or generation.created_at
            if now - started > self._timeout_seconds:
                minutes = self._timeout_seconds / 60
                log.info("Generation %s timed out after %.0f minutes", generation.api_id, minutes)
                await self._store.mark_timed_out(
                    generation.id,
                    f"The video was not ready after {minutes:g} minutes, so the bot stopped waiting for it.",
                    now,
                )

    async def announce_finished(self) -> None:
        for generation in await self._store.unannounced():
            try:
                await self._announce(generation)
            except Exception:
                # One generation that can't be announced must not hold up the others.
                log.exception("Announcing generation row %d failed; retrying next cycle", generation.id)

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
