"""SQLite storage: one writing connection (in a thread of its own), reading connections beside it, WAL, numbered
migrations, every SQL statement of the bot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

from ..models import LEGACY_MODEL, ApiGeneration, Delivery, Generation, GenerationOptions, Kind, State
from ..quota import GuildRules, ServerLimits, Usage
from .records import (
    LIMIT_NAMES,
    TABLES,
    HistorySlice,
    RuleEntry,
    SpendRow,
    StateCount,
    StorageUnavailable,
    TrackedGeneration,
    UsageCounts,
    UsageReport,
)
from .shared import WriteTrouble, generation_from_row, new_process_id, queue_usage
from .sqlite_writer import SqliteWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

# Each entry moves the schema one version up; PRAGMA user_version records how far a file has come.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE generations (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        api_id              TEXT UNIQUE,
        parent_api_id       TEXT,
        kind                TEXT NOT NULL,
        guild_id            INTEGER NOT NULL,
        channel_id          INTEGER NOT NULL,
        requester_id        INTEGER NOT NULL,
        prompt              TEXT NOT NULL,
        aspect_ratio        TEXT NOT NULL,
        expand_prompt       INTEGER NOT NULL,
        state               TEXT NOT NULL,
        api_state           TEXT,
        video_url           TEXT,
        thumbnail_url       TEXT,
        last_frame_url      TEXT,
        failure_reason      TEXT,
        status_message_id   INTEGER,
        created_at          REAL NOT NULL,
        updated_at          REAL NOT NULL,
        submitted_at        REAL,
        finished_at         REAL,
        announce_claimed_at REAL,
        announced_at        REAL,
        announce_attempts   INTEGER NOT NULL DEFAULT 0,
        delivery            TEXT
    );
    CREATE INDEX generations_by_member ON generations (guild_id, requester_id, created_at DESC);
    CREATE INDEX generations_running ON generations (state) WHERE state IN ('submitting', 'running');
    CREATE INDEX generations_unannounced ON generations (finished_at)
        WHERE announced_at IS NULL AND finished_at IS NOT NULL;
    CREATE TABLE bot_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE guild_limits (
        guild_id             INTEGER PRIMARY KEY,
        user_daily           INTEGER,
        server_daily         INTEGER,
        user_concurrent      INTEGER,
        cooldown_seconds     INTEGER,
        members_share_videos INTEGER,
        updated_at           REAL NOT NULL
    );
    CREATE TABLE guild_rule_entries (
        guild_id INTEGER NOT NULL,
        kind     TEXT NOT NULL CHECK (kind IN ('channel', 'role', 'exempt_role', 'blocked_phrase')),
        value    TEXT NOT NULL,
        PRIMARY KEY (guild_id, kind, value)
    );
    CREATE INDEX generations_by_guild_day ON generations (guild_id, created_at);
    CREATE INDEX generations_by_day ON generations (created_at);
    """,
    """
    ALTER TABLE generations ADD COLUMN model TEXT NOT NULL DEFAULT 'legacy';
    ALTER TABLE generations ADD COLUMN extras_json TEXT NOT NULL DEFAULT '{}';
    """,
    """
    ALTER TABLE generations ADD COLUMN checking_since REAL;
    ALTER TABLE generations ADD COLUMN next_check_at REAL;
    ALTER TABLE generations ADD COLUMN check_until REAL;
    ALTER TABLE generations ADD COLUMN list_read_at REAL;
    ALTER TABLE generations ADD COLUMN check_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE generations ADD COLUMN notice_sent_at REAL;
    DROP INDEX generations_running;
    CREATE INDEX generations_running ON generations (state) WHERE state IN ('submitting', 'running', 'checking');
    """,
    """
    ALTER TABLE generations ADD COLUMN credits_used INTEGER;
    ALTER TABLE generations ADD COLUMN usd_spent REAL;
    CREATE TABLE guild_rule_entries_next (
        guild_id INTEGER NOT NULL,
        kind     TEXT NOT NULL CHECK (kind IN ('channel', 'role', 'exempt_role', 'blocked_phrase', 'model')),
        value    TEXT NOT NULL,
        PRIMARY KEY (guild_id, kind, value)
    );
    INSERT INTO guild_rule_entries_next (guild_id, kind, value) SELECT guild_id, kind, value FROM guild_rule_entries;
    DROP TABLE guild_rule_entries;
    ALTER TABLE guild_rule_entries_next RENAME TO guild_rule_entries;
    """,
    """
    ALTER TABLE generations ADD COLUMN queued_at REAL;
    ALTER TABLE generations ADD COLUMN started_at REAL;
    ALTER TABLE generations ADD COLUMN queue_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE generations ADD COLUMN not_before REAL;
    ALTER TABLE generations ADD COLUMN limits_exempt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE guild_limits ADD COLUMN server_concurrent INTEGER;
    ALTER TABLE guild_limits ADD COLUMN user_queued INTEGER;
    CREATE INDEX generations_queued ON generations (queued_at) WHERE state = 'queued';
    """,
    """
    CREATE INDEX generations_active ON generations (state)
        WHERE state IN ('submitting', 'running', 'checking', 'queued');
    """,
    # A reservation counts a server's jobs in flight and a member's waiting ones by seeking these, not by reading
    # every running row (13 ms a reservation at 10 000 running, against well under 1 ms).
    """
    DROP INDEX generations_active;
    CREATE INDEX generations_in_flight_by_guild ON generations (guild_id)
        WHERE state IN ('submitting', 'running', 'checking');
    CREATE INDEX generations_queued_by_member ON generations (guild_id, requester_id) WHERE state = 'queued';
    """,
    # History pages: a server's generations, or one member's there, in id order (keyset paging); short ids.
    """
    CREATE INDEX generations_history ON generations (guild_id, id);
    CREATE INDEX generations_member_history ON generations (guild_id, requester_id, id);
    CREATE INDEX generations_short_id ON generations (guild_id, substr(api_id, 1, 8));
    """,
    # Live progress and kept videos: the upload limit Discord gave with the request, when a job's ending reached its
    # status message (those that ended before this version count as shown), and whether a server keeps videos.
    """
    ALTER TABLE generations ADD COLUMN upload_limit INTEGER;
    ALTER TABLE generations ADD COLUMN status_shown_at REAL;
    UPDATE generations SET status_shown_at = finished_at WHERE finished_at IS NOT NULL;
    ALTER TABLE guild_limits ADD COLUMN keep_videos INTEGER;
    CREATE INDEX generations_unshown ON generations (finished_at)
        WHERE status_shown_at IS NULL AND status_message_id IS NOT NULL AND finished_at IS NOT NULL;
    """,
    # Private requests (their result goes to the requester by DM), and whether a server allows them.
    """
    ALTER TABLE generations ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE guild_limits ADD COLUMN private_mode INTEGER;
    """,
    # Each row in 'submitting' names the process that sent its create: others take it over only once it is gone.
    """
    ALTER TABLE generations ADD COLUMN owner TEXT;
    """,
)

