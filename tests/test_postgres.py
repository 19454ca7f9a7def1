"""PostgreSQL shared by several processes: limits exact across them, migrations safe when they start together."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path

import pytest

from bot.models import Generation, GenerationOptions, Kind
from bot.quota import ServerLimits
from bot.storage import StorageOutcomeUnknown, StorageUnavailable
from tests.postgres import databases_of_tests, fresh_database
from tests.postgres_proxy import Cut, proxied

if not os.environ.get("CI"):  # under CI a missing driver is a failure, not a skip
    pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[test]')")

import asyncpg

from bot.storage.postgres import MIGRATIONS, PostgresStore

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 3


def _run_together(url: str, argument_lists: list[list[str]]) -> list[dict[str, int]]:
    """Start one worker process per argument list, let them all go at once, and return what each printed."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.postgres_worker", url, *arguments],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stderr is not None
            if worker.stdout.readline().strip() != "ready":
                worker.kill()
                pytest.fail(f"a worker did not start: {worker.stderr.read()}")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


async def _counted(url: str, where: str = "TRUE") -> int:
    store = await PostgresStore.open(url)
    try:
        rows = await store._fetch(f"SELECT COUNT(*) FROM generations WHERE {where}")
        return int(rows[0][0])
    finally:
        await store.close()


async def test_fifteen_reservations_from_three_processes_against_a_daily_limit_of_3_create_exactly_3() -> None:
    async with fresh_database() as url:
        await _counted(url)  # the schema, before the race
        # One member of one server, five commands in each process, all at once.
        requests = [["reserve", "--user-daily", "3", *["1:100"] * 5] for _ in range(PROCESSES)]
        results = await asyncio.to_thread(_run_together, url, requests)
        assert sum(result["created"] for result in results) == 3
        assert sum(result["refused"] for result in results) == 12
        assert await _counted(url, "guild_id = 1 AND requester_id = 100") == 3


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
async def test_a_database_whose_default_isolation_is_stricter_still_gives_exactly_3_of_15(isolation: str) -> None:
    async with fresh_database() as url:
        # An operator's (or a managed service's) default for every transaction in this database.
        await _counted(url)
        store = await PostgresStore.open(url)
        try:
            name = url.rsplit("/", 1)[1]
            alter = f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = '{isolation}'"
            await store._run_write(lambda connection: connection.execute(alter))
        finally:
            await store.close()
        requests = [["reserve", "--user-daily", "3", *["1:100"] * 5] for _ in range(PROCESSES)]
        results = await asyncio.to_thread(_run_together, url, requests)
        assert sum(result["created"] for result in results) == 3
        assert sum(result["refused"] for result in results) == 12
        assert await _counted(url, "guild_id = 1 AND requester_id = 100") == 3


async def test_a_nearly_spent_global_daily_limit_gives_exactly_what_is_left_across_processes_and_servers() -> None:
    async with fresh_database() as url:
        store = await PostgresStore.open(url)
        try:
            for n in range(7):  # 7 of the operator's 10 videos of the day are made
                await store.reserve(
                    kind=Kind.GENERATE,
                    guild_id=500 + n,
                    channel_id=1,
                    requester_id=1,
                    options=GenerationOptions("earlier", "16:9", False),
                    parent_api_id=None,
                    now=1_800_000_000.0 - 60,
                    model="legacy",
                    counted_since=0.0,
                    decide=None,
                )
        finally:
            await store.close()
        # Fifteen members of fifteen servers, five in each process, all at once.
        requests = [
            ["reserve", "--global-daily", "10", *[f"{guild}:{guild * 7}" for guild in range(p * 5 + 1, p * 5 + 6)]]
            for p in range(PROCESSES)
        ]
        results = await asyncio.to_thread(_run_together, url, requests)
        assert sum(result["created"] for result in results) == 3
        assert await _counted(url) == 10


async def test_three_processes_migrating_at_once_leave_one_schema_at_the_newest_version() -> None:
    async with fresh_database() as url:
        results = await asyncio.to_thread(_run_together, url, [["open"]] * PROCESSES)
        assert [result["version"] for result in results] == [len(MIGRATIONS)] * PROCESSES
        store = await PostgresStore.open(url)
        try:
            [[rows, version]] = await store._fetch("SELECT COUNT(*), MAX(version) FROM schema_version")
            tables = await store._fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        finally:
            await store.close()
        assert (rows, version) == (1, len(MIGRATIONS))
        assert [row[0] for row in tables] == [
            "bot_leases",
            "bot_meta",
            "bot_processes",
            "generations",
            "guild_limits",
            "guild_rule_entries",
            "schema_version",
        ]


async def test_a_database_newer_than_the_bot_is_refused_not_changed() -> None:
    async with fresh_database() as url:
        store = await PostgresStore.open(url)
        await store._write("UPDATE schema_version SET version = $1", len(MIGRATIONS) + 1)
        await store.close()
        with pytest.raises(RuntimeError, match="newer than this bot knows"):
            await PostgresStore.open(url)


async def test_each_test_database_is_dropped_afterwards() -> None:
    async with fresh_database() as url:
        name = url.rsplit("/", 1)[1]
        assert name in await databases_of_tests()
    assert name not in await databases_of_tests()


_DROP_CONNECTIONS = """
import asyncio, sys, asyncpg
async def main():
    admin = await asyncpg.connect(sys.argv[1])
    print(await admin.fetchval(
        "SELECT COUNT(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    await admin.close()
asyncio.run(main())
"""


