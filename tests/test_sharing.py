"""Several processes on one PostgreSQL database share the work by lease: each row's look-up and announcement, and
each one-at-a-time job, go to one process at a time; a process that dies or stops has its work taken over, and a
live process's creates in flight are never taken from it. Each store here is one process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from bot.models import ApiGeneration, Delivery, Generation, GenerationOptions, Kind
from bot.storage import GenerationStore
from tests.postgres import fresh_database

if not os.environ.get("CI"):  # under CI a missing driver is a failure, not a skip
    pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[test]')")

from bot.storage.postgres import PostgresStore

NOW = 1_800_000_000.0  # the processes' clock (leases are timed by it, like every time the store keeps)
SHORT = 10.0  # a lease that runs out by LATER
LONG = 600.0  # one that does not
LATER = NOW + 2 * SHORT


@pytest.fixture
async def processes() -> AsyncIterator[list[PostgresStore]]:
    """Three processes' stores on one fresh database."""
    async with fresh_database() as url:
        stores = [await PostgresStore.open(url) for _ in range(3)]
        try:
            yield stores
        finally:
            for store in stores:
                await store.close()


async def _submitting(store: GenerationStore, prompt: str) -> Generation:
    return await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=11,
        requester_id=100,
        options=GenerationOptions(prompt, "16:9", False),
        parent_api_id=None,
        now=NOW,
    )


async def _running(store: GenerationStore, count: int) -> list[int]:
    ids = []
    for n in range(count):
        row = await _submitting(store, f"running {n}")
        await store.mark_submitted(row.id, ApiGeneration(id=f"api-{n}", state="pending"), NOW)
        ids.append(row.id)
    return ids


async def test_each_running_generation_is_leased_to_one_process_until_its_lease_runs_out(
    processes: list[PostgresStore],
) -> None:
    a, b, c = processes
    ids = await _running(a, 120)
    # All three ask at the same moment: every row goes to exactly one of them.
    taken = await asyncio.gather(*(store.lease_lookups(NOW, SHORT) for store in processes))
    each = [[row.id for row in rows] for rows in taken]
    assert sorted(row_id for rows in each for row_id in rows) == ids
    assert all(rows == sorted(rows) for rows in each)
    # Nobody takes them again before the lease runs out, their holder included: one look-up per lease.
    assert [await store.lease_lookups(NOW + SHORT / 2, SHORT) for store in processes] == [[], [], []]
    again = await b.lease_lookups(LATER, LONG)
    assert [row.id for row in again] == ids
    assert await a.lease_lookups(LATER, LONG) == [] and await c.lease_lookups(LATER, LONG) == []


async def test_a_lease_is_not_taken_again_before_it_runs_out(processes: list[PostgresStore]) -> None:
    a, b, _ = processes
    ids = await _running(a, 3)
    assert [row.id for row in await a.lease_lookups(NOW, LONG)] == ids
    assert await a.lease_lookups(NOW, LONG) == []
    assert await b.lease_lookups(NOW, LONG) == []


async def test_a_finished_generation_is_announced_by_the_process_holding_its_lease(
    processes: list[PostgresStore],
) -> None:
    [row_id] = await _running(processes[0], 1)
    await processes[0].apply_api_update(
        row_id, ApiGeneration(id="api-0", state="completed", video_url="https://v"), NOW
    )
    leased = await asyncio.gather(*(store.lease_announcement(row_id, NOW, SHORT) for store in processes))
    holders = [index for index, generation in enumerate(leased) if generation is not None]
    assert len(holders) == 1
    holder = processes[holders[0]]
    assert await holder.lease_announcement(row_id, NOW, SHORT) is not None  # its own lease, renewed
    await holder.claim_announcement(row_id, NOW)
    others = [store for store in processes if store is not holder]
    assert await others[0].lease_announcement(row_id, NOW + SHORT / 2, LONG) is None
    # The holder died (its lease ran out): another takes it over, and finds the attempt noted before it.
    taken = await others[0].lease_announcement(row_id, LATER, LONG)
    assert taken is not None and taken.announce_claimed_at is not None
    assert await holder.lease_announcement(row_id, LATER, LONG) is None
    await others[0].mark_announced(row_id, Delivery.CHANNEL, LATER)
    assert await others[0].lease_announcement(row_id, LATER, LONG) is None  # announced: nothing to lease


async def test_a_job_is_held_by_one_process_and_taken_over_when_its_lease_runs_out(
    processes: list[PostgresStore],
) -> None:
    held = await asyncio.gather(*(store.hold_lease("reconcile", NOW, SHORT) for store in processes))
    assert sorted(held) == [False, False, True]
    holder = processes[held.index(True)]
    assert await holder.hold_lease("reconcile", NOW, SHORT)  # renewed by its holder
    assert await holder.hold_lease("queue-board", NOW, LONG)  # each job on its own
    others = [store for store in processes if store is not holder]
    assert not await others[0].hold_lease("reconcile", NOW + SHORT / 2, LONG)
    assert await others[0].hold_lease("reconcile", LATER, LONG)
    assert not await holder.hold_lease("reconcile", LATER, LONG)
    assert not await others[1].hold_lease("queue-board", LATER, LONG)


async def test_creates_in_flight_are_taken_over_only_from_a_process_that_is_gone(
    processes: list[PostgresStore],
) -> None:
    a, b, c = processes
    for store in processes:
        await store.beat(NOW)
    in_flight = await _submitting(a, "a's create, waiting for its answer")
    # Another process starting (its recovery) or running reconciliation leaves a live process's create alone.
    assert await b.take_over_submissions(NOW + SHORT / 2, SHORT) == []
    await a.beat(NOW + SHORT / 2)
    assert await c.take_over_submissions(NOW + SHORT, SHORT) == []  # a is beating
    await b.beat(LATER)
    await c.beat(LATER)
    # a stopped beating: once its heartbeat is older than the bound, one process takes its creates, once.
    taken = await asyncio.gather(b.take_over_submissions(LATER, SHORT), c.take_over_submissions(LATER, SHORT))
    assert sorted(len(rows) for rows in taken) == [0, 1]
    [row] = [rows[0] for rows in taken if rows]
    assert row.id == in_flight.id
    assert await b.take_over_submissions(LATER, SHORT) == [] and await c.take_over_submissions(LATER, SHORT) == []


async def test_a_process_that_stops_hands_its_leases_back_at_once(processes: list[PostgresStore]) -> None:
    a, b, _ = processes
    ids = await _running(a, 2)
    await a.beat(NOW)
    cut = await _submitting(a, "cut off by the stop")
    assert [row.id for row in await a.lease_lookups(NOW, LONG)] == ids
    assert await a.hold_lease("reconcile", NOW, LONG)
    await a.close()
    processes.remove(a)
    assert [row.id for row in await b.lease_lookups(NOW, LONG)] == ids
    assert await b.hold_lease("reconcile", NOW, LONG)
    assert [row.id for row in await b.take_over_submissions(NOW, LONG)] == [cut.id]


async def test_a_notice_is_given_once_per_interval_across_processes(processes: list[PostgresStore]) -> None:
    claimed = await asyncio.gather(*(store.claim_notice("low-balance", NOW, SHORT) for store in processes))
    assert sorted(claimed) == [False, False, True]
    assert not any([await store.claim_notice("low-balance", NOW, LONG) for store in processes])
    claimed = await asyncio.gather(*(store.claim_notice("low-balance", LATER, SHORT) for store in processes))
    assert sorted(claimed) == [False, False, True]