# States that count against limits and were (or may have been) paid for: the API refused nothing and did not
# report a failure, which Luma does not charge.
_COUNTED = "state NOT IN ('rejected', 'failed', 'not_received', 'cancelled', 'expired')"
_IN_FLIGHT = "state IN ('submitting', 'running', 'checking')"


_COLUMNS = (
    "id, api_id, parent_api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio, "
    "expand_prompt, state, api_state, video_url, thumbnail_url, last_frame_url, failure_reason, "
    "status_message_id, created_at, updated_at, submitted_at, finished_at, announce_claimed_at, "
    "announced_at, announce_attempts, delivery, model, extras_json, checking_since, next_check_at, check_until, "
    "list_read_at, "
    "check_attempts, notice_sent_at, credits_used, usd_spent, queued_at, started_at, queue_attempts, not_before, "
    "limits_exempt, upload_limit, private"
)


_API_UPDATE = (
    "UPDATE generations SET api_state = ?, state = ?,"
    " video_url = COALESCE(?, video_url), thumbnail_url = COALESCE(?, thumbnail_url),"
    " last_frame_url = COALESCE(?, last_frame_url), failure_reason = COALESCE(?, failure_reason),"
    " credits_used = COALESCE(?, credits_used), usd_spent = COALESCE(?, usd_spent),"
    " finished_at = CASE WHEN ? THEN ? ELSE finished_at END, updated_at = ?, status_shown_at = NULL"
    " WHERE id = ? AND state = ?"
)
_TIME_OUT = (
    "UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, updated_at = ? WHERE id = ? AND state = ?"
)


def _api_update_params(row_id: int, api: ApiGeneration, now: float, expected: State) -> tuple[object, ...]:
    """What the API said of a generation, as our row records it; a final answer finishes it."""
    if api.is_completed:
        state = State.COMPLETED
    elif api.is_failed:
        state = State.FAILED
    else:
        state = State.RUNNING
    failure = api.failure_reason or ("The video service reported a failure." if api.is_failed else None)
    return (
        api.state,
        state.value,
        api.video_url,
        api.thumbnail_url,
        api.last_frame_url,
        failure,
        api.credits_used,
        api.usd_spent,
        state.is_final,
        now,
        now,
        row_id,
        expected.value,
    )


def _time_out_params(row_id: int, reason: str, now: float) -> tuple[object, ...]:
    return (State.TIMED_OUT.value, reason, now, now, row_id, State.RUNNING.value)


Query = tuple[str, tuple[object, ...]]


def _member_usage_query(guild_id: int, requester_id: int, since: float) -> Query:
    return (
        f"SELECT COUNT(*) FILTER (WHERE {_COUNTED} AND created_at >= ?), COUNT(*) FILTER (WHERE {_IN_FLIGHT}),"
        f" MAX(created_at) FILTER (WHERE state NOT IN ('rejected', 'cancelled', 'expired', 'not_received'))"
        f" FROM generations WHERE guild_id = ? AND requester_id = ?",
        (since, guild_id, requester_id),
    )


def _everyone_usage_query(guild_id: int, since: float) -> Query:
    return (
        f"SELECT COUNT(*) FILTER (WHERE {_COUNTED}), COUNT(*) FILTER (WHERE {_COUNTED} AND guild_id = ?)"
        f" FROM generations WHERE created_at >= ?",
        (guild_id, since),
    )


def _server_usage_query(guild_id: int, since: float) -> Query:
    return (
        f"SELECT COUNT(*) FROM generations WHERE guild_id = ? AND created_at >= ? AND {_COUNTED}",
        (guild_id, since),
    )


def _usage_now(
    connection: sqlite3.Connection, guild_id: int, requester_id: int, since: float, counts: UsageCounts
) -> Usage:
    """A member's usage, read on the writing connection inside the reservation's transaction."""
    user, running, last_submitted = connection.execute(*_member_usage_query(guild_id, requester_id, since)).fetchone()
    server = everyone = 0
    if counts.everyone:
        everyone, server = connection.execute(*_everyone_usage_query(guild_id, since)).fetchone()
    elif counts.server:
        server = connection.execute(*_server_usage_query(guild_id, since)).fetchone()[0]
    return Usage(
        user_today=user,
        server_today=server,
        everyone_today=everyone,
        user_running=running,
        user_last_submitted_at=last_submitted,
    )


def _queue_query(guild_id: int, requester_id: int, now: float, counts: UsageCounts) -> Query:
    # Each count seeks its own partial index (the WHEREs spell out their conditions); the two counts of jobs in
    # flight read an entry per running job, so they are made only where a running cap needs them.
    mine = "state = 'queued' AND guild_id = ? AND requester_id = ?"
    everyone = f"(SELECT COUNT(*) FROM generations WHERE {_IN_FLIGHT})" if counts.everyone_running else "0"
    server = f"(SELECT COUNT(*) FROM generations WHERE guild_id = ? AND {_IN_FLIGHT})" if counts.server_running else "0"
    return (
        f"SELECT {everyone}, {server}, (SELECT COUNT(*) FROM generations WHERE {mine}),"
        f" (SELECT COUNT(*) FROM generations WHERE {mine} AND COALESCE(not_before, 0) <= ?),"
        " (SELECT COUNT(*) FROM generations WHERE state = 'queued' AND guild_id = ? AND COALESCE(not_before, 0) <= ?)",
        ((guild_id,) if counts.server_running else ())
        + (guild_id, requester_id, guild_id, requester_id, now, guild_id, now),
    )


def history_query(page: HistorySlice) -> tuple[str, list[object]]:
    """The WHERE, ORDER and LIMIT of a history page: the server (and member) first, then the id, as the history
    indexes are ordered, so a page is read from the index without sorting, however long the history."""
    where = ["guild_id = ?"]
    params: list[object] = [page.guild_id]
    if page.requester_id is not None:
        where.append("requester_id = ?")
        params.append(page.requester_id)
    if page.channel_ids is not None:
        where.append(f"channel_id IN ({', '.join('?' * len(page.channel_ids))})" if page.channel_ids else "0")
        params.extend(sorted(page.channel_ids))
    if page.private_seen_by is not None:
        where.append("(private = 0 OR requester_id = ?)")
        params.append(page.private_seen_by)
    if page.before_id is not None:
        where.append("id < ?")
        params.append(page.before_id)
    if page.after_id is not None:
        where.append("id > ?")
        params.append(page.after_id)
    order = "ASC" if page.after_id is not None else "DESC"
    return f"WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?", [*params, page.limit]


