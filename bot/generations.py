"""The generation workflow: check a request, record it, send it once, and answer in plain words."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .api_client import ApiNotFound, CreateOutcomeUnknown, VideoApiError
from .balance import BalanceService
from .errors import UserFacingError
from .models import (
    CURRENT_MODELS,
    DURATIONS,
    LEGACY_MODEL,
    RESOLUTIONS,
    ApiGeneration,
    Generation,
    GenerationOptions,
    Kind,
    State,
)
from .moderation import ModerationService
from .prompts import clean_aspect_ratio, clean_generation_id, clean_prompt
from .quota import (
    GuildRules,
    Member,
    ServerLimits,
    Usage,
    check_access,
    check_limits,
    check_prompt_allowed,
    day_start,
)
from .storage import GenerationStore, UsageCounts

log = logging.getLogger(__name__)

HISTORY_SIZE = 10
RESTARTING = "The bot is restarting. Nothing was sent; please try again in a minute."


class VideoApi(Protocol):
    """What the workflow and the tracker need of the video API."""

    async def create(self, options: GenerationOptions) -> ApiGeneration: ...

    async def extend(self, parent_id: str, options: GenerationOptions) -> ApiGeneration: ...

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]: ...

    async def fetch(self, generation_id: str) -> ApiGeneration | None: ...

    def model_for(self, parent_api_id: str | None) -> str:
        """The model a new generation, or an extension of `parent_api_id`, is made with."""
        ...


@dataclass(frozen=True)
class Origin:
    """Where a request came from: the server, the channel to announce in, and the member."""

    guild_id: int
    channel_id: int
    user_id: int
    role_ids: frozenset[int] = frozenset()
    # A thread's parent channel, so that a thread of an allowed channel is allowed too.
    channel_parent_id: int | None = None
    # Manage Server: moderators may always build on anyone's video.
    is_moderator: bool = False

    @property
    def member(self) -> Member:
        return Member(self.user_id, self.role_ids)


def not_found(reference: str) -> UserFacingError:
    return UserFacingError(
        f"No generation `{reference}` was found in this server. `/status` without an id lists yours."
    )


def _ended_how(generation: Generation) -> str:
    return {
        State.FAILED: "failed",
        State.TIMED_OUT: "timed out",
        State.REJECTED: "was refused by the video service",
        State.UNCONFIRMED: "was never confirmed by the video service",
    }.get(generation.state, f"is {generation.display_state}")


class GenerationService:
    """Starts generations and extensions and answers questions about them."""

    def __init__(
        self,
        store: GenerationStore,
        api: VideoApi,
        *,
        moderation: ModerationService | None = None,
        balance: BalanceService | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._api = api
        self._clock = clock
        self._balance = balance
        # Tasks running a submission (a command, from its acknowledgement to its answer), with nesting depth.
        self._in_flight: dict[asyncio.Task[Any], int] = {}
        self._closing = False
        self._moderation = moderation or ModerationService(store, ServerLimits(), global_daily=0, clock=clock)

    @contextlib.asynccontextmanager
    async def submitting(self) -> AsyncIterator[None]:
        """Mark the current task as submitting, so a shutdown waits for it; refuses once the bot is stopping."""
        if self._closing:
            raise UserFacingError(RESTARTING)
        task = asyncio.current_task()
        assert task is not None
        self._in_flight[task] = self._in_flight.get(task, 0) + 1
        try:
            yield
        finally:
            self._in_flight[task] -= 1
            if not self._in_flight[task]:
                del self._in_flight[task]

    async def drain(self, grace_seconds: float) -> None:
        """Refuse new submissions; give those under way `grace_seconds` to finish, then cancel them.

        A cancelled create is recorded as unconfirmed and left for the tracker to report after the restart,
        while the database and the connections are still open."""
        self._closing = True
        tasks = set(self._in_flight)
        if not tasks:
            return
        log.info("Waiting for %d submissions under way", len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("Cancelled %d submissions still waiting for the API; they will be reported", len(pending))
            await asyncio.wait(pending, timeout=1.0)

    async def check(self, origin: Origin, options: GenerationOptions, parent: Generation | None) -> GuildRules:
        """Every rule of the server, the limits included, checked without reserving anything, so that a refusal
        can be answered before the command is acknowledged publicly. start() re-checks the limits atomically."""
        rules = await self._permitted(origin, options, parent)
        now = self._clock()
        counts = UsageCounts.for_limits(rules.limits, self._moderation.global_daily)
        usage = await self._store.usage_now(origin.guild_id, origin.user_id, day_start(now), counts)
        refusal = check_limits(rules, origin.member, usage, now, global_daily=self._moderation.global_daily)
        if refusal is not None:
            raise refusal
        return rules

    async def _permitted(self, origin: Origin, options: GenerationOptions, parent: Generation | None) -> GuildRules:
        """The server's rules, after checking who, where, what words and whose video (all but the limits)."""
        rules = await self._moderation.rules(origin.guild_id)
        check_access(rules, origin.member, origin.channel_id, origin.channel_parent_id)
        check_prompt_allowed(rules, options.prompt)
        if (
            parent is not None
            and parent.requester_id != origin.user_id
            and not rules.members_share_videos
            and not origin.is_moderator
        ):
            raise UserFacingError(
                f"Generation `{parent.reference}` belongs to another member, and this server lets members extend "
                "only their own videos."
            )
        return rules

    def prepare(self, options: GenerationOptions, parent_api_id: str | None = None) -> GenerationOptions:
        """The options as they will be sent; raises UserFacingError naming what is wrong. No I/O."""
        model = self._api.model_for(parent_api_id)
        if model == LEGACY_MODEL:
            given = [name for name in ("resolution", "duration", "loop") if getattr(options, name) is not None]
            if given:
                raise UserFacingError(
                    f"{', '.join(given)} need Luma's current models; this bot uses the legacy endpoint. "
                    "Leave them out, or ask the bot's operator to set LUMA_MODEL."
                )
        if options.resolution is not None and options.resolution not in RESOLUTIONS:
            raise UserFacingError(f"The resolution must be one of {', '.join(RESOLUTIONS)}.")
        if options.duration is not None and options.duration not in DURATIONS:
            raise UserFacingError(f"The duration must be {' or '.join(map(str, DURATIONS))} seconds.")
        return replace(
            options, prompt=clean_prompt(options.prompt), aspect_ratio=clean_aspect_ratio(options.aspect_ratio)
        )

    async def last_frame_of(self, guild_id: int, reference: str) -> str:
        """The last frame of a finished video of this server, to start a new one from."""
        generation = await self.find(guild_id, reference)
        if generation.state is not State.COMPLETED:
            raise UserFacingError(f"Generation `{generation.reference}` is not a finished video.")
        if not generation.last_frame_url:
            raise UserFacingError(
                f"The video service gave no last frame for `{generation.reference}`; `/extend` continues it instead."
            )
        return generation.last_frame_url

    async def extendable(self, guild_id: int, reference: str) -> Generation:
        """The finished video of this server that `reference` names; raises UserFacingError with the reason."""
        parent = await self.find(guild_id, reference)
        if parent.state is State.RUNNING or parent.state is State.SUBMITTING:
            raise UserFacingError(
                f"Generation `{parent.reference}` is not finished yet (it is {parent.display_state}). "
                "You can extend it once its video is announced."
            )
        if parent.state is not State.COMPLETED or parent.api_id is None:
            raise UserFacingError(
                f"Generation `{parent.reference}` {_ended_how(parent)}, so there is no video to extend. "
                "Only finished videos can be extended."
            )
        return parent

    async def generate(self, origin: Origin, options: GenerationOptions) -> Generation:
        """Check and start a new generation; raises UserFacingError with the reason when it can't."""
        return await self.start(origin, self.prepare(options), parent=None)

    async def extend(self, origin: Origin, parent_reference: str, options: GenerationOptions) -> Generation:
        """Check and start an extension of a finished video of the same server."""
        parent = await self.extendable(origin.guild_id, parent_reference)
        return await self.start(origin, self.prepare(options, parent.api_id), parent=parent)

    async def find(self, guild_id: int, reference: str) -> Generation:
        """The generation of this server with that id; another server's is 'not found', never shown."""
        generation_id = clean_generation_id(reference)
        generation = await self._store.get_by_api_id(generation_id)
        if generation is None or generation.guild_id != guild_id:
            raise not_found(generation_id)
        return generation

    async def refresh(self, generation: Generation) -> Generation:
        """The generation with its state fetched fresh from the API (the stored row is updated).

        A timed-out generation is looked up too: if it finished after all, /status shows its video (its requester
        was already told it was late, so it is not announced again)."""
        if generation.state not in (State.RUNNING, State.TIMED_OUT) or generation.api_id is None:
            return generation
        fresh = await self._api.fetch(generation.api_id)
        if fresh is None or (generation.state is State.TIMED_OUT and not fresh.is_final):
            return generation
        return await self._store.apply_api_update(generation.id, fresh, self._clock(), expected=generation.state)

    async def history(self, guild_id: int, user_id: int) -> list[Generation]:
        """A member's latest generations in this server, newest first."""
        return await self._store.recent_for_member(guild_id, user_id, HISTORY_SIZE)

    async def suggest(self, guild_id: int, text: str) -> list[Generation]:
        """Generations of this server matching typed text, for autocomplete."""
        return await self._store.search_references(guild_id, text.strip())

    async def attach_status_message(self, generation: Generation, message_id: int) -> None:
        """Remember the public status message so the announcement can reply to it."""
        await self._store.set_status_message(generation.id, message_id)

    async def start(self, origin: Origin, options: GenerationOptions, *, parent: Generation | None) -> Generation:
        """Record and send one create (or extend, with a parent) request, exactly once.

        `options` come from prepare() and `parent` from extendable(); the cog calls those before deferring so
        that mistakes are answered at once.
        """
        async with self.submitting():
            return await self._start(origin, options, parent)

    async def _start(self, origin: Origin, options: GenerationOptions, parent: Generation | None) -> Generation:
        kind = Kind.EXTEND if parent is not None else Kind.GENERATE
        # The limits are checked once, atomically with the insert, below.
        rules = await self._permitted(origin, options, parent)
        if self._balance is not None:
            await self._balance.ensure_affordable()
        now = self._clock()

        def admit(usage: Usage) -> None:
            refusal = check_limits(rules, origin.member, usage, now, global_daily=self._moderation.global_daily)
            if refusal is not None:
                raise refusal

        row = await self._store.insert_submitting(
            kind=kind,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            requester_id=origin.user_id,
            options=options,
            parent_api_id=parent.api_id if parent else None,
            now=now,
            model=self._api.model_for(parent.api_id if parent else None),
            admit=admit,
            counted_since=day_start(now),
            counts=UsageCounts.for_limits(rules.limits, self._moderation.global_daily),
        )
        try:
            if parent is not None and parent.api_id is not None:
                accepted = await self._api.extend(parent.api_id, options)
            else:
                accepted = await self._api.create(options)
        except CreateOutcomeUnknown as error:
            log.warning("Create for row %d has an unknown outcome, not resending: %s", row.id, error)
            await self._store.mark_unconfirmed(row.id, error.user_message, self._clock(), requester_told=True)
            raise UserFacingError(error.user_message) from error
        except VideoApiError as error:
            message = self._refusal_message(error, parent)
            log.info("The API refused %s for row %d: %s", kind.value, row.id, error)
            await self._store.mark_rejected(row.id, message, self._clock())
            raise UserFacingError(message) from error
        except BaseException:
            # Anything unexpected (a bug, a cancellation) leaves the outcome unknown: say so, never resend.
            await self._store.mark_unconfirmed(
                row.id, CreateOutcomeUnknown.default_user_message, self._clock(), requester_told=False
            )
            raise
        # Logged before the row is updated, so the paid generation's id is on record even if that write fails.
        log.info("The API accepted %s for row %d as %s", kind.value, row.id, accepted.id)
        if self._balance is not None:
            self._balance.note_spent()
        return await self._store.mark_submitted(row.id, accepted, self._clock())

    def _refusal_message(self, error: VideoApiError, parent: Generation | None) -> str:
        if not isinstance(error, ApiNotFound):
            return error.user_message
        model = self._api.model_for(parent.api_id if parent else None)
        if model == LEGACY_MODEL:
            log.error(
                "The legacy Luma endpoint answered %s: it looks retired. Set LUMA_MODEL=%s to use the current one",
                error.status,
                CURRENT_MODELS[0],
            )
            return (
                "The legacy Luma endpoint of the video service has been retired or no longer knows this video. "
                f"The bot's operator needs to set LUMA_MODEL to {' or '.join(CURRENT_MODELS)} and restart the bot."
            )
        if parent is not None:
            return f"The video service no longer knows generation `{parent.reference}`, so it can't be extended."
        log.error("The create endpoint for %s answered %s", model, error.status)
        return "The video service's create endpoint was not found. The bot's operator has been alerted."
