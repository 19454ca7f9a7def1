"""How several bot processes share one database's work: by lease, never by repeating it.

Each piece of periodic work is taken by lease in the database: a running generation's look-up, a finished one's
announcement, and the jobs done by one process at a time (reconciliation: looking for lost creates, telling their
requesters, taking over a dead process's creates in flight, showing endings no status message shows yet; and the
edits of the queue's places). A process that dies stops renewing its leases; they run
out and the others take the work over. A lease rather than a partition of the rows between the live processes:
a partition needs every process to agree, at every moment, on who is alive, and a disagreement means rows looked up
twice or by nobody; a lease needs nothing but the database's row locks (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and
a slow process only delays the rows it holds. On SQLite the bot is one process, which holds every lease.

Creates in flight are not leased (a create is never retried, so nothing renews it): the row names the process that
sent it, and the process beats in the database; only rows of a process whose heartbeat stopped are taken over.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .storage import GenerationStore

# The longest lease: a dead process's look-ups and announcements are taken over within it plus one poll interval.
LEASE_MAX_SECONDS = 15.0
# A finished generation is leased to the process announcing it for this long; an announcement that took longer is
# checked for (the announcer's find_announcement) before it is sent again, and Discord drops a repeated nonce.
ANNOUNCE_LEASE_SECONDS = LEASE_MAX_SECONDS
# The lease of the jobs one process does at a time, renewed every poll interval by its holder.
JOB_LEASE_SECONDS = LEASE_MAX_SECONDS
RECONCILE_JOB = "reconcile"
# Editing the waiting jobs' status messages as the queue moves: one process edits them all.
QUEUE_BOARD_JOB = "queue-board"
# A process notes that it is alive this often; without a heartbeat for GONE_AFTER_SECONDS it is gone.
BEAT_INTERVAL_SECONDS = 5.0
GONE_AFTER_SECONDS = 15.0


def lookup_lease(poll_interval: float) -> float:
    """How long a running generation is leased to the process that looks it up: one poll interval, so that it is
    looked up once per interval whichever process takes it, and at most LEASE_MAX_SECONDS."""
    return min(poll_interval, LEASE_MAX_SECONDS)


def job_lease(poll_interval: float) -> float:
    """The lease of a one-at-a-time job, renewed each poll interval: longer than an interval, so its holder keeps it."""
    return max(JOB_LEASE_SECONDS, 2 * poll_interval)


def lease_holder(store: GenerationStore, job: str, poll_interval: float) -> Callable[[], Awaitable[bool]]:
    """Asks whether this process holds (or can take) the lease of a one-at-a-time job, renewing it when it does."""

    async def holds() -> bool:
        return await store.hold_lease(job, time.time(), job_lease(poll_interval))

    return holds