def _in_flight_query(row_id: int, max_running: int, server_cap: int) -> Query:
    """Jobs in flight for everyone, for the job's server and for its member (the first two only where capped)."""
    job = "(SELECT guild_id FROM generations WHERE id = ?)"
    everyone = f"(SELECT COUNT(*) FROM generations WHERE {_IN_FLIGHT})" if max_running else "0"
    server = f"(SELECT COUNT(*) FROM generations WHERE guild_id = {job} AND {_IN_FLIGHT})" if server_cap else "0"
    user = (
        f"(SELECT COUNT(*) FROM generations WHERE guild_id = {job}"
        f" AND requester_id = (SELECT requester_id FROM generations WHERE id = ?) AND {_IN_FLIGHT})"
    )
    return f"SELECT {everyone}, {server}, {user}", ((row_id,) if server_cap else ()) + (row_id, row_id)


def _with_queue(
    connection: sqlite3.Connection, usage: Usage, guild_id: int, requester_id: int, now: float, counts: UsageCounts
) -> Usage:
    return queue_usage(usage, connection.execute(*_queue_query(guild_id, requester_id, now, counts)).fetchone())


def _statements(script: str) -> list[str]:
    """A migration's statements, one by one (a semicolon inside a string or a trigger does not end one)."""
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"a migration ends in an unfinished statement: {pending!r}")
    return statements


