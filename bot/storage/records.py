"""What the storage hands to the services: plain records, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from ..quota import ServerLimits

# Every table of the bot's data, in both backends (what python -m bot.migrate_to_postgres copies).
TABLES = ("generations", "guild_limits", "guild_rule_entries", "bot_meta")
# Each table's key: what names a row on both sides when one is copied and compared.
TABLE_KEYS = {
    "generations": ("id",),
    "guild_limits": ("guild_id",),
    "guild_rule_entries": ("guild_id", "kind", "value"),
    "bot_meta": ("key",),
}
LIMIT_NAMES = ("user_daily", "server_daily", "user_concurrent", "cooldown_seconds", "server_concurrent", "user_queued")


class RuleEntry(StrEnum):
    """The kinds of list a server's moderators keep."""

    CHANNEL = "channel"
    ROLE = "role"
    EXEMPT_ROLE = "exempt_role"
    BLOCKED_PHRASE = "blocked_phrase"
    MODEL = "model"


@dataclass(frozen=True)
class HistorySlice:
    """Which of a server's generations one page of history holds: a keyset on the row id (newest first), never an
    offset. `before_id`: the page older than that row; `after_id`: the page just newer than it; neither: the newest.
    Only one requester's when `requester_id` is set, only from `channel_ids` when given; with `private_seen_by`, no
    private generation but that member's own."""

    guild_id: int
    limit: int
    requester_id: int | None = None
    channel_ids: frozenset[int] | None = None
    before_id: int | None = None
    after_id: int | None = None
    private_seen_by: int | None = None


@dataclass(frozen=True)
class UsageReport:
    """A server's generations over a period. `charged` counts the videos the API accepted (or may have) and did not
    report failed: generations, extensions, edits and reframes; `failures` and `refused` cost nothing."""

    generations: int
    extensions: int
    failures: int
    refused: int
    charged: int
    # What was spent, per member and model: the API's own figures where it reported them.
    spend: list[SpendRow] = field(default_factory=list)


@dataclass(frozen=True)
class SpendRow:
    """One member's paid videos of one model in a period, and the costs the API reported for some of them."""

    requester_id: int
    model: str
    videos: int
    reported_videos: int
    reported_tokens: int
    usd_videos: int
    usd: float


@dataclass(frozen=True)
class StateCount:
    """How many generations are in one state (and one API state), how many of them were paid for, and how many
    finished ones still wait to be announced."""

    state: str
    api_state: str | None
    count: int
    charged: int
    unannounced: int
    # Of the charged ones: how many the API reported a cost for, and the tokens it reported.
    reported: int = 0
    reported_tokens: int = 0


@dataclass(frozen=True)
class UsageCounts:
    """Which totals to count besides a member's own: each day total reads every row of the day, each count of jobs
    in flight every running one."""

    server: bool = True
    everyone: bool = True
    server_running: bool = True
    everyone_running: bool = True

    @classmethod
    def for_limits(cls, limits: ServerLimits, global_daily: int, max_running: int = 0) -> UsageCounts:
        """Only the totals these limits and the bot's running cap check."""
        return cls(
            server=bool(limits.server_daily),
            everyone=bool(global_daily),
            server_running=bool(limits.server_concurrent),
            everyone_running=bool(max_running),
        )


class TrackedGeneration(NamedTuple):
    """What the tracker needs of a running generation: its ids, its last known API state, its deadline's start, and
    where its status message is (to show its progress).

    A tuple rather than a dataclass: every cycle makes one per running generation."""

    id: int
    api_id: str
    api_state: str | None
    started_at: float
    channel_id: int = 0
    status_message_id: int | None = None


class StorageUnavailable(Exception):
    """The database cannot be written now (disk full, read-only, locked, I/O error); the cause is logged."""


class StorageOutcomeUnknown(StorageUnavailable):
    """The connection to the database broke while a write was being committed: it may have been kept or not. Whoever
    asked must not be told that nothing was recorded."""


class ImportCounts(NamedTuple):
    """What copying a table's rows in did: rows added, and rows that were there and brought up to date."""

    added: int
    updated: int


class DatabaseUnusable(Exception):
    """The database the settings name cannot be opened; the message names the setting and why (never a password)."""
