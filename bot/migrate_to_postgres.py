"""`python -m bot.migrate_to_postgres`: copy the bot's SQLite database into PostgreSQL.

Reads DATABASE_PATH and DATABASE_URL like the bot (the environment, then .env), or takes them as options. Every
table is copied: rows not in PostgreSQL yet are added, and rows that changed in SQLite since an earlier copy are
brought up to date (never one changed in PostgreSQL after it), so running it again is safe. It ends by comparing
every row of each table on both sides, and exits 1 when they differ. It refuses to copy while a bot runs on the
SQLite file (its heartbeat beside the file is fresh): stop the bot first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import find_dotenv, load_dotenv

from .config import ConfigError, DatabaseUrl, database_path, database_url
from .health import HEARTBEAT_STALE_AFTER_SECONDS, heartbeat_path
from .storage import (
    TABLE_KEYS,
    TABLES,
    DatabaseUnusable,
    ImportCounts,
    SqliteStore,
    StorageUnavailable,
    open_postgres,
    open_sqlite,
)

if TYPE_CHECKING:
    from .storage.postgres import PostgresStore

EXIT_DIFFERENT = 1
EXIT_CONFIG_ERROR = 2
EXIT_NOT_COPIED = 3

Row = tuple[object, ...]


class CopyFailed(Exception):
    """The copy was refused or stopped half way; the message says why in one line (never with a password)."""


def running_bot(source: Path, now: float) -> str | None:
    """Why copying now would miss what a running bot writes: its heartbeat beside the file is fresh. None when no
    bot beats there (none started, or it stopped: its last beat is old)."""
    beat = heartbeat_path(source)
    try:
        age = now - beat.stat().st_mtime
    except FileNotFoundError:
        return None
    if age > HEARTBEAT_STALE_AFTER_SECONDS:
        return None
    return (
        f"a bot is running on {source} (its heartbeat {beat} beat {max(age, 0.0):.0f} s ago): stop it, then copy, "
        "so that nothing it writes meanwhile is left behind"
    )


def difference(columns: Sequence[str], key: Sequence[str], ours: Sequence[Row], theirs: Sequence[Row]) -> str:
    """How PostgreSQL's rows (`theirs`) differ from SQLite's (`ours`), both of these columns; "" when they are the
    same rows."""
    at = [columns.index(name) for name in key]

    def by_key(rows: Sequence[Row]) -> dict[Row, Row]:
        return {tuple(row[n] for n in at): row for row in rows}

    mine, copied = by_key(ours), by_key(theirs)
    missing = len(mine.keys() - copied.keys())
    extra = len(copied.keys() - mine.keys())
    differ = sum(1 for name, row in mine.items() if name in copied and copied[name] != row)
    parts = []
    if differ:
        parts.append("1 row differs" if differ == 1 else f"{differ} rows differ")
    if missing:
        parts.append(f"{missing} missing in PostgreSQL")
    if extra:
        parts.append(f"{extra} only in PostgreSQL")
    return ", ".join(parts)


async def copy_all(source: Path, url: DatabaseUrl) -> bool:
    """Copy every table and compare the two sides; True when PostgreSQL holds exactly SQLite's rows."""
    running = running_bot(source, time.time())
    if running is not None:
        raise CopyFailed(f"Not copied: {running}.")
    sqlite = await open_sqlite(source)
    try:
        postgres = await open_postgres(url)
        try:
            print(f"Copying {source} into {url.shown()}")
            same = True
            for table in TABLES:
                try:
                    same = await _copy_table(table, sqlite, postgres) and same
                except _copy_errors() as error:
                    reason = url.hidden_in(str(error) or type(error).__name__)
                    if isinstance(error, TypeError):
                        reason = f"a value of the wrong type in the SQLite file ({reason})"
                    raise CopyFailed(
                        f"Copy failed at table {table}: {reason}. Tables copied before it are kept; once the cause "
                        "is fixed, running it again is safe."
                    ) from error
            return same
        finally:
            await postgres.close()
    finally:
        await sqlite.close()


async def _copy_table(table: str, sqlite: SqliteStore, postgres: PostgresStore) -> bool:
    columns, rows = await sqlite.table_rows(table)
    counts: ImportCounts = await postgres.import_rows(table, columns, rows)
    copied = await postgres.table_rows(table, columns)
    differs = difference(columns, TABLE_KEYS[table], rows, copied)
    verdict = f"DIFFERENT: {differs}" if differs else "same"
    print(
        f"{table}: SQLite {len(rows)} rows, PostgreSQL {len(copied)} rows"
        f" ({counts.added} added, {counts.updated} updated now) - {verdict}"
    )
    return not differs


def _copy_errors() -> tuple[type[BaseException], ...]:
    """What stops a copy half way: a database that fails or goes away, or a value PostgreSQL cannot take (SQLite
    lets any column hold a value of any type, which the driver refuses with a TypeError)."""
    # Imported once PostgreSQL was opened, so its driver is there.
    from .storage.postgres import OPEN_ERRORS

    return (*OPEN_ERRORS, StorageUnavailable, sqlite3.Error, TypeError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.migrate_to_postgres",
        description="Copy the bot's SQLite database into PostgreSQL (again and again: rows changed in SQLite since "
        "are brought up to date), then compare every row of each table on both sides.",
    )
    parser.add_argument("--sqlite", metavar="PATH", help="the SQLite file (default: DATABASE_PATH)")
    parser.add_argument("--database-url", metavar="URL", help="the PostgreSQL database (default: DATABASE_URL)")
    args = parser.parse_args(argv)
    load_dotenv(find_dotenv(usecwd=True))
    env = dict(os.environ)
    if args.sqlite:
        env["DATABASE_PATH"] = args.sqlite
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    try:
        source = database_path(env)
        url = database_url(env)
        if url is None:
            raise ConfigError("DATABASE_URL is not set: set it (or pass --database-url) to say where to copy to")
        if not source.is_file():
            raise ConfigError(f"DATABASE_PATH {str(source)!r} is not a file: there is nothing to copy")
        same = asyncio.run(copy_all(source, url))
    except (ConfigError, DatabaseUnusable) as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except CopyFailed as error:
        print(error, file=sys.stderr)
        return EXIT_NOT_COPIED
    if not same:
        print(
            "PostgreSQL differs from SQLite (see above): rows it held of its own, and rows changed there after an "
            "earlier copy, were kept as they are.",
            file=sys.stderr,
        )
        return EXIT_DIFFERENT
    return 0


if __name__ == "__main__":
    sys.exit(main())
