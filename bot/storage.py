"""SQLite storage: one aiosqlite connection, WAL, numbered migrations, every SQL statement of the bot."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from .models import ApiGeneration, Delivery, Generation, GenerationOptions, Kind, State

log = logging.getLogger(__name__)

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
)

_COLUMNS = (
    "id, api_id, parent_api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio, "
    "expand_prompt, state, api_state, video_url, thumbnail_url, last_frame_url, failure_reason, "
    "status_message_id, created_at, updated_at, submitted_at, finished_at, announce_claimed_at, "
    "announced_at, announce_attempts, delivery"
)


def _generation_from_row(row: sqlite3.Row) -> Generation:
    return Generation(
        id=row["id"],
        api_id=row["api_id"],
        parent_api_id=row["parent_api_id"],
        kind=Kind(row["kind"]),
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        requester_id=row["requester_id"],
        prompt=row["prompt"],
        aspect_ratio=row["aspect_ratio"],
        expand_prompt=bool(row["expand_prompt"]),
        state=State(row["state"]),
        api_state=row["api_state"],
        video_url=row["video_url"],
        thumbnail_url=row["thumbnail_url"],
        last_frame_url=row["last_frame_url"],
        failure_reason=row["failure_reason"],
        status_message_id=row["status_message_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        announce_claimed_at=row["announce_claimed_at"],
        announced_at=row["announced_at"],
        announce_attempts=row["announce_attempts"],
        delivery=Delivery(row["delivery"]) if row["delivery"] else None,
    )


class GenerationStore:
    """The bot's SQLite database."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        # One connection is shared by every coroutine: a write issued while another coroutine holds an
        # explicit transaction would silently join (and roll back with) it, so writes take turns.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> GenerationStore:
        """Open (creating its folder and file if needed) and migrate the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            # WAL lets readers run beside the tracker's writes; FULL sync so an acknowledged row survives
            # a crash of the host, not only of the process.
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA synchronous = FULL")
            await connection.execute("PRAGMA busy_timeout = 5000")
            await connection.execute("PRAGMA foreign_keys = ON")
            store = cls(connection)
            await store.migrate()
        except BaseException:
            await connection.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"The database is at schema version {version}, newer than this bot knows ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first, so the migration and its version bump go in one explicit script.
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
            log.info("Database migrated to schema version %d", number)

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
    ) -> Generation:
        """Record a generation before its create request leaves, so a crash mid-request stays visible."""
        row_id = await self._write(
            "INSERT INTO generations (kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
            " expand_prompt, parent_api_id, state, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind.value,
                guild_id,
                channel_id,
                requester_id,
                options.prompt,
                options.aspect_ratio,
                int(options.expand_prompt),
                parent_api_id,
                State.SUBMITTING.value,
                now,
                now,
            ),
        )
        return await self._require(row_id)

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

    async def recover_interrupted_submissions(self, reason: str, now: float) -> list[Generation]:
        """Rows left in 'submitting' by a crash: their outcome is unknown, and their requesters must hear so."""
        async with (
            self._write_lock,
            self._db.execute(
                f"UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, updated_at = ?"
                f" WHERE state = ? RETURNING {_COLUMNS}",
                (State.UNCONFIRMED.value, reason, now, now, State.SUBMITTING.value),
            ) as cursor,
        ):
            return [_generation_from_row(row) for row in await cursor.fetchall()]

    async def set_status_message(self, row_id: int, message_id: int) -> None:
        await self._write("UPDATE generations SET status_message_id = ? WHERE id = ?", (message_id, row_id))

    async def apply_api_update(self, row_id: int, api: ApiGeneration, now: float) -> Generation:
        """Store what the API says of a running generation; a final answer finishes it (once)."""
        if api.is_completed:
            state = State.COMPLETED
        elif api.is_failed:
            state = State.FAILED
        else:
            state = State.RUNNING
        failure = api.failure_reason or ("The video service reported a failure." if api.is_failed else None)
        await self._write(
            "UPDATE generations SET api_state = ?, state = ?,"
            " video_url = COALESCE(?, video_url), thumbnail_url = COALESCE(?, thumbnail_url),"
            " last_frame_url = COALESCE(?, last_frame_url), failure_reason = COALESCE(?, failure_reason),"
            " finished_at = CASE WHEN ? THEN ? ELSE finished_at END, updated_at = ?"
            " WHERE id = ? AND state = ?",
            (
                api.state,
                state.value,
                api.video_url,
                api.thumbnail_url,
                api.last_frame_url,
                failure,
                state.is_final,
                now,
                now,
                row_id,
                State.RUNNING.value,
            ),
        )
        return await self._require(row_id)

    async def mark_timed_out(self, row_id: int, reason: str, now: float) -> Generation:
        await self._write(
            "UPDATE generations SET state = ?, failure_reason = ?, finished_at = ?, updated_at = ?"
            " WHERE id = ? AND state = ?",
            (State.TIMED_OUT.value, reason, now, now, row_id, State.RUNNING.value),
        )
        return await self._require(row_id)

    async def claim_announcement(self, row_id: int, now: float) -> None:
        """Note that an announcement is about to be sent, so a restart knows to check before sending again."""
        await self._write(
            "UPDATE generations SET announce_claimed_at = COALESCE(announce_claimed_at, ?),"
            " announce_attempts = announce_attempts + 1 WHERE id = ?",
            (now, row_id),
        )

    async def mark_announced(self, row_id: int, delivery: Delivery, now: float) -> None:
        await self._write(
            "UPDATE generations SET announced_at = ?, delivery = ?, updated_at = ?"
            " WHERE id = ? AND announced_at IS NULL",
            (now, delivery.value, now, row_id),
        )

    # --- generations: reading ---------------------------------------------------------------------------

    async def get(self, row_id: int) -> Generation | None:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM generations WHERE id = ?", (row_id,)) as cursor:
            row = await cursor.fetchone()
        return _generation_from_row(row) if row else None

    async def _require(self, row_id: int) -> Generation:
        generation = await self.get(row_id)
        if generation is None:
            raise LookupError(f"generation row {row_id} does not exist")
        return generation

    async def get_by_api_id(self, api_id: str) -> Generation | None:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM generations WHERE api_id = ?", (api_id,)) as cursor:
            row = await cursor.fetchone()
        return _generation_from_row(row) if row else None

    async def running(self) -> list[Generation]:
        """Generations the API is working on, oldest first."""
        return await self._select("WHERE state = ? AND api_id IS NOT NULL ORDER BY id", (State.RUNNING.value,))

    async def unannounced(self) -> list[Generation]:
        """Finished generations whose requester has not been told yet, oldest first."""
        return await self._select("WHERE announced_at IS NULL AND finished_at IS NOT NULL ORDER BY finished_at, id", ())

    async def recent_for_member(self, guild_id: int, requester_id: int, limit: int = 10) -> list[Generation]:
        """A member's latest generations in one server, newest first."""
        return await self._select(
            "WHERE guild_id = ? AND requester_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (guild_id, requester_id, limit),
        )

    async def search_references(self, guild_id: int, text: str, limit: int = 25) -> list[Generation]:
        """Generations of a server whose id or prompt contains `text`, newest first (for autocomplete)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return await self._select(
            "WHERE guild_id = ? AND api_id IS NOT NULL"
            " AND (api_id LIKE ? ESCAPE '\\' OR prompt LIKE ? ESCAPE '\\')"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (guild_id, pattern, pattern, limit),
        )

    async def _select(self, where: str, params: Sequence[object]) -> list[Generation]:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM generations {where}", params) as cursor:
            return [_generation_from_row(row) for row in await cursor.fetchall()]

    async def _write(self, sql: str, params: Sequence[object]) -> int:
        """Run one writing statement in its own transaction; returns the last inserted row id."""
        async with self._write_lock, self._db.execute(sql, params) as cursor:
            return cursor.lastrowid or 0

    # --- bot metadata -----------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM bot_meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._write(
            "INSERT INTO bot_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
