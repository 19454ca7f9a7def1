"""The bot's storage: the interface the services use, its records, and the backends behind it."""

from __future__ import annotations

import sqlite3

from ..config import DatabaseUrl, Settings
from .interface import GenerationStore
from .records import (
    LIMIT_NAMES,
    DatabaseUnusable,
    RuleEntry,
    SpendRow,
    StateCount,
    StorageUnavailable,
    TrackedGeneration,
    UsageCounts,
    UsageReport,
)
from .sqlite import MIGRATIONS, SqliteStore

__all__ = [
    "LIMIT_NAMES",
    "MIGRATIONS",
    "DatabaseUnusable",
    "GenerationStore",
    "RuleEntry",
    "SpendRow",
    "SqliteStore",
    "StateCount",
    "StorageUnavailable",
    "TrackedGeneration",
    "UsageCounts",
    "UsageReport",
    "open_store",
]


async def open_store(settings: Settings) -> GenerationStore:
    """Open (and migrate) the database the settings name: PostgreSQL at DATABASE_URL when it is set, else the SQLite
    file at DATABASE_PATH. Raises DatabaseUnusable when it cannot be opened."""
    if settings.database_url is not None:
        return await _open_postgres(settings.database_url)
    try:
        return await SqliteStore.open(settings.database_path)
    except (OSError, sqlite3.Error, RuntimeError) as error:
        raise DatabaseUnusable(f"DATABASE_PATH {str(settings.database_path)!r} can't be used: {error}") from error


async def _open_postgres(url: DatabaseUrl) -> GenerationStore:
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
        reason = str(error) or type(error).__name__
        if url.password:
            reason = reason.replace(url.password, "***")
        raise DatabaseUnusable(f"DATABASE_URL {url.shown()!r} can't be used: {reason}") from error
