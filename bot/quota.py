"""Who may generate, where and how much: pure rules over plain values, no storage and no Discord."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from .errors import UserFacingError

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class ServerLimits:
    """A server's numeric limits; 0 means no limit."""

    user_daily: int = 0
    server_daily: int = 0
    user_concurrent: int = 0
    cooldown_seconds: int = 0
    # How many may run at the API at once for the whole server (0 = no cap), and how many jobs one member may have
    # waiting in the queue (0 = none: a command past a running cap is refused).
    server_concurrent: int = 0
    user_queued: int = 3

    def merged(self, overrides: dict[str, int | None]) -> ServerLimits:
        """These limits with every non-None override applied."""
        return replace(self, **{name: value for name, value in overrides.items() if value is not None})


@dataclass(frozen=True)
class GuildRules:
    """Everything a server's moderators decided, with the operator's defaults filled in."""

    limits: ServerLimits
    # Which limits the server set itself (the rest come from the operator's defaults).
    overridden: frozenset[str] = frozenset()
    allowed_channels: frozenset[int] = frozenset()
    allowed_roles: frozenset[int] = frozenset()
    exempt_roles: frozenset[int] = frozenset()
    blocked_phrases: tuple[str, ...] = ()
    members_share_videos: bool = True
    # Whether members may ask for videos privately (every answer ephemeral, the video by DM).
    private_mode: bool = True
    # The enabled models this server may use; empty: all of them.
    allowed_models: frozenset[str] = frozenset()
    # Whether announcements carry the video file itself (when it fits the upload limit), not only its link.
    keep_videos: bool = False


@dataclass(frozen=True)
class Usage:
    """What counts against the limits at one moment, read inside the reservation's transaction."""

    user_today: int = 0
    server_today: int = 0
    everyone_today: int = 0
    user_running: int = 0
    user_last_submitted_at: float | None = None
    # For the queue: running at the API for the server and for everyone, the member's waiting jobs, and those of
    # them that could be sent now (the member's new job does not overtake them).
    server_running: int = 0
    everyone_running: int = 0
    user_queued: int = 0
    # Jobs waiting that could start now: the member's own, and the server's.
    waiting_ready: int = 0
    server_waiting_ready: int = 0


@dataclass(frozen=True)
class Member:
    """The parts of a member the rules look at."""

    user_id: int
    role_ids: frozenset[int] = field(default_factory=frozenset)


class LimitReached(UserFacingError):
    """A limit refused a submission; the message names the limit, the numbers and when it frees up."""

    def __init__(self, limit: str, message: str, frees_at: float | None) -> None:
        super().__init__(message)
        self.limit = limit
        self.frees_at = frees_at


def day_start(now: float) -> float:
    """Midnight UTC of the day `now` falls in: daily limits reset then."""
    return now - now % DAY_SECONDS


def next_reset(now: float) -> float:
    return day_start(now) + DAY_SECONDS


def discord_time(epoch: float) -> str:
    """A timestamp each member's Discord client shows in their own time zone."""
    return f"<t:{int(epoch)}:t> (<t:{int(epoch)}:R>)"


def is_exempt(rules: GuildRules, member: Member) -> bool:
    return bool(rules.exempt_roles & member.role_ids)


def limits_apply(rules: GuildRules, member: Member, *, global_daily: int) -> bool:
    """Whether any limit could refuse this member: where none can, nothing needs counting."""
    limits = rules.limits
    server_limits = bool(
        limits.user_daily
        or limits.server_daily
        or limits.user_concurrent
        or limits.cooldown_seconds
        or limits.server_concurrent
    )
    return bool(global_daily) or (server_limits and not is_exempt(rules, member))


def check_limits(
    rules: GuildRules, member: Member, usage: Usage, now: float, *, global_daily: int
) -> LimitReached | None:
    """The first limit this submission would break, or None. Exempt roles skip the server's limits, not the
    operator's global cap, which protects the key owner's budget."""
    reset = next_reset(now)
    if global_daily and usage.everyone_today >= global_daily:
        return LimitReached(
            "global_daily",
            f"The bot has reached its daily limit across all servers: {usage.everyone_today} of {global_daily} "
            f"videos today. It resets at midnight UTC, {discord_time(reset)}.",
            reset,
        )
    if is_exempt(rules, member):
        return None
    limits = rules.limits
    if limits.server_daily and usage.server_today >= limits.server_daily:
        return LimitReached(
            "server_daily",
            f"This server has reached its daily limit: {usage.server_today} of {limits.server_daily} videos "
            f"today. It resets at midnight UTC, {discord_time(reset)}.",
            reset,
        )
    if limits.user_daily and usage.user_today >= limits.user_daily:
        return LimitReached(
            "user_daily",
            f"You have reached your daily limit: {usage.user_today} of {limits.user_daily} videos today in this "
            f"server. It resets at midnight UTC, {discord_time(reset)}.",
            reset,
        )
    if limits.user_concurrent and usage.user_running >= limits.user_concurrent:
        return LimitReached(
            "user_concurrent",
            f"You already have {usage.user_running} of {limits.user_concurrent} videos running at once. "
            "You can start another as soon as one of them is finished.",
            None,
        )
    if limits.cooldown_seconds and usage.user_last_submitted_at is not None:
        ready_at = usage.user_last_submitted_at + limits.cooldown_seconds
        if now < ready_at:
            wait = int(ready_at - now + 0.999)
            return LimitReached(
                "cooldown_seconds",
                f"Please wait {wait} more seconds: this server asks for {limits.cooldown_seconds} seconds between "
                f"two videos of one member. You can submit again {discord_time(ready_at)}.",
                ready_at,
            )
    return None


