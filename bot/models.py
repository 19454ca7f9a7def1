"""Plain domain types shared by the API client, the storage and the services."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "1:1", "9:16", "4:3", "3:4", "21:9", "9:21")
DEFAULT_ASPECT_RATIO = "16:9"
MIN_PROMPT_LENGTH = 3
# The AI/ML API documents 2048 characters for this endpoint (upstream Luma allows 5000): refusing here costs
# nothing and gives a clearer answer than the API's validation error.
MAX_PROMPT_LENGTH = 2048
TOKENS_PER_VIDEO = 500_000
# The API's own words for a finished generation; any other value means it is still running.
API_COMPLETED = "completed"
API_FAILED = "failed"
KNOWN_API_STATES = frozenset({"pending", "queued", "dreaming", "processing", "generating", API_COMPLETED, API_FAILED})
# The legacy /luma-ai endpoints; every other model is one of the maintained /v2/video/generations endpoint
# (bot/catalogue.py says what each accepts).
LEGACY_MODEL = "legacy"


class Kind(StrEnum):
    GENERATE = "generate"
    EXTEND = "extend"
    # Ray 3.2's transformations of a finished video: restyled by a prompt, or re-composed for another aspect ratio.
    EDIT = "edit"
    REFRAME = "reframe"

    @property
    def api_type(self) -> str | None:
        """The /v2 `type` of a transformation."""
        return {Kind.EDIT: "video_edit", Kind.REFRAME: "video_reframe"}.get(self)


class State(StrEnum):
    """Where a generation stands, from our side of the API."""

    # Accepted (and counted against the daily limits) but waiting for a running slot: nothing was sent yet.
    QUEUED = "queued"
    # The row is written and the create request is being sent: the API may or may not have it.
    SUBMITTING = "submitting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    # The API refused the create request, so nothing was made and nothing was paid.
    REJECTED = "rejected"
    # The create request may have reached the API but no answer came back; it is never resent. The bot is looking
    # for it in the account's list of generations, to adopt it if the API made it.
    CHECKING = "checking"
    # No answer came back and nothing could confirm the request either way (an endpoint without a list).
    UNCONFIRMED = "unconfirmed"
    # No answer came back and the account's list never showed the request: nothing was made or charged.
    NOT_RECEIVED = "not_received"
    # A waiting job removed by its requester or a moderator, or dropped after waiting too long: never sent, not
    # charged, not counted.
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self not in (State.QUEUED, State.SUBMITTING, State.RUNNING, State.CHECKING)

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {
    State.QUEUED: "waiting in the queue",
    State.SUBMITTING: "submitting",
    State.RUNNING: "running",
    State.COMPLETED: "completed",
    State.FAILED: "failed",
    State.TIMED_OUT: "timed out",
    State.REJECTED: "refused by the API",
    State.CHECKING: "checking with the video service",
    State.UNCONFIRMED: "unconfirmed",
    State.NOT_RECEIVED: "not received by the video service",
    State.CANCELLED: "cancelled",
    State.EXPIRED: "dropped from the queue",
}


class Delivery(StrEnum):
    """Where an announcement went."""

    CHANNEL = "channel"
    DIRECT_MESSAGE = "dm"
    # A private result whose requester's DMs are closed, shown to them in their command's ephemeral answer.
    EPHEMERAL = "ephemeral"
    UNDELIVERABLE = "undeliverable"


@dataclass(frozen=True)
class ApiGeneration:
    """A generation as the API describes it, normalised."""

    id: str
    state: str
    prompt: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    last_frame_url: str | None = None
    failure_reason: str | None = None
    estimate_wait_seconds: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # What the API reports the generation cost, where it does (the /v2 endpoint's meta.usage).
    credits_used: int | None = None
    usd_spent: float | None = None
    # When the API made it (epoch seconds), where the answer says.
    created_at: float | None = None

    @property
    def is_completed(self) -> bool:
        return self.state == API_COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.state == API_FAILED

    @property
    def is_final(self) -> bool:
        return self.is_completed or self.is_failed


@dataclass(frozen=True)
class ListedGeneration:
    """One entry of the account's list of generations: enough to recognise a request by its prompt."""

    id: str
    prompt: str


@dataclass(frozen=True)
class GenerationOptions:
    """What a member asked for, as sent to the API."""

    prompt: str
    aspect_ratio: str = DEFAULT_ASPECT_RATIO
    expand_prompt: bool = True
    # Only the maintained endpoint takes these; None leaves the API's default.
    resolution: str | None = None
    duration: int | None = None
    loop: bool | None = None
    # Start and end frames: public image URLs.
    image_url: str | None = None
    image_end_url: str | None = None
    # The model asked for (None: the bot's default); prepare() settles it.
    model: str | None = None
    hdr: bool | None = None
    # An edit or a reframe: the /v2 `type` ("video_edit", "video_reframe") and the finished video it transforms.
    transform: str | None = None
    source_video_url: str | None = None

    @property
    def extras(self) -> dict[str, Any]:
        """The options beyond prompt, aspect ratio and expansion that were given, for storage."""
        names = ("resolution", "duration", "loop", "image_url", "image_end_url", "hdr", "source_video_url")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass(frozen=True)
class Generation:
    """One row of the generations table."""

    id: int
    api_id: str | None
    parent_api_id: str | None
    kind: Kind
    guild_id: int
    channel_id: int
    requester_id: int
    prompt: str
    aspect_ratio: str
    expand_prompt: bool
    state: State
    api_state: str | None
    video_url: str | None
    thumbnail_url: str | None
    last_frame_url: str | None
    failure_reason: str | None
    status_message_id: int | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    announce_claimed_at: float | None
    announced_at: float | None
    announce_attempts: int
    delivery: Delivery | None
    model: str = LEGACY_MODEL
    extras: dict[str, Any] = field(default_factory=dict)
    # While CHECKING: when the account's list is next read for it, until when it is looked for, and the last time
    # the list was read successfully (a request never seen by then was not received).
    checking_since: float | None = None
    next_check_at: float | None = None
    check_until: float | None = None
    list_read_at: float | None = None
    check_attempts: int = 0
    # When the requester was told that the bot is checking (the command's answer, or a notice after a restart).
    notice_sent_at: float | None = None
    # What the API reported it cost, where it did.
    credits_used: int | None = None
    usd_spent: float | None = None
    # The queue: when the job started waiting (None: it never waited), when it left the queue for the API, how often
    # the API answered 429 to it, when it may be tried again, and whether its requester skips the server's limits.
    queued_at: float | None = None
    started_at: float | None = None
    queue_attempts: int = 0
    not_before: float | None = None
    limits_exempt: bool = False
    # Asked for privately: every answer is ephemeral and the result goes to the requester by DM, never the channel.
    private: bool = False
    # The largest file Discord accepted in the channel when the video was asked for (the interaction's
    # attachment_size_limit); None where it was not known.
    upload_limit: int | None = None

    @property
    def display_state(self) -> str:
        """The state a member sees: the API's own word while running, ours once final."""
        if self.state is State.RUNNING and self.api_state:
            return self.api_state
        return self.state.label

    @property
    def sent_at(self) -> float:
        """When its create request left: when it was recorded, or, for a job that waited in the queue, when it
        started."""
        return self.started_at or self.created_at

    @property
    def reference(self) -> str:
        """How a member refers to this generation in /status and /extend."""
        return self.api_id or f"#{self.id}"