async def _all(connection: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
    """A whole query in one hop to the connection's thread. A statement left open across an await would keep its
    read transaction open, and every other read of that connection would see the database as it was then."""
    return list(await connection.execute_fetchall(sql, params))


async def _one(connection: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> sqlite3.Row | None:
    rows = await _all(connection, sql, params)
    return rows[0] if rows else None


class SqliteStore:
    """The bot's SQLite database."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        writer: SqliteWriter,
        *,
        command_reader: aiosqlite.Connection | None = None,
        background_reader: aiosqlite.Connection | None = None,
    ) -> None:
        # Every write goes through `writer`, the one writing connection; reads go through connections of their own
        # (WAL lets them run beside a write), so that a command's reads never wait in a thread busy with the
        # tracker's work, nor the reverse. `connection` serves the migrations and the operators' reports.
        self._db = connection
        self._writer = writer
        self._reads = command_reader or connection
        self._background_reads = background_reader or connection
        self._write_trouble = WriteTrouble()
        self.process_id = new_process_id()

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating its folder and file if needed) and migrate the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        opened: list[aiosqlite.Connection] = []
        writer: SqliteWriter | None = None
        try:
            connection = await cls._connect(path, opened)
            # WAL lets readers run beside the writes. (Read to its end: a statement left open would hold a read
            # transaction, and the migration's write lock could then not wait for another process's.)
            await _all(connection, "PRAGMA journal_mode = WAL")
            await cls._migrate(connection)
            # FULL sync so an acknowledged row survives a crash of the host, not only of the process.
            writer = SqliteWriter(
                path, ("PRAGMA busy_timeout = 5000", "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON")
            )
            await writer.open()
            readers = [await cls._connect(path, opened) for _ in range(2)]
            for reader in readers:
                await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            if writer is not None:
                await writer.close()
            for each in opened:
                await each.close()
            raise
        return cls(connection, writer, command_reader=readers[0], background_reader=readers[1])

    @staticmethod
    async def _connect(path: Path, opened: list[aiosqlite.Connection]) -> aiosqlite.Connection:
        connecting = aiosqlite.connect(path, isolation_level=None)
        try:
            connection = await connecting
        except BaseException:
            # aiosqlite stops its worker thread without waiting; if the event loop closed first, that thread
            # would print "Event loop is closed" tracebacks after the bot's one-line error.
            await asyncio.to_thread(connecting._thread.join, 5.0)
            raise
        opened.append(connection)
        connection.row_factory = sqlite3.Row
        await connection.execute("PRAGMA busy_timeout = 5000")
        return connection

    async def close(self) -> None:
        await self._writer.close()
        for connection in dict.fromkeys((self._reads, self._background_reads, self._db)):
            await connection.close()

    async def migrate(self) -> None:
        await self._migrate(self._db)

    @staticmethod
    async def _migrate(connection: aiosqlite.Connection) -> None:
        """Bring the schema to the newest version, one migration per transaction. Each transaction takes the write
        lock before it reads the version: another process opening the same file at once (the bot and an operator's
        tool) waits for it, then finds the version it left, and never runs a migration twice."""
        while True:
            await _all(connection, "BEGIN IMMEDIATE")
            try:
                [[version]] = await _all(connection, "PRAGMA user_version")
                if version > len(MIGRATIONS):
                    raise RuntimeError(
                        f"The database is at schema version {version}, newer than this bot knows ({len(MIGRATIONS)})"
                    )
                if version == len(MIGRATIONS):
                    await _all(connection, "COMMIT")
                    return
                # Statement by statement: executescript would commit first, and let another process in.
                for statement in _statements(MIGRATIONS[version]):
                    await _all(connection, statement)
                await _all(connection, f"PRAGMA user_version = {version + 1}")
                await _all(connection, "COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await _all(connection, "ROLLBACK")
                raise
            log.info("Database migrated to schema version %d", version + 1)

    async def table_rows(self, table: str) -> tuple[list[str], list[tuple[object, ...]]]:
        """Every row of one of the bot's tables (its column names, and its rows in key order), for copying."""
        if table not in TABLES:
            raise ValueError(f"not a table of the bot: {table!r}")
        async with self._db.execute(f"SELECT * FROM {table} ORDER BY 1") as cursor:
            columns = [column[0] for column in cursor.description]
            rows = [tuple(row) for row in await cursor.fetchall()]
        return columns, rows

    async def journal_mode(self) -> str:
        async with self._db.execute("PRAGMA journal_mode") as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else ""

    # --- generations: writing ---------------------------------------------------------------------------

    async def insert_submitting(
        self,
        *,
        kind: Kind,
        guild_id: int,
        channel_id: int,
        requester_id: int,
        options: GenerationOptions,
        parent_api_id: str | None,
        now: float,
        model: str = LEGACY_MODEL,
        admit: Callable[[Usage], None] | None = None,
        counted_since: float = 0.0,
        counts: UsageCounts | None = None,
    ) -> Generation:
        """Record a generation before its create request leaves, so a crash mid-request stays visible: `reserve`
        for a request that never waits in the queue. With `admit`, the member's usage is read and the row inserted
        in one transaction: `admit` raises to refuse."""

        def decide(usage: Usage) -> bool:
            if admit is not None:
                admit(usage)
            return False

        return await self.reserve(
            kind=kind,
            guild_id=guild_id,
            channel_id=channel_id,
            requester_id=requester_id,
            options=options,
            parent_api_id=parent_api_id,
            now=now,
            model=model,
            counted_since=counted_since,
            decide=decide if admit is not None else None,
            counts=counts,
        )

    async def _usage(
        self, connection: aiosqlite.Connection, guild_id: int, requester_id: int, since: float, counts: UsageCounts
    ) -> Usage:
        # The member's own figures come through the member's index; the server's and the bot's day totals scan every
        # row of the day, so they are counted only where a limit (or /quota) needs them.
        mine = await _one(connection, *_member_usage_query(guild_id, requester_id, since))
        user, running, last_submitted = mine if mine is not None else (0, 0, None)
        server = everyone = 0
        if counts.everyone:
            totals = await _one(connection, *_everyone_usage_query(guild_id, since))
            everyone, server = totals if totals is not None else (0, 0)
        elif counts.server:
            total = await _one(connection, *_server_usage_query(guild_id, since))
            server = total[0] if total is not None else 0
        return Usage(
            user_today=user,
            server_today=server,
            everyone_today=everyone,
            user_running=running,
            user_last_submitted_at=last_submitted,
        )

    async def usage_now(
        self, guild_id: int, requester_id: int, counted_since: float, counts: UsageCounts | None = None
    ) -> Usage:
        """A member's standing against the limits (for /quota, and the check before a command answers)."""
        return await self._usage(self._reads, guild_id, requester_id, counted_since, counts or UsageCounts())

    async def usage_report(self, guild_id: int, since: float) -> UsageReport:
        """A server's generations since `since`, all counted one way: a video is a generation or extension the
        API accepted and did not report failed (what is paid for); failures and refusals are counted apart."""
        totals = await _one(
            self._db,
            f"SELECT"
            f" COUNT(*) FILTER (WHERE kind = 'generate' AND {_COUNTED}),"
            f" COUNT(*) FILTER (WHERE kind = 'extend' AND {_COUNTED}),"
            f" COUNT(*) FILTER (WHERE state = 'failed'),"
            f" COUNT(*) FILTER (WHERE state = 'rejected'),"
            f" COUNT(*) FILTER (WHERE {_COUNTED})"
            f" FROM generations WHERE guild_id = ? AND created_at >= ?",
            (guild_id, since),
        )
        generations, extensions, failures, refused, charged = totals if totals is not None else (0, 0, 0, 0, 0)
        spend_rows = await _all(
            self._db,
            f"SELECT requester_id, model, COUNT(*), COUNT(credits_used), COALESCE(SUM(credits_used), 0),"
            f" COUNT(usd_spent), COALESCE(SUM(usd_spent), 0.0) FROM generations"
            f" WHERE guild_id = ? AND created_at >= ? AND {_COUNTED} GROUP BY requester_id, model",
            (guild_id, since),
        )
        spend = [SpendRow(*row) for row in spend_rows]
        return UsageReport(generations, extensions, failures, refused, charged, spend)

    async def state_counts(self) -> list[StateCount]:
        """Every generation counted by state and by the API's own state, for the metrics."""
        rows = await _all(
            self._db,
            f"SELECT state, api_state, COUNT(*), COUNT(*) FILTER (WHERE {_COUNTED}),"
            f" COUNT(*) FILTER (WHERE finished_at IS NOT NULL AND announced_at IS NULL),"
            f" COUNT(credits_used) FILTER (WHERE {_COUNTED}),"
            f" COALESCE(SUM(credits_used) FILTER (WHERE {_COUNTED}), 0)"
            f" FROM generations GROUP BY state, api_state",
        )
        return [StateCount(*row) for row in rows]

    async def mark_submitted(self, row_id: int, api: ApiGeneration, now: float) -> Generation:
        """The API accepted the create: keep its id, from now on the tracker follows it."""
        await self._write(
            "UPDATE generations SET api_id = ?, api_state = ?, state = ?, submitted_at = ?, updated_at = ?"
            " WHERE id = ? AND state = ?",
            (api.id, api.state, State.RUNNING.value, now, now, row_id, State.SUBMITTING.value),
        )
        return await self._require(row_id)

    async def mark_rejected(self, row_id: int, reason: str, now: float) -> Generation:
        """The API refused the create: nothing runs, and the member was told in the command's answer."""
        return await self._finish_submission(row_id, State.REJECTED, reason, now, announced=True)

    async def mark_rejected_untold(self, row_id: int, reason: str, now: float) -> Generation:
        """The API refused a queued job's create: nothing runs, and the tracker tells the requester."""
        return await self._finish_submission(row_id, State.REJECTED, reason, now, announced=False)

    async def mark_unconfirmed(self, row_id: int, reason: str, now: float, *, requester_told: bool) -> Generation:
        """The create may have been accepted without an answer; it is never resent."""
        return await self._finish_submission(row_id, State.UNCONFIRMED, reason, now, announced=requester_told)

    async def _finish_submission(
        self, row_id: int, state: State, reason: str, now: float, *, announced: bool
    ) -> Generation:
        await self._write(
            "UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, updated_at = ?,"
            " announced_at = ? WHERE id = ? AND state = ?",
            (state.value, reason, now, now, now if announced else None, row_id, State.SUBMITTING.value),
        )
        return await self._require(row_id)

    async def mark_checking(
        self, row_id: int, reason: str, now: float, *, next_check_at: float, check_until: float, requester_told: bool
    ) -> Generation:
        """The create's outcome is unknown: look for it in the account's list until `check_until`."""
        await self._write(
            "UPDATE generations SET state = ?, failure_reason = ?, checking_since = ?, next_check_at = ?,"
            " check_until = ?, notice_sent_at = ?, updated_at = ? WHERE id = ? AND state = ?",
            (
                State.CHECKING.value,
                reason,
                now,
                next_check_at,
                check_until,
                now if requester_told else None,
                now,
                row_id,
                State.SUBMITTING.value,
            ),
        )
        return await self._require(row_id)

    async def checking(self) -> list[Generation]:
        """Rows whose create is being looked for, in the order their requests were sent."""
        return await self._select(
            "WHERE state = ? ORDER BY COALESCE(started_at, created_at), id", (State.CHECKING.value,)
        )

    async def submitting_prompts(self) -> set[str]:
        """Prompts of creates still waiting for their answer: their generations may be listed before they return."""
        rows = await _all(
            self._background_reads, "SELECT prompt FROM generations WHERE state = ?", (State.SUBMITTING.value,)
        )
        return {str(row[0]) for row in rows}

    async def tracked_api_ids(self, api_ids: Collection[str]) -> set[str]:
        """Which of these API ids a row already follows."""
        wanted = list(api_ids)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = await _all(
                self._background_reads, f"SELECT api_id FROM generations WHERE api_id IN ({marks})", chunk
            )
            found.update(str(row[0]) for row in rows)
        return found

    async def adopt(
        self, row_id: int, api: ApiGeneration, now: float, *, from_states: Collection[State] = (State.CHECKING,)
    ) -> Generation:
        """A row whose create had no answer found its generation: from now on the tracker follows and announces it."""
        states = [state.value for state in from_states]
        marks = ", ".join("?" for _ in states)
        await self._write(
            "UPDATE generations SET api_id = ?, api_state = ?, state = ?, submitted_at = ?, updated_at = ?,"
            " failure_reason = NULL, next_check_at = NULL, finished_at = NULL, announced_at = NULL,"
            " announce_claimed_at = NULL, announce_attempts = 0, delivery = NULL, status_shown_at = NULL"
            f" WHERE id = ? AND api_id IS NULL AND state IN ({marks})",
            (api.id, api.state, State.RUNNING.value, now, now, row_id, *states),
        )
        return await self._require(row_id)

    async def note_check(self, row_id: int, *, next_check_at: float, list_read_at: float | None, now: float) -> None:
        """A look in the list did not find the row's generation (yet): when to look again."""
        await self._write(
            "UPDATE generations SET next_check_at = ?, list_read_at = COALESCE(?, list_read_at),"
            " check_attempts = check_attempts + 1, updated_at = ? WHERE id = ? AND state = ?",
            (next_check_at, list_read_at, now, row_id, State.CHECKING.value),
        )

    async def finish_check(self, row_id: int, state: State, reason: str, now: float) -> Generation:
        """The look-out ended without finding the generation: the requester is told how (by the announcement)."""
        await self._write(
            "UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, updated_at = ?,"
            " next_check_at = NULL WHERE id = ? AND state = ?",
            (state.value, reason, now, now, row_id, State.CHECKING.value),
        )
        return await self._require(row_id)

    async def mark_notice_sent(self, row_id: int, now: float) -> None:
        await self._write("UPDATE generations SET notice_sent_at = ? WHERE id = ?", (now, row_id))

    async def set_status_message(self, row_id: int, message_id: int) -> None:
        await self._write("UPDATE generations SET status_message_id = ? WHERE id = ?", (message_id, row_id))

    async def apply_api_update(
        self, row_id: int, api: ApiGeneration, now: float, *, expected: State = State.RUNNING
    ) -> Generation:
        """Store what the API says of a generation in the `expected` state; a final answer finishes it (once)."""
        await self._write(_API_UPDATE, _api_update_params(row_id, api, now, expected))
        return await self._require(row_id)

    async def record_lookups(
        self, updates: Sequence[tuple[int, ApiGeneration]], timed_out: Sequence[int], timeout_reason: str, now: float
    ) -> list[int]:
        """Store one batch of look-ups in one short transaction: the rows whose API state changed, and the running
        rows past their deadline. Returns the rows this made final, oldest first: they are to be announced."""
        if not updates and not timed_out:
            return []

        def record(connection: sqlite3.Connection) -> list[int]:
            finished: list[int] = []
            for row_id, api in updates:
                row = connection.execute(
                    _API_UPDATE + " RETURNING state", _api_update_params(row_id, api, now, State.RUNNING)
                ).fetchone()
                if row is not None and State(row[0]).is_final:
                    finished.append(row_id)
            for row_id in timed_out:
                if connection.execute(
                    _TIME_OUT + " RETURNING id", _time_out_params(row_id, timeout_reason, now)
                ).fetchone():
                    finished.append(row_id)
            return sorted(finished)

        return await self._run_write(record, background=True)

    async def mark_timed_out(self, row_id: int, reason: str, now: float) -> Generation:
        await self._write(_TIME_OUT, _time_out_params(row_id, reason, now), background=True)
        return await self._require(row_id)

    async def claim_announcement(self, row_id: int, now: float) -> None:
        """Note that an announcement is about to be sent, so a restart knows to check before sending again."""
        await self._write(
            "UPDATE generations SET announce_claimed_at = COALESCE(announce_claimed_at, ?),"
            " announce_attempts = announce_attempts + 1 WHERE id = ?",
            (now, row_id),
            background=True,
        )

    async def mark_announced(self, row_id: int, delivery: Delivery, now: float) -> None:
        await self._write(
            "UPDATE generations SET announced_at = ?, delivery = ?, updated_at = ?"
            " WHERE id = ? AND announced_at IS NULL AND finished_at IS NOT NULL",
            (now, delivery.value, now, row_id),
            background=True,
        )

    async def mark_status_shown(self, row_ids: Sequence[int], now: float) -> None:
        """These rows' endings reached their status messages (or never can): no sweep looks at them again."""
        if not row_ids:
            return
        marks = ", ".join("?" for _ in row_ids)
        await self._write(
            f"UPDATE generations SET status_shown_at = ? WHERE id IN ({marks}) AND finished_at IS NOT NULL",
            (now, *row_ids),
            background=True,
        )

    # --- generations: reading ---------------------------------------------------------------------------

    async def status_generation(self, row_id: int) -> Generation | None:
        """A row as its status message shows it (read beside the commands, never in their way)."""
        row = await _one(self._background_reads, f"SELECT {_COLUMNS} FROM generations WHERE id = ?", (row_id,))
        return generation_from_row(row) if row else None

    async def unshown_endings(self, since: float) -> list[Generation]:
        """Jobs that ended since `since` whose status message does not show it yet, oldest first."""
        rows = await _all(
            self._background_reads,
            f"SELECT {_COLUMNS} FROM generations WHERE status_shown_at IS NULL AND status_message_id IS NOT NULL"
            " AND finished_at IS NOT NULL AND finished_at >= ? ORDER BY finished_at, id",
            (since,),
        )
        return [generation_from_row(row) for row in rows]

    async def get(self, row_id: int) -> Generation | None:
        row = await _one(self._reads, f"SELECT {_COLUMNS} FROM generations WHERE id = ?", (row_id,))
        return generation_from_row(row) if row else None

    async def _require(self, row_id: int) -> Generation:
        generation = await self.get(row_id)
        if generation is None:
            raise LookupError(f"generation row {row_id} does not exist")
        return generation

    async def last_reported_cost(
        self, model: str, resolution: str | None, duration: int | None, hdr: bool = False
    ) -> int | None:
        """What the API last reported a video of this model and these settings cost, if it ever did."""
        row = await _one(
            self._reads,
            "SELECT credits_used FROM generations WHERE model = ? AND credits_used IS NOT NULL"
            " AND json_extract(extras_json, '$.resolution') IS ? AND json_extract(extras_json, '$.duration') IS ?"
            " AND COALESCE(json_extract(extras_json, '$.hdr'), 0) = ?"
            " ORDER BY finished_at DESC, id DESC LIMIT 1",
            (model, resolution, duration, int(hdr)),
        )
        return int(row[0]) if row else None

    async def latest_api_id(self, model: str, since: float) -> str | None:
        """The id of the newest generation of `model` made since `since`, if any."""
        row = await _one(
            self._reads,
            "SELECT api_id FROM generations WHERE model = ? AND api_id IS NOT NULL AND created_at >= ?"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            (model, since),
        )
        return str(row[0]) if row else None

    async def get_by_api_id(self, api_id: str) -> Generation | None:
        row = await _one(self._reads, f"SELECT {_COLUMNS} FROM generations WHERE api_id = ?", (api_id,))
        return generation_from_row(row) if row else None

    async def find_by_short_id(self, guild_id: int, short_id: str) -> list[Generation]:
        # The WHERE spells out the expression of generations_short_id, so that SQLite seeks it.
        return await self._select(
            "WHERE guild_id = ? AND substr(api_id, 1, 8) = ? ORDER BY id DESC LIMIT 2", (guild_id, short_id)
        )

    async def running(self) -> list[Generation]:
        """Generations the API is working on, oldest first."""
        return await self._select("WHERE state = ? AND api_id IS NOT NULL ORDER BY id", (State.RUNNING.value,))

    async def tracked(self) -> list[TrackedGeneration]:
        """The running generations, oldest first, with only what a look-up needs (read through the partial index)."""
        # The index's own condition is spelled out: SQLite uses a partial index only when the query implies it.
        rows = await _all(
            self._background_reads,
            f"SELECT id, api_id, api_state, COALESCE(submitted_at, created_at), channel_id, status_message_id"
            " FROM generations"
            f" WHERE {_IN_FLIGHT} AND state = 'running' AND api_id IS NOT NULL ORDER BY id",
        )
        return [TrackedGeneration._make(row) for row in rows]

    async def unannounced_ids(self) -> list[int]:
        """Finished generations whose requester has not been told yet, oldest first (ids only)."""
        rows = await _all(
            self._background_reads,
            "SELECT id FROM generations WHERE announced_at IS NULL AND finished_at IS NOT NULL"
            " ORDER BY finished_at, id",
        )
        return [row[0] for row in rows]

    async def unannounced_generation(self, row_id: int) -> Generation | None:
        """The generation, if it is finished and its requester has not been told yet."""
        row = await _one(
            self._background_reads,
            f"SELECT {_COLUMNS} FROM generations WHERE id = ? AND announced_at IS NULL AND finished_at IS NOT NULL",
            (row_id,),
        )
        return generation_from_row(row) if row else None

    async def unannounced(self) -> list[Generation]:
        """Finished generations whose requester has not been told yet, oldest first."""
        return await self._select("WHERE announced_at IS NULL AND finished_at IS NOT NULL ORDER BY finished_at, id", ())

    async def recent_for_member(self, guild_id: int, requester_id: int, limit: int = 10) -> list[Generation]:
        """A member's latest generations in one server, newest first."""
        return await self._select(
            "WHERE guild_id = ? AND requester_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (guild_id, requester_id, limit),
        )

    async def search_references(
        self,
        guild_id: int,
        text: str,
        limit: int = 25,
        *,
        requester_id: int | None = None,
        finished_only: bool = False,
    ) -> list[Generation]:
        """Generations of a server whose id or prompt contains `text`, newest first (for autocomplete)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = ["guild_id = ?", "api_id IS NOT NULL", "(api_id LIKE ? ESCAPE '\\' OR prompt LIKE ? ESCAPE '\\')"]
        params: list[object] = [guild_id, pattern, pattern]
        if requester_id is not None:
            where.append("requester_id = ?")
            params.append(requester_id)
        if finished_only:
            where.append("state = ?")
            params.append(State.COMPLETED.value)
        return await self._select(f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*params, limit))

    async def history_page(self, page: HistorySlice) -> list[Generation]:
        rows = await self._select(*history_query(page))
        # The page just newer than a row is read upwards from it, then turned newest first.
        return rows[::-1] if page.after_id is not None else rows

    async def _select(self, where: str, params: Sequence[object]) -> list[Generation]:
        return [
            generation_from_row(row)
            for row in await _all(self._reads, f"SELECT {_COLUMNS} FROM generations {where}", params)
        ]

    async def _write(self, sql: str, params: Sequence[object], *, background: bool = False) -> int:
        """Run one writing statement in its own transaction; returns the last inserted row id."""
        return await self._run_write(
            lambda connection: connection.execute(sql, params).lastrowid or 0, background=background
        )

    async def _run_write(self, work: Callable[[sqlite3.Connection], T], *, background: bool = False) -> T:
        """Run a write on the writing connection; a database that cannot be written raises StorageUnavailable (its
        cause logged once a minute)."""
        try:
            result = await self._writer.run(work, background=background)
        except (sqlite3.OperationalError, OSError) as error:
            self._write_trouble.failed(error)
            raise StorageUnavailable(str(error)) from error
        self._write_trouble.succeeded()
        return result

    # --- the queue ----------------------------------------------------------------------------------------

    async def reserve(
        self,
        *,
        kind: Kind,
        guild_id: int,
        channel_id: int,
        requester_id: int,
        options: GenerationOptions,
        parent_api_id: str | None,
        now: float,
        model: str,
        counted_since: float,
        decide: Callable[[Usage], bool] | None,
        limits_exempt: bool = False,
        counts: UsageCounts | None = None,
        upload_limit: int | None = None,
        private: bool = False,
    ) -> Generation:
        """Record a request in one transaction with the count of what limits it: `decide` raises to refuse, or
        says whether the job waits in the queue (True) or is sent now (it is then 'submitting' before it leaves).
        Without `decide` (no limit nor cap applies) nothing is counted and the job is sent now.
        `counts` says which day totals `decide` needs beyond the member's own (all by default)."""
        counts = counts or UsageCounts()

        def reserve_now(connection: sqlite3.Connection) -> Generation:
            queued = False
            if decide is not None:
                usage = _usage_now(connection, guild_id, requester_id, counted_since, counts)
                queued = decide(_with_queue(connection, usage, guild_id, requester_id, now, counts))
            state = State.QUEUED if queued else State.SUBMITTING
            # The row comes back from the insert itself: once the batch commits, nothing more can fail.
            [row] = connection.execute(
                "INSERT INTO generations (kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
                " expand_prompt, parent_api_id, state, created_at, updated_at, model, extras_json, queued_at,"
                " started_at, limits_exempt, upload_limit, private, owner)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (
                    kind.value,
                    guild_id,
                    channel_id,
                    requester_id,
                    options.prompt,
                    options.aspect_ratio,
                    int(options.expand_prompt),
                    parent_api_id,
                    state.value,
                    now,
                    now,
                    model,
                    json.dumps(options.extras, sort_keys=True),
                    now if queued else None,
                    None if queued else now,
                    int(limits_exempt),
                    upload_limit,
                    int(private),
                    None if queued else self.process_id,
                ),
            ).fetchall()
            return generation_from_row(row)

        # The writer runs it whole even if the command is cancelled: the transaction is never left open.
        return await self._run_write(reserve_now)

    async def queue_usage_now(
        self, guild_id: int, requester_id: int, counted_since: float, now: float, counts: UsageCounts | None = None
    ) -> Usage:
        """A member's standing against the limits and the running caps, before anything is reserved."""
        usage = await self._usage(self._reads, guild_id, requester_id, counted_since, counts or UsageCounts())
        row = await _one(self._reads, *_queue_query(guild_id, requester_id, now, counts or UsageCounts()))
        return queue_usage(usage, row)

    async def queued(self) -> list[Generation]:
        """Every job waiting for a slot, oldest first."""
        return await self._select("WHERE state = ? ORDER BY queued_at, id", (State.QUEUED.value,))

    async def running_counts(self) -> dict[tuple[int, int], int]:
        """Jobs at the API (or being sent, or looked for) per server and member."""
        rows = await _all(
            self._reads,
            f"SELECT guild_id, requester_id, COUNT(*) FROM generations WHERE {_IN_FLIGHT}"
            " GROUP BY guild_id, requester_id",
        )
        return {(int(row[0]), int(row[1])): int(row[2]) for row in rows}

    async def last_starts(self, since: float) -> dict[tuple[int, int], float]:
        """When each server's members last had a job sent to the API (since `since`): the queue's fairness."""
        rows = await _all(
            self._reads,
            "SELECT guild_id, requester_id, MAX(COALESCE(started_at, created_at)) FROM generations"
            " WHERE created_at >= ? AND state NOT IN ('queued', 'cancelled', 'expired')"
            " GROUP BY guild_id, requester_id",
            (since,),
        )
        return {(int(row[0]), int(row[1])): float(row[2]) for row in rows}

    async def claim_queued(
        self, row_id: int, now: float, *, max_running: int, server_cap: int, user_cap: int
    ) -> Generation | None:
        """Move a waiting job to 'submitting' (before its request leaves) if the running caps still allow it."""

        def claim(connection: sqlite3.Connection) -> Generation | None:
            everyone, server, user = connection.execute(*_in_flight_query(row_id, max_running, server_cap)).fetchone()
            full = (
                (max_running and everyone >= max_running)
                or (server_cap and server >= server_cap)
                or (user_cap and user >= user_cap)
            )
            if full:
                return None
            # The claimed row comes back from the update itself: no second step can leave it 'submitting' with no
            # one to send it.
            rows = connection.execute(
                "UPDATE generations SET state = ?, started_at = ?, updated_at = ?, owner = ? WHERE id = ? AND state = ?"
                f" RETURNING {_COLUMNS}",
                (State.SUBMITTING.value, now, now, self.process_id, row_id, State.QUEUED.value),
            ).fetchall()
            return generation_from_row(rows[0]) if rows else None

        return await self._run_write(claim)

    async def requeue(self, row_id: int, now: float, *, not_before: float) -> Generation:
        """The API refused the create with 429 (nothing made, nothing charged): the job waits again at its place."""
        await self._write(
            "UPDATE generations SET state = ?, queued_at = COALESCE(queued_at, created_at), started_at = NULL,"
            " queue_attempts = queue_attempts + 1, not_before = ?, updated_at = ? WHERE id = ? AND state = ?",
            (State.QUEUED.value, not_before, now, row_id, State.SUBMITTING.value),
        )
        return await self._require(row_id)

    async def cancel_queued(self, row_id: int, reason: str, now: float) -> bool:
        """Remove a waiting job (nothing was sent); False when it is no longer waiting. The canceller is answered
        at once, so nothing is announced."""
        return bool(
            await self._write_count(
                "UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, announced_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (State.CANCELLED.value, reason, now, now, now, row_id, State.QUEUED.value),
            )
        )

    async def expire_queued(self, waited_since: float, reason: str, now: float) -> list[Generation]:
        """Drop jobs waiting since before `waited_since`; the tracker tells their requesters. One statement drops
        them and names them, so a job cancelled or started meanwhile is neither dropped nor named."""
        rows = await self._run_write(
            lambda connection: connection.execute(
                "UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, updated_at = ?"
                f" WHERE state = ? AND queued_at < ? RETURNING {_COLUMNS}",
                (State.EXPIRED.value, reason, now, now, State.QUEUED.value, waited_since),
            ).fetchall()
        )
        # RETURNING names rows in no promised order: oldest first, as the queue was.
        return sorted((generation_from_row(row) for row in rows), key=lambda row: (row.queued_at or 0.0, row.id))

    async def queue_waits(self, guild_id: int, since: float) -> tuple[int, list[float]]:
        """How many of a server's jobs since `since` waited in the queue, and how long those that started waited."""
        rows = await _all(
            self._db,
            "SELECT started_at - queued_at FROM generations"
            " WHERE guild_id = ? AND created_at >= ? AND queued_at IS NOT NULL",
            (guild_id, since),
        )
        return len(rows), [float(row[0]) for row in rows if row[0] is not None]

    # --- server rules -----------------------------------------------------------------------------------

    async def guild_rules(self, guild_id: int, defaults: ServerLimits) -> GuildRules:
        """A server's rules, with the operator's defaults where the server set nothing."""
        row = await _one(
            self._reads,
            f"SELECT {', '.join(LIMIT_NAMES)}, members_share_videos, keep_videos, private_mode"
            " FROM guild_limits WHERE guild_id = ?",
            (guild_id,),
        )
        overrides: dict[str, int | None] = {name: row[name] for name in LIMIT_NAMES} if row else {}
        share = row["members_share_videos"] if row else None
        keep = row["keep_videos"] if row else None
        private_mode = row["private_mode"] if row else None
        entries: dict[str, list[str]] = {kind.value: [] for kind in RuleEntry}
        for kind, value in await _all(
            self._reads,
            "SELECT kind, value FROM guild_rule_entries WHERE guild_id = ? ORDER BY kind, value",
            (guild_id,),
        ):
            entries[kind].append(value)
        return GuildRules(
            limits=defaults.merged(overrides),
            overridden=frozenset(name for name, value in overrides.items() if value is not None),
            allowed_channels=frozenset(int(value) for value in entries[RuleEntry.CHANNEL]),
            allowed_roles=frozenset(int(value) for value in entries[RuleEntry.ROLE]),
            exempt_roles=frozenset(int(value) for value in entries[RuleEntry.EXEMPT_ROLE]),
            blocked_phrases=tuple(entries[RuleEntry.BLOCKED_PHRASE]),
            allowed_models=frozenset(entries[RuleEntry.MODEL]),
            members_share_videos=bool(share) if share is not None else True,
            keep_videos=bool(keep),
            private_mode=bool(private_mode) if private_mode is not None else True,
        )

    async def set_guild_limits(self, guild_id: int, values: dict[str, int], now: float) -> None:
        """Set some of a server's numeric limits (0 = no limit); the others keep their value."""
        unknown = set(values) - set(LIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown limits: {sorted(unknown)}")
        await self._upsert_guild_limits(guild_id, values, now)

    async def set_members_share_videos(self, guild_id: int, allowed: bool, now: float) -> None:
        await self._upsert_guild_limits(guild_id, {"members_share_videos": int(allowed)}, now)

    async def set_private_mode(self, guild_id: int, allowed: bool, now: float) -> None:
        await self._upsert_guild_limits(guild_id, {"private_mode": int(allowed)}, now)

    async def set_keep_videos(self, guild_id: int, keep: bool, now: float) -> None:
        await self._upsert_guild_limits(guild_id, {"keep_videos": int(keep)}, now)

    async def _upsert_guild_limits(self, guild_id: int, values: dict[str, int], now: float) -> None:
        if not values:
            return
        # Column names come from LIMIT_NAMES or the code above, never from a member.
        columns = ", ".join(values)
        placeholders = ", ".join("?" for _ in values)
        updates = ", ".join(f"{column} = excluded.{column}" for column in values)
        await self._write(
            f"INSERT INTO guild_limits (guild_id, {columns}, updated_at) VALUES (?, {placeholders}, ?)"
            f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
            (guild_id, *values.values(), now),
        )

    async def add_rule_entry(self, guild_id: int, kind: RuleEntry, value: str) -> bool:
        """Add to one of a server's lists; False if it was there already."""
        return bool(
            await self._write_count(
                "INSERT OR IGNORE INTO guild_rule_entries (guild_id, kind, value) VALUES (?, ?, ?)",
                (guild_id, kind.value, value),
            )
        )

    async def remove_rule_entry(self, guild_id: int, kind: RuleEntry, value: str) -> bool:
        """Remove from one of a server's lists; False if it was not there."""
        return bool(
            await self._write_count(
                "DELETE FROM guild_rule_entries WHERE guild_id = ? AND kind = ? AND value = ?",
                (guild_id, kind.value, value),
            )
        )

    async def clear_rule_entries(self, guild_id: int, kind: RuleEntry) -> int:
        """Empty one of a server's lists; returns how many entries it had."""
        return await self._write_count(
            "DELETE FROM guild_rule_entries WHERE guild_id = ? AND kind = ?", (guild_id, kind.value)
        )

    async def _write_count(self, sql: str, params: Sequence[object]) -> int:
        """Run one writing statement in its own transaction; returns how many rows it changed."""
        return await self._run_write(lambda connection: connection.execute(sql, params).rowcount)

    # --- bot metadata -----------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await _one(self._reads, "SELECT value FROM bot_meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._write(
            "INSERT INTO bot_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- sharing the work between processes: on SQLite the bot is one process, which holds every lease ---------

    async def beat(self, now: float) -> None:
        """Nothing to note: no other process waits to take over."""

    async def lease_lookups(self, now: float, lease_seconds: float) -> list[TrackedGeneration]:
        return await self.tracked()

    async def lease_announcement(self, row_id: int, now: float, lease_seconds: float) -> Generation | None:
        return await self.unannounced_generation(row_id)

    async def hold_lease(self, name: str, now: float, lease_seconds: float) -> bool:
        return True

    async def take_over_submissions(self, now: float, gone_after: float) -> list[Generation]:
        """Every row in 'submitting' that this process did not send: on SQLite any other process is gone (an earlier
        run of the bot)."""
        # Looked for first through the partial index (its condition spelled out): the usual answer is none.
        waiting = await _one(
            self._background_reads,
            f"SELECT 1 FROM generations WHERE {_IN_FLIGHT} AND state = 'submitting' AND owner IS NOT ? LIMIT 1",
            (self.process_id,),
        )
        if waiting is None:
            return []

        def take(connection: sqlite3.Connection) -> list[int]:
            rows = connection.execute(
                "UPDATE generations SET owner = ? WHERE state = 'submitting' AND owner IS NOT ? RETURNING id",
                (self.process_id, self.process_id),
            ).fetchall()
            return sorted(int(row[0]) for row in rows)

        taken = await self._run_write(take)
        return [generation for row_id in taken if (generation := await self.get(row_id)) is not None]

    async def claim_notice(self, key: str, now: float, interval: float) -> bool:
        return bool(
            await self._write_count(
                "INSERT INTO bot_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                " WHERE CAST(bot_meta.value AS REAL) <= ?",
                (f"notice:{key}", repr(now), now - interval),
            )
        )
