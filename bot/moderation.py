"""Server rules kept by moderators, and what members and moderators see of usage."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from .catalogue import label_of, spec_of
from .errors import UserFacingError
from .models import LEGACY_MODEL
from .quota import DAY_SECONDS, GuildRules, Member, ServerLimits, Usage, day_start, is_exempt, normalise_phrase
from .storage import GenerationStore, RuleEntry, SpendRow, UsageReport

MAX_LIST_ENTRIES = 50
MAX_PHRASE_LENGTH = 100
MAX_USAGE_DAYS = 365
# How long a server's rules are kept between reads (a change made through this bot applies at once).
RULES_CACHE_SECONDS = 5.0
# The documented range of each limit a moderator sets (0 = no limit).
LIMIT_MAXIMUMS = {
    "user_daily": 1_000_000,
    "server_daily": 1_000_000,
    "user_concurrent": 1_000_000,
    "cooldown_seconds": 1_000_000,
    "server_concurrent": 1_000_000,
    "user_queued": 1_000_000,
}


@dataclass(frozen=True)
class Standing:
    """A member's position against the limits, for /quota."""

    rules: GuildRules
    usage: Usage
    exempt: bool
    cooldown_left: float
    resets_at: float
    global_daily: int


@dataclass(frozen=True)
class MemberSpend:
    user_id: int
    videos: int
    tokens: int


@dataclass(frozen=True)
class UsageSummary:
    """A server's usage over a period, with spend as the API reported it and the documented price where it
    reported nothing."""

    days: int
    since: float
    report: UsageReport
    # Jobs that waited in the queue, and how long those that started waited (seconds).
    waited: int = 0
    waits: tuple[float, ...] = ()

    @property
    def median_wait(self) -> float | None:
        return statistics.median(self.waits) if self.waits else None

    @property
    def tokens_spent(self) -> int:
        return sum(_tokens(row) for row in self.report.spend)

    @property
    def estimated_videos(self) -> int:
        """Videos whose cost the API did not report (counted at their model's documented price)."""
        return sum(row.videos - row.reported_videos for row in self.report.spend)

    @property
    def usd_spent(self) -> float | None:
        """Dollars the API reported, where it reported any."""
        if not any(row.usd_videos for row in self.report.spend):
            return None
        return sum(row.usd for row in self.report.spend)

    def members(self) -> list[MemberSpend]:
        videos: dict[int, int] = {}
        tokens: dict[int, int] = {}
        for row in self.report.spend:
            videos[row.requester_id] = videos.get(row.requester_id, 0) + row.videos
            tokens[row.requester_id] = tokens.get(row.requester_id, 0) + _tokens(row)
        return [MemberSpend(user, videos[user], tokens[user]) for user in videos]

    def top_by_videos(self, top: int = 5) -> list[MemberSpend]:
        return sorted(self.members(), key=lambda m: (-m.videos, -m.tokens, m.user_id))[:top]

    def top_by_spend(self, top: int = 5) -> list[MemberSpend]:
        return sorted(self.members(), key=lambda m: (-m.tokens, -m.videos, m.user_id))[:top]


def _tokens(row: SpendRow) -> int:
    return row.reported_tokens + (row.videos - row.reported_videos) * spec_of(row.model).documented_price


