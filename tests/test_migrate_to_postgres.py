"""python -m bot.migrate_to_postgres: a SQLite database's every row in PostgreSQL, the same to the bot, and again
changes nothing."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.health import heartbeat_path
from bot.models import ApiGeneration, Delivery, GenerationOptions, Kind
from bot.quota import ServerLimits
from bot.storage import TABLES, RuleEntry, SqliteStore
from tests.postgres import fresh_database

REPO_ROOT = Path(__file__).resolve().parent.parent
BIG_ID = 1_234_567_890_123_456_789  # Discord ids need 64 bits
OPTIONS = GenerationOptions("a fox in the snow", "9:16", False, resolution="1080p", duration=9, hdr=True)


async def _a_used_sqlite_database(path: Path) -> list[int]:
    """A database with a history: a finished and announced video (with its cost), one running, one refused, one
    waiting in the queue, a server's rules and a note of the bot. Returns the rows' ids."""
    store = await SqliteStore.open(path)
    try:
        ids = []
        for n in range(4):
            row = await store.reserve(
                kind=Kind.GENERATE,
                guild_id=BIG_ID,
                channel_id=BIG_ID + 1,
                requester_id=BIG_ID + 2 + n,
                options=OPTIONS,
                parent_api_id=None,
                now=1_800_000_000.25 + n,
                model="luma/ray-2",
                counted_since=0.0,
                decide=(lambda usage: True) if n == 3 else None,
            )
            ids.append(row.id)
        done = ApiGeneration(
            id="gen-1", state="completed", video_url="https://v/1.mp4", credits_used=1_600_000, usd_spent=0.8
        )
        await store.mark_submitted(ids[0], ApiGeneration(id="gen-1", state="pending"), 1_800_000_010.5)
        await store.apply_api_update(ids[0], done, 1_800_000_090.125)
        await store.mark_announced(ids[0], Delivery.CHANNEL, 1_800_000_091.0)
        await store.mark_submitted(ids[1], ApiGeneration(id="gen-2", state="dreaming"), 1_800_000_011.0)
        await store.mark_rejected(ids[2], "The prompt was refused.", 1_800_000_012.0)
        await store.set_guild_limits(BIG_ID, {"user_daily": 5, "server_concurrent": 2}, 1_800_000_000.0)
        await store.set_members_share_videos(BIG_ID, False, 1_800_000_000.0)
        for kind, value in [(RuleEntry.CHANNEL, str(BIG_ID + 1)), (RuleEntry.BLOCKED_PHRASE, "Ünïcode words")]:
            await store.add_rule_entry(BIG_ID, kind, value)
        await store.set_meta("commands_synced", "abc123")
        return ids
    finally:
        await store.close()


def _migrate(sqlite: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.migrate_to_postgres", "--sqlite", str(sqlite), "--database-url", url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_every_row_is_copied_the_same_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    ids = await _a_used_sqlite_database(path)
    async with fresh_database() as url:
        from bot.storage.postgres import PostgresStore

        # A password in the URL (the test server does not ask for one) must not be printed.
        with_password = url.replace("postgres@", "postgres:pa55-w0rd@")
        first = _migrate(path, with_password)
        assert first.returncode == 0, first.stderr
        assert "pa55-w0rd" not in first.stdout + first.stderr
        expected_counts = {"generations": 4, "guild_limits": 1, "guild_rule_entries": 2, "bot_meta": 1}
        for table in TABLES:
            n = expected_counts[table]
            assert f"{table}: SQLite {n} rows, PostgreSQL {n} rows ({n} added, 0 updated now) - same" in first.stdout

        sqlite, postgres = await SqliteStore.open(path), await PostgresStore.open(url)
        try:
            for row_id in ids:
                assert await postgres.get(row_id) == await sqlite.get(row_id)
            assert await postgres.guild_rules(BIG_ID, ServerLimits()) == await sqlite.guild_rules(
                BIG_ID, ServerLimits()
            )
            assert await postgres.get_meta("commands_synced") == "abc123"
            assert await postgres.usage_report(BIG_ID, 0.0) == await sqlite.usage_report(BIG_ID, 0.0)
            assert await postgres.last_reported_cost("luma/ray-2", "1080p", 9, True) == 1_600_000
            assert [g.id for g in await postgres.queued()] == [ids[3]]
        finally:
            await sqlite.close()
            await postgres.close()

        second = _migrate(path, url)
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("(0 added, 0 updated now) - same") == len(TABLES)

        postgres = await PostgresStore.open(url)
        try:
            # New rows take ids after the copied ones.
            fresh = await postgres.insert_submitting(
                kind=Kind.GENERATE,
                guild_id=1,
                channel_id=1,
                requester_id=1,
                options=OPTIONS,
                parent_api_id=None,
                now=1_800_000_100.0,
            )
            assert fresh.id == max(ids) + 1
        finally:
            await postgres.close()


async def test_a_password_given_as_a_query_parameter_is_not_printed(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await _a_used_sqlite_database(path)
    async with fresh_database() as url:
        result = _migrate(path, url + "?password=pa55-w0rd")
    assert result.returncode == 0, result.stderr
    assert "pa55-w0rd" not in result.stdout + result.stderr
    assert "password=***" in result.stdout


async def test_rows_postgresql_held_before_make_the_counts_differ_and_the_exit_status_1(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await _a_used_sqlite_database(path)
    async with fresh_database() as url:
        from bot.storage.postgres import PostgresStore

        postgres = await PostgresStore.open(url)
        try:
            await postgres.set_meta("somewhere_else", "x")
        finally:
            await postgres.close()
        result = _migrate(path, url)
        assert result.returncode == 1
        assert (
            "bot_meta: SQLite 1 rows, PostgreSQL 2 rows (1 added, 0 updated now) - DIFFERENT: 1 only in PostgreSQL"
            in result.stdout
        )
        assert "generations: SQLite 4 rows, PostgreSQL 4 rows (4 added, 0 updated now) - same" in result.stdout


async def test_a_second_run_brings_rows_changed_in_sqlite_since_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    ids = await _a_used_sqlite_database(path)
    async with fresh_database() as url:
        from bot.storage.postgres import PostgresStore

        assert _migrate(path, url).returncode == 0
        # The SQLite bot ran on for a while: the running video finished and was announced, a moderator changed a
        # limit, the commands were synced again, and a new video was asked for.
        sqlite = await SqliteStore.open(path)
        try:
            done = ApiGeneration(id="gen-2", state="completed", video_url="https://v/2.mp4")
            await sqlite.apply_api_update(ids[1], done, 1_800_000_200.0)
            await sqlite.claim_announcement(ids[1], 1_800_000_201.0)
            await sqlite.mark_announced(ids[1], Delivery.CHANNEL, 1_800_000_202.0)
            await sqlite.set_guild_limits(BIG_ID, {"user_daily": 9}, 1_800_000_203.0)
            await sqlite.set_meta("commands_synced", "def456")
            added = await sqlite.insert_submitting(
                kind=Kind.GENERATE,
                guild_id=BIG_ID,
                channel_id=BIG_ID + 1,
                requester_id=BIG_ID + 2,
                options=OPTIONS,
                parent_api_id=None,
                now=1_800_000_204.0,
            )
        finally:
            await sqlite.close()

        second = _migrate(path, url)
        assert second.returncode == 0, second.stdout + second.stderr
        for line in (
            "generations: SQLite 5 rows, PostgreSQL 5 rows (1 added, 1 updated now) - same",
            "guild_limits: SQLite 1 rows, PostgreSQL 1 rows (0 added, 1 updated now) - same",
            "guild_rule_entries: SQLite 2 rows, PostgreSQL 2 rows (0 added, 0 updated now) - same",
            "bot_meta: SQLite 1 rows, PostgreSQL 1 rows (0 added, 1 updated now) - same",
        ):
            assert line in second.stdout
        sqlite, postgres = await SqliteStore.open(path), await PostgresStore.open(url)
        try:
            for row_id in [*ids, added.id]:
                assert await postgres.get(row_id) == await sqlite.get(row_id)
            # The PostgreSQL bot will not announce the video again.
            assert await postgres.unannounced() == []
            assert (await postgres.guild_rules(BIG_ID, ServerLimits())).limits.user_daily == 9
            assert await postgres.get_meta("commands_synced") == "def456"
        finally:
            await sqlite.close()
            await postgres.close()
        assert _migrate(path, url).stdout.count("(0 added, 0 updated now) - same") == len(TABLES)


async def test_a_row_postgresql_changed_after_the_copy_is_kept_and_reported_different(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    ids = await _a_used_sqlite_database(path)
    async with fresh_database() as url:
        from bot.storage.postgres import PostgresStore

        assert _migrate(path, url).returncode == 0
        postgres = await PostgresStore.open(url)
        try:  # the PostgreSQL bot started, and its tracker saw the running video fail
            failed = ApiGeneration(id="gen-2", state="failed", failure_reason="The service failed.")
            await postgres.apply_api_update(ids[1], failed, 1_800_000_300.0)
        finally:
            await postgres.close()
        again = _migrate(path, url)
        assert again.returncode == 1
        assert (
            "generations: SQLite 4 rows, PostgreSQL 4 rows (0 added, 0 updated now) - DIFFERENT: 1 row differs"
            in again.stdout
        )
        postgres = await PostgresStore.open(url)
        try:
            kept = await postgres.get(ids[1])
            assert kept is not None and kept.failure_reason == "The service failed."
        finally:
            await postgres.close()


def _migrate_with_env(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.migrate_to_postgres"],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_copy_is_refused_while_the_bot_runs_on_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await _a_used_sqlite_database(path)
    beat = heartbeat_path(path)
    beat.write_text("{}", encoding="utf-8")  # the running bot touched it just now
    async with fresh_database() as url:
        from bot.storage.postgres import PostgresStore

        refused = _migrate(path, url)
        assert refused.returncode == 3
        [line] = refused.stderr.strip().splitlines()
        assert "running" in line and str(beat) in line and "stop it" in line
        assert "Copying" not in refused.stdout
        postgres = await PostgresStore.open(url)
        try:
            assert await postgres.table_rows("generations", ["id"]) == []
        finally:
            await postgres.close()
        # A heartbeat left by a bot that stopped long ago does not stand in the way.
        os.utime(beat, (time.time() - 600, time.time() - 600))
        assert _migrate(path, url).returncode == 0


async def test_an_error_during_the_copy_is_one_line_naming_the_table(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await _a_used_sqlite_database(path)
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("UPDATE generations SET channel_id = 'general' WHERE id = 1")  # a value PostgreSQL can't take
    async with fresh_database() as url:
        failed = _migrate_with_env(tmp_path, {"DATABASE_PATH": str(path), "DATABASE_URL": url + "?password=pa55-w0rd"})
    assert failed.returncode == 3
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("Copy failed") and "generations" in line
    assert "Traceback" not in failed.stderr and "pa55-w0rd" not in failed.stdout + failed.stderr


@pytest.mark.parametrize("problem", ["no url", "no file"])
def test_a_missing_source_or_destination_is_named_with_exit_2(tmp_path: Path, problem: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if problem == "no url":
        (tmp_path / "bot.sqlite3").touch()
        env["DATABASE_PATH"] = str(tmp_path / "bot.sqlite3")
    else:
        env["DATABASE_PATH"] = str(tmp_path / "missing.sqlite3")
        env["DATABASE_URL"] = "postgresql://bot:pa55-w0rd@127.0.0.1:1/videos"
    result = subprocess.run(
        [sys.executable, "-m", "bot.migrate_to_postgres"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Configuration error: DATABASE_")
    assert ("DATABASE_URL" in line) if problem == "no url" else ("missing.sqlite3" in line)
    assert "pa55-w0rd" not in result.stderr
    assert not (tmp_path / "missing.sqlite3").exists()
