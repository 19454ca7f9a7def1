"""The storage interface the services depend on; each backend (SQLite, PostgreSQL) implements all of it.

Every method behaves the same whatever the backend: the same records, in the same order."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from ..models import LEGACY_MODEL, ApiGeneration, Delivery, Generation, GenerationOptions, Kind, State
from ..quota import GuildRules, ServerLimits, Usage
from .records import HistorySlice, RuleEntry, StateCount, TrackedGeneration, UsageCounts, UsageReport


class GenerationStore(Protocol):
    """The bot's database: generations, server rules and the bot's own notes."""

    async def close(self) -> None: ...

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
        ...

    async def usage_now(
        self, guild_id: int, requester_id: int, counted_since: float, counts: UsageCounts | None = None
    ) -> Usage:
        """A member's standing against the limits (for /quota, and the check before a command answers)."""
        ...

    async def usage_report(self, guild_id: int, since: float) -> UsageReport:
        """A server's generations since `since`, all counted one way: a video is a generation or extension the
        API accepted and did not report failed (what is paid for); failures and refusals are counted apart."""
        ...

    async def state_counts(self) -> list[StateCount]:
        """Every generation counted by state and by the API's own state, for the metrics."""
        ...

    async def mark_submitted(self, row_id: int, api: ApiGeneration, now: float) -> Generation:
        """The API accepted the create: keep its id, from now on the tracker follows it."""
        ...

    async def mark_rejected(self, row_id: int, reason: str, now: float) -> Generation:
        """The API refused the create: nothing runs, and the member was told in the command's answer."""
        ...

    async def mark_rejected_untold(self, row_id: int, reason: str, now: float) -> Generation:
        """The API refused a queued job's create: nothing runs, and the tracker tells the requester."""
        ...

    async def mark_unconfirmed(self, row_id: int, reason: str, now: float, *, requester_told: bool) -> Generation:
        """The create may have been accepted without an answer; it is never resent."""
        ...

    async def interrupted_submissions(self) -> list[Generation]:
        """Rows a crash left in 'submitting': their create may have reached the API without its answer."""
        ...

    async def mark_checking(
        self, row_id: int, reason: str, now: float, *, next_check_at: float, check_until: float, requester_told: bool
    ) -> Generation:
        """The create's outcome is unknown: look for it in the account's list until `check_until`."""
        ...

    async def checking(self) -> list[Generation]:
        """Rows whose create is being looked for, in the order their requests were sent."""
        ...

    async def submitting_prompts(self) -> set[str]:
        """Prompts of creates still waiting for their answer: their generations may be listed before they return."""
        ...

    async def tracked_api_ids(self, api_ids: Collection[str]) -> set[str]:
        """Which of these API ids a row already follows."""
        ...

    async def adopt(
        self, row_id: int, api: ApiGeneration, now: float, *, from_states: Collection[State] = (State.CHECKING,)
    ) -> Generation:
        """A row whose create had no answer found its generation: from now on the tracker follows and announces it."""
        ...

    async def note_check(self, row_id: int, *, next_check_at: float, list_read_at: float | None, now: float) -> None:
        """A look in the list did not find the row's generation (yet): when to look again."""
        ...

    async def finish_check(self, row_id: int, state: State, reason: str, now: float) -> Generation:
        """The look-out ended without finding the generation: the requester is told how (by the announcement)."""
        ...

    async def mark_notice_sent(self, row_id: int, now: float) -> None: ...

    async def set_status_message(self, row_id: int, message_id: int) -> None: ...

    async def apply_api_update(
        self, row_id: int, api: ApiGeneration, now: float, *, expected: State = State.RUNNING
    ) -> Generation:
        """Store what the API says of a generation in the `expected` state; a final answer finishes it (once)."""
        ...

    async def record_lookups(
        self, updates: Sequence[tuple[int, ApiGeneration]], timed_out: Sequence[int], timeout_reason: str, now: float
    ) -> list[int]:
        """Store one batch of look-ups in one short transaction: the rows whose API state changed, and the running
        rows past their deadline. Returns the rows this made final, oldest first: they are to be announced."""
        ...

    async def mark_timed_out(self, row_id: int, reason: str, now: float) -> Generation: ...

    async def claim_announcement(self, row_id: int, now: float) -> None:
        """Note that an announcement is about to be sent, so a restart knows to check before sending again."""
        ...

    async def mark_announced(self, row_id: int, delivery: Delivery, now: float) -> None: ...

    async def mark_status_shown(self, row_ids: Sequence[int], now: float) -> None:
        """These rows' endings reached their status messages (or never can): no sweep looks at them again."""
        ...

    async def status_generation(self, row_id: int) -> Generation | None:
        """A row as its status message shows it (read beside the commands, never in their way)."""
        ...

    async def unshown_endings(self, since: float) -> list[Generation]:
        """Jobs that ended since `since` whose status message does not show it yet, oldest first."""
        ...

    async def get(self, row_id: int) -> Generation | None: ...

    async def last_reported_cost(
        self, model: str, resolution: str | None, duration: int | None, hdr: bool = False
    ) -> int | None:
        """What the API last reported a video of this model and these settings cost, if it ever did."""
        ...

    async def latest_api_id(self, model: str, since: float) -> str | None:
        """The id of the newest generation of `model` made since `since`, if any."""
        ...

    async def get_by_api_id(self, api_id: str) -> Generation | None: ...

    async def find_by_short_id(self, guild_id: int, short_id: str) -> list[Generation]:
        """A server's generations whose API id starts with the 8 characters `short_id` (read through an index):
        at most two, enough to tell one from several."""
        ...

    async def running(self) -> list[Generation]:
        """Generations the API is working on, oldest first."""
        ...

    async def tracked(self) -> list[TrackedGeneration]:
        """The running generations, oldest first, with only what a look-up needs (read through the partial index)."""
        ...

    async def unannounced_ids(self) -> list[int]:
        """Finished generations whose requester has not been told yet, oldest first (ids only)."""
        ...

    async def unannounced_generation(self, row_id: int) -> Generation | None:
        """The generation, if it is finished and its requester has not been told yet."""
        ...

    async def unannounced(self) -> list[Generation]:
        """Finished generations whose requester has not been told yet, oldest first."""
        ...

    async def recent_for_member(self, guild_id: int, requester_id: int, limit: int = 10) -> list[Generation]:
        """A member's latest generations in one server, newest first."""
        ...

    async def search_references(
        self,
        guild_id: int,
        text: str,
        limit: int = 25,
        *,
        requester_id: int | None = None,
        finished_only: bool = False,
    ) -> list[Generation]:
        """Generations of a server whose id or prompt contains `text`, newest first (for autocomplete); only one
        requester's when `requester_id` is set, only completed videos when `finished_only`."""
        ...

    async def history_page(self, page: HistorySlice) -> list[Generation]:
        """Up to `page.limit` generations of the slice, newest first, read through an index in id order."""
        ...

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
        `counts` says which day totals `decide` needs beyond the member's own (all by default); `upload_limit` is
        the largest file Discord accepts where the request was made; `private`: its result goes to the requester by
        DM only."""
        ...

    async def queue_usage_now(
        self, guild_id: int, requester_id: int, counted_since: float, now: float, counts: UsageCounts | None = None
    ) -> Usage:
        """A member's standing against the limits and the running caps, before anything is reserved."""
        ...

    async def queued(self) -> list[Generation]:
        """Every job waiting for a slot, oldest first."""
        ...

    async def running_counts(self) -> dict[tuple[int, int], int]:
        """Jobs at the API (or being sent, or looked for) per server and member."""
        ...

    async def last_starts(self, since: float) -> dict[tuple[int, int], float]:
        """When each server's members last had a job sent to the API (since `since`): the queue's fairness."""
        ...

    async def claim_queued(
        self, row_id: int, now: float, *, max_running: int, server_cap: int, user_cap: int
    ) -> Generation | None:
        """Move a waiting job to 'submitting' (before its request leaves) if the running caps still allow it."""
        ...

    async def requeue(self, row_id: int, now: float, *, not_before: float) -> Generation:
        """The API refused the create with 429 (nothing made, nothing charged): the job waits again at its place."""
        ...

    async def cancel_queued(self, row_id: int, reason: str, now: float) -> bool:
        """Remove a waiting job (nothing was sent); False when it is no longer waiting. The canceller is answered
        at once, so nothing is announced."""
        ...

    async def expire_queued(self, waited_since: float, reason: str, now: float) -> list[Generation]:
        """Drop jobs waiting since before `waited_since`; the tracker tells their requesters."""
        ...

    async def queue_waits(self, guild_id: int, since: float) -> tuple[int, list[float]]:
        """How many of a server's jobs since `since` waited in the queue, and how long those that started waited."""
        ...

    async def guild_rules(self, guild_id: int, defaults: ServerLimits) -> GuildRules:
        """A server's rules, with the operator's defaults where the server set nothing."""
        ...

    async def set_guild_limits(self, guild_id: int, values: dict[str, int], now: float) -> None:
        """Set some of a server's numeric limits (0 = no limit); the others keep their value."""
        ...

    async def set_members_share_videos(self, guild_id: int, allowed: bool, now: float) -> None: ...

    async def set_private_mode(self, guild_id: int, allowed: bool, now: float) -> None:
        """Whether members of this server may ask for videos privately (delivered by DM)."""
        ...

    async def set_keep_videos(self, guild_id: int, keep: bool, now: float) -> None:
        """Whether the server's announcements carry the video file itself when it fits."""
        ...

    async def add_rule_entry(self, guild_id: int, kind: RuleEntry, value: str) -> bool:
        """Add to one of a server's lists; False if it was there already."""
        ...

    async def remove_rule_entry(self, guild_id: int, kind: RuleEntry, value: str) -> bool:
        """Remove from one of a server's lists; False if it was not there."""
        ...

    async def clear_rule_entries(self, guild_id: int, kind: RuleEntry) -> int:
        """Empty one of a server's lists; returns how many entries it had."""
        ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    # --- sharing the work between processes ------------------------------------------------------------------
    # Several processes may serve one database (PostgreSQL): each row's periodic work is taken by lease, so exactly
    # one process does it at a time, and a process that dies has its leases run out and its work taken over. On
    # SQLite, the bot is one process, which holds every lease: these cost nothing there.

    # This process, as the rows it holds name it.
    process_id: str

    async def beat(self, now: float) -> None:
        """Note that this process is alive: the others take over its creates in flight only once it stops beating."""
        ...

    async def lease_lookups(self, now: float, lease_seconds: float) -> list[TrackedGeneration]:
        """The running generations this process looks up now, oldest first: each is leased to it for `lease_seconds`,
        and a row leased to a process (this one included) is taken again only once its lease ran out. So each row
        is looked up once per lease, by one process."""
        ...

    async def lease_announcement(self, row_id: int, now: float, lease_seconds: float) -> Generation | None:
        """The finished, unannounced generation, leased to this process for announcing it (a lease it already holds
        is renewed); None when it is announced, or another process holds it."""
        ...

    async def hold_lease(self, name: str, now: float, lease_seconds: float) -> bool:
        """Whether this process holds the named lease of a job done by one process at a time (reconciliation),
        taking it when it is free or ran out, and renewing it when it is this process's already."""
        ...

    async def take_over_submissions(self, now: float, gone_after: float) -> list[Generation]:
        """Rows left in 'submitting' by processes that are gone (no heartbeat for `gone_after` seconds), now this
        process's: their creates may have reached the API without an answer. Never the rows of a live process."""
        ...

    async def claim_notice(self, key: str, now: float, interval: float) -> bool:
        """True for the one process that gives the notice `key` now (and notes when): none gave it within
        `interval` seconds. For notices given once an hour whatever the number of processes."""
        ...