def _drop_connections_to(url: str) -> int:
    """What a restart of the server does to the bot's open connections: each is closed by the server. Done from
    another process while this one's event loop waits, so that the store meets its dead connections unawares, as
    after a restart it did not see happen."""
    done = subprocess.run(
        [sys.executable, "-c", _DROP_CONNECTIONS, url], capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout)


async def test_connections_the_server_drops_are_replaced_and_a_write_that_meets_one_says_storage_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with fresh_database() as url:
        store = await PostgresStore.open(url)
        try:
            await store.set_meta("k", "before")
            assert _drop_connections_to(url) >= 2
            # A read meeting a dead connection is read again on a new one.
            assert await store.get_meta("k") == "before"
            assert _drop_connections_to(url) >= 2
            outcomes = []
            for attempt in range(3):
                try:
                    await store.set_meta("k", f"after {attempt}")
                    outcomes.append("written")
                except StorageUnavailable:
                    outcomes.append("unavailable")
            # At most the write that met a dead connection fails, plainly (it may have been done); the pool replaces
            # the other dead ones before their next use.
            assert outcomes[1:] == ["written", "written"]
            assert await store.get_meta("k") == "after 2"
            if outcomes[0] == "unavailable":
                assert "The database cannot be written" in caplog.text
        finally:
            await store.close()


async def test_a_database_of_the_first_schema_gets_private_requests_and_keeps_its_rows() -> None:
    async with fresh_database() as url:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(MIGRATIONS[0])
            await connection.execute(
                "CREATE TABLE schema_version (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),"
                " version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (1)"
            )
            await connection.execute(
                "INSERT INTO generations (api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
                " expand_prompt, state, created_at, updated_at) VALUES"
                " ('old-1', 'generate', 1, 11, 100, 'an old video', '16:9', 1, 'running', 5, 5)"
            )
            await connection.execute(
                "INSERT INTO guild_limits (guild_id, members_share_videos, updated_at) VALUES (1, 0, 5)"
            )
        finally:
            await connection.close()
        store = await PostgresStore.open(url)
        try:
            [row] = await store.running()
            assert row.api_id == "old-1" and row.private is False
            rules = await store.guild_rules(1, ServerLimits())
            assert (rules.private_mode, rules.members_share_videos) == (True, False)
        finally:
            await store.close()


def _reservation(store: PostgresStore, prompt: str, *, queued: bool = False) -> Awaitable[Generation]:
    return store.reserve(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=10,
        requester_id=100,
        options=GenerationOptions(prompt, "16:9", False),
        parent_api_id=None,
        now=1_800_000_000.0,
        model="legacy",
        counted_since=0.0,
        decide=(lambda usage: queued) if queued else None,
    )


async def test_a_connection_lost_inside_a_transaction_says_storage_unavailable_and_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with fresh_database() as url, proxied(url) as (proxy, through):
        store = await PostgresStore.open(through)
        try:
            await store.set_meta("warm", "up")
            proxy.cut_at(b"INSERT INTO generations", Cut.BEFORE)
            with caplog.at_level(logging.ERROR), pytest.raises(StorageUnavailable) as lost:
                await _reservation(store, "a fox")
            assert proxy.cuts == 1
            # Nothing reached the server, and the member is told so (not that the outcome is unknown).
            assert type(lost.value) is StorageUnavailable
            assert "The database cannot be written" in caplog.text
            assert await store.get_meta("warm") == "up"
            assert (await _reservation(store, "a fox, again")).id > 0
            assert await store.queued() == []
        finally:
            await store.close()


async def _claim(store: PostgresStore, row_id: int) -> Generation | None:
    return await store.claim_queued(row_id, 1_800_000_001.0, max_running=0, server_cap=0, user_cap=0)


@pytest.mark.parametrize("step", ["reserve", "claim"])
async def test_a_write_kept_just_before_the_server_went_away_is_returned_not_reported_failed(step: str) -> None:
    async with fresh_database() as url, proxied(url) as (proxy, through):
        store = await PostgresStore.open(through)
        try:
            waiting = await _reservation(store, "a queued fox", queued=True)
            proxy.cut_at(b"COMMIT;", Cut.DOWN_AFTER)
            # The server stops right after it kept the write: nothing more can be read from it.
            written = await _reservation(store, "a fox") if step == "reserve" else await _claim(store, waiting.id)
            assert proxy.cuts == 1
        finally:
            await store.close()
        direct = await PostgresStore.open(url)
        try:
            assert written is not None and written == await direct.get(written.id)
            assert written.state.value == "submitting" and written.started_at is not None
        finally:
            await direct.close()


@pytest.mark.parametrize("step", ["reserve", "claim"])
async def test_a_commit_whose_answer_was_lost_is_reported_as_of_unknown_outcome(
    step: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with fresh_database() as url, proxied(url) as (proxy, through):
        store = await PostgresStore.open(through)
        try:
            waiting = await _reservation(store, "a queued fox", queued=True)
            proxy.cut_at(b"COMMIT;", Cut.LOSE_ANSWER)
            with caplog.at_level(logging.ERROR), pytest.raises(StorageOutcomeUnknown):
                await _reservation(store, "a fox") if step == "reserve" else await _claim(store, waiting.id)
            assert proxy.cuts == 1
            assert "The database cannot be written" in caplog.text
            # The server kept it: it was right not to say that nothing was recorded.
            states = [(row.prompt, row.state.value) for row in await store._select("ORDER BY id")]
            expected = "queued" if step == "reserve" else "submitting"
            assert states[0] == ("a queued fox", expected)
            assert states[1:] == ([("a fox", "submitting")] if step == "reserve" else [])
        finally:
            await store.close()
