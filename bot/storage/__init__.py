"""The bot's storage: the interface the services use, its records, and the backends behind it."""

from __future__ import annotations

from ..config import Settings
from .interface import GenerationStore
from .records import (
    LIMIT_NAMES,
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
    """Open (and migrate) the database the settings name."""
    return await SqliteStore.open(settings.database_path)