class ModerationService:
    """Reads and changes a server's rules; knows the operator's defaults and global cap."""

    def __init__(
        self,
        store: GenerationStore,
        defaults: ServerLimits,
        *,
        global_daily: int,
        models: Sequence[str] = (LEGACY_MODEL,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._defaults = defaults
        self.global_daily = global_daily
        # The models the operator enabled: a server may narrow them, never widen them.
        self.models = tuple(models)
        self._clock = clock
        self._rules: dict[int, tuple[float, GuildRules]] = {}

    async def rules(self, guild_id: int) -> GuildRules:
        """A server's rules; read at most every few seconds, since every command asks for them."""
        now = time.monotonic()
        cached = self._rules.get(guild_id)
        if cached is not None and now < cached[0]:
            return cached[1]
        rules = await self._store.guild_rules(guild_id, self._defaults)
        self._rules[guild_id] = (now + RULES_CACHE_SECONDS, rules)
        return rules

    def _changed(self, guild_id: int) -> None:
        """A moderator changed this server's rules here: the next command reads them fresh."""
        self._rules.pop(guild_id, None)

    async def set_limits(self, guild_id: int, values: Mapping[str, object]) -> GuildRules:
        """Set some of a server's limits; each must be a whole number in its range, whatever the client sent."""
        checked: dict[str, int] = {}
        for name, value in values.items():
            maximum = LIMIT_MAXIMUMS.get(name)
            if maximum is None:
                raise UserFacingError(f"There is no limit called `{name}`.")
            # bool is an int to Python, and a float or a string may arrive from a client that skips Discord's checks.
            if type(value) is not int or not 0 <= value <= maximum:
                raise UserFacingError(
                    f"`{name}` must be a whole number from 0 to {maximum:,} (0 means no limit); got `{value!s:.40}`."
                )
            checked[name] = value
        await self._store.set_guild_limits(guild_id, checked, self._clock())
        self._changed(guild_id)
        return await self.rules(guild_id)

    async def set_sharing(self, guild_id: int, allowed: object) -> GuildRules:
        if not isinstance(allowed, bool):
            raise UserFacingError("`allowed` must be true or false.")
        await self._store.set_members_share_videos(guild_id, allowed, self._clock())
        self._changed(guild_id)
        return await self.rules(guild_id)

    async def set_private_mode(self, guild_id: int, allowed: object) -> GuildRules:
        if not isinstance(allowed, bool):
            raise UserFacingError("`allowed` must be true or false.")
        await self._store.set_private_mode(guild_id, allowed, self._clock())
        self._changed(guild_id)
        return await self.rules(guild_id)

    async def set_keep_videos(self, guild_id: int, keep: object) -> GuildRules:
        """Whether announcements carry the video file itself (when it fits the upload limit), not only its link."""
        if not isinstance(keep, bool):
            raise UserFacingError("`upload` must be true or false.")
        await self._store.set_keep_videos(guild_id, keep, self._clock())
        self._changed(guild_id)
        return await self.rules(guild_id)

    async def add(self, guild_id: int, kind: RuleEntry, value: str) -> bool:
        """Add to a server's list; False when it was already there. Lists are capped to stay readable."""
        value = self._entry_value(kind, value)
        rules = await self.rules(guild_id)
        if len(_entries(rules, kind)) >= MAX_LIST_ENTRIES:
            raise UserFacingError(f"This list is full ({MAX_LIST_ENTRIES} entries). Remove some first.")
        added = await self._store.add_rule_entry(guild_id, kind, value)
        self._changed(guild_id)
        return added

    async def remove(self, guild_id: int, kind: RuleEntry, value: str) -> bool:
        # A model the bot no longer offers can still be taken off the list.
        value = value if kind is RuleEntry.MODEL else self._entry_value(kind, value)
        removed = await self._store.remove_rule_entry(guild_id, kind, value)
        self._changed(guild_id)
        return removed

    async def clear(self, guild_id: int, kind: RuleEntry) -> int:
        cleared = await self._store.clear_rule_entries(guild_id, kind)
        self._changed(guild_id)
        return cleared

    async def standing(self, guild_id: int, member: Member) -> Standing:
        now = self._clock()
        rules = await self.rules(guild_id)
        usage = await self._store.usage_now(guild_id, member.user_id, day_start(now))
        cooldown_left = 0.0
        if rules.limits.cooldown_seconds and usage.user_last_submitted_at is not None:
            cooldown_left = max(0.0, usage.user_last_submitted_at + rules.limits.cooldown_seconds - now)
        return Standing(
            rules=rules,
            usage=usage,
            exempt=is_exempt(rules, member),
            cooldown_left=cooldown_left,
            resets_at=day_start(now) + DAY_SECONDS,
            global_daily=self.global_daily,
        )

    async def usage(self, guild_id: int, days: int) -> UsageSummary:
        """A server's usage over the last `days` days (today counts as one)."""
        if type(days) is not int or not 1 <= days <= MAX_USAGE_DAYS:
            raise UserFacingError(f"`days` must be a whole number from 1 to {MAX_USAGE_DAYS}; got `{days!s:.40}`.")
        since = day_start(self._clock()) - (days - 1) * DAY_SECONDS
        waited, waits = await self._store.queue_waits(guild_id, since)
        return UsageSummary(
            days=days,
            since=since,
            report=await self._store.usage_report(guild_id, since),
            waited=waited,
            waits=tuple(waits),
        )

    def _entry_value(self, kind: RuleEntry, value: str) -> str:
        if kind is RuleEntry.MODEL:
            if value not in self.models:
                offered = ", ".join(label_of(model) for model in self.models)
                raise UserFacingError(f"This bot doesn't offer {label_of(value)}; it offers {offered}.")
            return value
        if kind is not RuleEntry.BLOCKED_PHRASE:
            return value
        if len(value) > MAX_PHRASE_LENGTH:
            raise UserFacingError(f"A blocked phrase can have at most {MAX_PHRASE_LENGTH} characters.")
        phrase = normalise_phrase(value)
        if not phrase:
            raise UserFacingError("That phrase has no letters or digits to match.")
        return phrase


def _entries(rules: GuildRules, kind: RuleEntry) -> Collection[object]:
    lists: dict[RuleEntry, Collection[object]] = {
        RuleEntry.CHANNEL: rules.allowed_channels,
        RuleEntry.ROLE: rules.allowed_roles,
        RuleEntry.EXEMPT_ROLE: rules.exempt_roles,
        RuleEntry.BLOCKED_PHRASE: rules.blocked_phrases,
        RuleEntry.MODEL: rules.allowed_models,
    }
    return lists[kind]
