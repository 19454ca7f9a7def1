"""The bot's storage: the interface the services use, its records, and the backends behind it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DatabaseUrl, Settings
from .interface import GenerationStore
from .records import (
    LIMIT_NAMES,
    TABLE_KEYS,
    TABLES,
    DatabaseUnusable,
    HistorySlice,
    ImportCounts,
    RuleEntry,
    SpendRow,
    StateCount,
    StorageOutcomeUnknown,
    StorageUnavailable,
    TrackedGeneration,
    UsageCounts,
    UsageReport,
)
from .sqlite import MIGRATIONS, SqliteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = [
    "LIMIT_NAMES",
    "MIGRATIONS",
    "TABLES",
    "TABLE_KEYS",
    "DatabaseUnusable",
    "GenerationStore",
    "HistorySlice",
    "ImportCounts",
    "RuleEntry",
    "SpendRow",
    "SqliteStore",
    "StateCount",
    "StorageOutcomeUnknown",
    "StorageUnavailable",
    "TrackedGeneration",
    "UsageCounts",
    "UsageReport",
    "open_postgres",
    "open_sqlite",
    "open_store",
]


async def open_store(settings: Settings) -> GenerationStore:
    """Open (and migrate) the database the settings name: PostgreSQL at DATABASE_URL when it is set, else the SQLite
    file at DATABASE_PATH. Raises DatabaseUnusable when it cannot be opened."""
    if settings.database_url is not None:
        return await open_postgres(settings.database_url)
    return await open_sqlite(settings.database_path)


async def open_sqlite(path: Path) -> SqliteStore:
    try:
        return await SqliteStore.open(path)
    except (OSError, sqlite3.Error, RuntimeError) as error:
        raise DatabaseUnusable(f"DATABASE_PATH {str(path)!r} can't be used: {error}") from error


async def open_postgres(url: DatabaseUrl) -> PostgresStore:
    try:
        # Imported here: asyncpg is an optional extra, needed only by those who set DATABASE_URL.
        from .postgres import OPEN_ERRORS, PostgresStore
    except ImportError as error:
        raise DatabaseUnusable(
            f"DATABASE_URL is set, but the PostgreSQL driver is not installed ({error}): "
            "install the bot with its extra, pip install '.[postgres]'"
        ) from error
    try:
        return await PostgresStore.open(url.reveal())
    except OPEN_ERRORS as error:
        reason = url.hidden_in(str(error) or type(error).__name__)
        raise DatabaseUnusable(f"DATABASE_URL {url.shown()!r} can't be used: {reason}") from error