class Admission(StrEnum):
    """What becomes of a submission that passed the limits."""

    START = "start"
    QUEUE = "queue"


def running_cap_reached(rules: GuildRules, member: Member, usage: Usage, *, max_running: int) -> str | None:
    """Which running cap (operator, server, member) a new job would pass now, or None."""
    if max_running and usage.everyone_running >= max_running:
        return "max_running"
    if is_exempt(rules, member):
        return None
    limits = rules.limits
    if limits.server_concurrent and usage.server_running >= limits.server_concurrent:
        return "server_concurrent"
    if limits.user_concurrent and usage.user_running >= limits.user_concurrent:
        return "user_concurrent"
    return None


def admit(
    rules: GuildRules, member: Member, usage: Usage, now: float, *, global_daily: int, max_running: int
) -> Admission | LimitReached:
    """Start now, wait in the queue, or a refusal. A job that would pass a running cap waits (while the member has
    room in the queue); so does one that would overtake the member's own jobs waiting for a slot."""
    unlimited_running = replace(rules, limits=replace(rules.limits, user_concurrent=0))
    refusal = check_limits(unlimited_running, member, usage, now, global_daily=global_daily)
    if refusal is not None:
        return refusal
    cap = running_cap_reached(rules, member, usage, max_running=max_running)
    if cap is None and not _waiting_ahead(rules, usage, max_running=max_running):
        return Admission.START
    queue_room = rules.limits.user_queued
    if is_exempt(rules, member):
        return Admission.QUEUE
    if not queue_room:
        if cap is None:
            return Admission.START  # the server lets nobody wait: nothing to queue behind
        return check_limits(rules, member, usage, now, global_daily=global_daily) or _running_refusal(cap, usage)
    if usage.user_queued >= queue_room:
        return LimitReached(
            "user_queued",
            f"You already have {usage.user_queued} of {queue_room} videos waiting in the queue in this server. "
            "You can queue another as soon as one of them starts; `/queue` shows where they stand.",
            None,
        )
    return Admission.QUEUE


def _waiting_ahead(rules: GuildRules, usage: Usage, *, max_running: int) -> int:
    """Waiting jobs of this server a new one would overtake by starting now: a slot freed a moment ago belongs to
    them, by the fair order, not to whoever asks first. (Other servers' waiting jobs may be held by their own caps;
    a freed slot wakes the queue at once, so they are not overtaken either.)"""
    if max_running or rules.limits.server_concurrent:
        return usage.server_waiting_ready
    return usage.waiting_ready


def _running_refusal(cap: str, usage: Usage) -> LimitReached:
    if cap == "max_running":
        return LimitReached(
            cap,
            f"The bot is making as many videos as it may at once ({usage.everyone_running}). "
            "Please try again when one of them is finished.",
            None,
        )
    return LimitReached(
        cap,
        f"This server already has {usage.server_running} videos running at once, its limit. "
        "Please try again when one of them is finished.",
        None,
    )


def check_access(rules: GuildRules, member: Member, channel_id: int, channel_parent_id: int | None = None) -> None:
    """Raise UserFacingError when this member may not generate, or not in this channel."""
    if rules.allowed_channels and not {channel_id, channel_parent_id} & rules.allowed_channels:
        channels = ", ".join(f"<#{channel}>" for channel in sorted(rules.allowed_channels))
        raise UserFacingError(f"Videos can't be made in this channel. This server allows them in: {channels}.")
    if rules.allowed_roles and not (rules.allowed_roles | rules.exempt_roles) & member.role_ids:
        roles = ", ".join(f"<@&{role}>" for role in sorted(rules.allowed_roles))
        raise UserFacingError(f"Making videos in this server needs one of these roles: {roles}.")


# --- blocked words ---------------------------------------------------------------------------------------

# Letters from other scripts that look like Latin ones: without this, "bаd" with a Cyrillic "а" passes.
_LOOK_ALIKES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
        "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "ո": "n",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
        "υ": "u", "χ": "x", "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe",
    }
)  # fmt: skip
_WORD = re.compile(r"\w+")


def normalise_words(text: str) -> list[str]:
    """The words of `text` with case, width, accents, look-alike letters and invisible characters folded."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = unicodedata.normalize("NFKD", text.translate(_LOOK_ALIKES))
    text = "".join(char for char in text if not unicodedata.combining(char))
    return _WORD.findall(text)


def normalise_phrase(phrase: str) -> str:
    """How a blocked phrase is stored: its normalised words joined by single spaces ('' if none)."""
    return " ".join(normalise_words(phrase))


def contains_blocked_phrase(prompt: str, phrases: Iterable[str]) -> bool:
    """Whether any stored phrase appears in the prompt as whole words."""
    words = normalise_words(prompt)
    joined = f" {' '.join(words)} "
    return any(phrase and f" {phrase} " in joined for phrase in phrases)


def check_prompt_allowed(rules: GuildRules, prompt: str) -> None:
    """Refuse a prompt with a blocked phrase, without repeating the phrase back."""
    if contains_blocked_phrase(prompt, rules.blocked_phrases):
        raise UserFacingError(
            "Your prompt contains a word or phrase this server's moderators don't allow. Please rephrase it."
        )
