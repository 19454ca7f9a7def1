"""The generation workflow: check a request, record it, send it once, and answer in plain words."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from .api_client import ApiNotFound, ApiRateLimited, CreateOutcomeUnknown, VideoApiError
from .balance import BalanceService
from .catalogue import check_options, label_of, spec_of
from .errors import UserFacingError
from .model_choice import ModelChoice
from .models import (
    LEGACY_MODEL,
    ApiGeneration,
    Generation,
    GenerationOptions,
    Kind,
    ListedGeneration,
    State,
)
from .moderation import ModerationService
from .prompts import clean_aspect_ratio, clean_generation_id, clean_prompt, is_short_id
from .queue import positions
from .quota import (
    Admission,
    GuildRules,
    LimitReached,
    Member,
    ServerLimits,
    Usage,
    admit,
    check_access,
    check_prompt_allowed,
    day_start,
    is_exempt,
    limits_apply,
)
from .reconcile import DEFAULT_SCHEDULE, CheckSchedule
from .sharing import GONE_AFTER_SECONDS
from .storage import GenerationStore, StorageOutcomeUnknown, StorageUnavailable, UsageCounts
from .video_api import ModelStatus

log = logging.getLogger(__name__)

HISTORY_SIZE = 10
# Discord shows at most 25 autocomplete choices.
SUGGESTIONS = 25
RESTARTING = "The bot is restarting. Nothing was sent; please try again in a minute."
STORAGE_DOWN = (
    "The bot can't take new videos right now: its database can't be written. Nothing was sent or charged. "
    "The bot's operator can see why in its log; please try again later."
)
STORAGE_UNSURE = (
    "The bot lost its connection to its database while saving this request, so it may have been recorded; "
    "`/status` will show it if it was."
)
NO_LIST_UNCONFIRMED = (
    "The video service did not confirm this request, and it keeps no list the bot could check, so the bot could not "
    "confirm it. It was not sent again, to avoid paying twice; if the video arrives, `/status` will show it."
)
PRICE_CACHE_SECONDS = 60.0
# A generation this recent is still known to its endpoint: one that has forgotten it is gone.
PROBE_KNOWN_ID_MAX_AGE = 86_400.0
_PROBE_PROBLEMS = {
    ModelStatus.RETIRED: (logging.ERROR, "looks retired: its endpoint answered 404. Remove it from LUMA_MODELS"),
    ModelStatus.KEY_REFUSED: (
        logging.ERROR,
        "refuses the API key (401): check AIML_API_KEY, or remove the model from LUMA_MODELS",
    ),
    ModelStatus.UNREACHABLE: (logging.WARNING, "could not be checked at start: the video service did not answer"),
}
# An accepted id whose write failed is written again after this long, doubling up to the cap, until it is stored.
RECORD_RETRY_FIRST_SECONDS = 0.5
RECORD_RETRY_MAX_SECONDS = 30.0
# A queued job the API answered 429 is tried again after this long, doubling with each 429, up to the cap.
RATE_LIMIT_BACKOFF_FIRST_SECONDS = 15.0
RATE_LIMIT_BACKOFF_MAX_SECONDS = 300.0
# A queued job the balance can't pay for now waits this long before it is tried again.
BALANCE_BACKOFF_SECONDS = 60.0


def checking_note(schedule: CheckSchedule, *, interrupted: bool = False) -> str:
    """What the requester of a create with an unknown outcome is told while the bot looks for it. `interrupted`: the
    process sending it stopped (the bot restarted, or another of its processes took the request over); members hear
    only that the sending was cut off, not how the bot runs."""
    cause = (
        "The bot was interrupted while sending this request"
        if interrupted
        else "The video service did not answer this request"
    )
    minutes = schedule.window_minutes
    return (
        f"{cause}, so the bot is checking with the video service whether it arrived. It was not sent again, so "
        f"nothing is paid twice. Within {minutes} minute{'s' if minutes != 1 else ''} the bot posts here your video, "
        "or what it found out: if the request never arrived, trying again is then safe."
    )


class VideoApi(Protocol):
    """What the workflow and the tracker need of the video API."""

    async def create(self, options: GenerationOptions, model: str) -> ApiGeneration: ...

    async def extend(self, parent_id: str, options: GenerationOptions, model: str) -> ApiGeneration: ...

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]: ...

    async def fetch(self, generation_id: str) -> ApiGeneration | None: ...

    def can_list(self, model: str) -> bool:
        """Whether the account's list of generations shows those of `model` (to find a create whose answer was lost)."""
        ...

    async def list_generations(self) -> list[ListedGeneration]: ...

    async def probe(self, model: str, known_id: str | None = None) -> ModelStatus:
        """Whether the model's endpoint answers this key (a free look-up)."""
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
    # The largest file Discord accepts in that channel (the interaction's attachment_size_limit), when known.
    upload_limit: int | None = None

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
        State.NOT_RECEIVED: "never reached the video service",
    }.get(generation.state, f"is {generation.display_state}")


_ROW_REFERENCE = re.compile(r"^#?\d{1,18}$")
_STARTED = (State.SUBMITTING, State.RUNNING, State.CHECKING)


@dataclass(frozen=True)
class QueueView:
    """The queue as one member of one server sees it."""

    running_everywhere: int
    max_running: int
    running_here: int
    server_cap: int
    waiting_here: int
    waiting_everywhere: int
    # (place in the queue, job): the caller's own, or the whole server's for a moderator.
    jobs: list[tuple[int, Generation]]
    shows_everyone: bool


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
        check_schedule: CheckSchedule = DEFAULT_SCHEDULE,
        models: ModelChoice | None = None,
        max_running: int = 0,
    ) -> None:
        self._store = store
        # The operator's cap on generations running at the API at once (0 = none).
        self.max_running = max_running
        # Called when a job joins the queue or frees a slot: the queue runner looks at once (set by the wiring).
        self.wake_queue: Callable[[], None] = lambda: None
        self._api = api
        self.models = models or ModelChoice((LEGACY_MODEL,))
        self._clock = clock
        self._balance = balance
        self._check_schedule = check_schedule
        self._prices: dict[tuple[str, str | None, int | None, bool], tuple[float, int]] = {}
        # Writes of outcomes the API already gave (an accepted id above all) that the database refused for now.
        self._pending_records: set[asyncio.Task[None]] = set()
        # Tasks running a submission (a command, from its acknowledgement to its answer), with nesting depth.
        self._in_flight: dict[asyncio.Task[Any], int] = {}
        self._closing = False
        self._moderation = moderation or ModerationService(store, ServerLimits(), global_daily=0, clock=clock)

    @property
    def closing(self) -> bool:
        return self._closing

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

        A cancelled create is left for reconciliation to look for after the restart, while the database and the
        connections are still open."""
        self._closing = True
        tasks = set(self._in_flight)
        if tasks:
            log.info("Waiting for %d submissions under way", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("Cancelled %d submissions still waiting for the API; they will be looked for", len(pending))
                await asyncio.wait(pending, timeout=1.0)
        for task in set(self._pending_records):
            # Their rows stay 'submitting' (the API's answers are in the log): the restart looks for them.
            task.cancel()

    async def check(
        self, origin: Origin, options: GenerationOptions, parent: Generation | None, *, private: bool = False
    ) -> tuple[GuildRules, GenerationOptions]:
        """Every rule of the server, the model's options and the limits, checked without reserving anything, so that a
        refusal can be answered before the command is acknowledged publicly. start() re-checks the limits atomically.
        Returns the rules and the options with their model settled."""
        rules, options = await self._permitted(origin, options, parent, private=private)
        global_daily = self._moderation.global_daily
        if not self._counts_needed(rules, origin.member):
            return rules, options  # nothing to count: the command answers without reading the usage
        now = self._clock()
        counts = UsageCounts.for_limits(rules.limits, global_daily, self.max_running)
        usage = await self._store.queue_usage_now(origin.guild_id, origin.user_id, day_start(now), now, counts)
        outcome = self._admit(rules, origin.member, usage, now)
        if isinstance(outcome, LimitReached):
            raise outcome
        return rules, options

    def _counts_needed(self, rules: GuildRules, member: Member) -> bool:
        """Whether a limit or a running cap could refuse or queue this member's job (else nothing is counted)."""
        return self.max_running > 0 or limits_apply(rules, member, global_daily=self._moderation.global_daily)

    def _admit(self, rules: GuildRules, member: Member, usage: Usage, now: float) -> Admission | LimitReached:
        return admit(
            rules, member, usage, now, global_daily=self._moderation.global_daily, max_running=self.max_running
        )

    async def _permitted(
        self, origin: Origin, options: GenerationOptions, parent: Generation | None, *, private: bool = False
    ) -> tuple[GuildRules, GenerationOptions]:
        """The server's rules, after checking who, where, what words, whose video and which model (all but the
        limits); the options come back with their model."""
        rules = await self._moderation.rules(origin.guild_id)
        check_access(rules, origin.member, origin.channel_id, origin.channel_parent_id)
        if private and not rules.private_mode:
            raise UserFacingError(
                "This server's moderators have turned private mode off: ask without `private`, and the video is "
                "posted in the channel."
            )
        check_prompt_allowed(rules, options.prompt)
        if (
            parent is not None
            and parent.requester_id != origin.user_id
            and not rules.members_share_videos
            and not origin.is_moderator
        ):
            raise UserFacingError(
                f"Generation `{parent.reference}` belongs to another member, and this server lets members build "
                "only on their own videos."
            )
        if options.transform is not None:
            spec = self.models.for_transform(rules.allowed_models)
        else:
            spec = self.models.choose(options.model, parent, rules.allowed_models)
        check_options(spec, options)
        return rules, replace(options, model=spec.id)

    def prepare(self, options: GenerationOptions) -> GenerationOptions:
        """The options with their prompt and aspect ratio cleaned; raises UserFacingError naming what is wrong.
        No I/O: the model's own rules are checked with the server's (check(), start())."""
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
        if not parent.state.is_final:
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
        return await self.start(origin, self.prepare(options), parent=parent)

    async def transform_options(
        self, guild_id: int, reference: str, kind: Kind, *, prompt: str | None, aspect_ratio: str | None
    ) -> tuple[GenerationOptions, Generation]:
        """The options of an edit (a new prompt) or a reframe (a new aspect ratio) of a finished video of this
        server, and that video."""
        source = await self.extendable(guild_id, reference)
        if not source.video_url:
            raise UserFacingError(f"The video service gave no video for `{source.reference}` to work from.")
        if kind is Kind.REFRAME and aspect_ratio == source.aspect_ratio:
            raise UserFacingError(f"`{source.reference}` is {aspect_ratio} already; choose another aspect ratio.")
        options = GenerationOptions(
            prompt or source.prompt,
            aspect_ratio or source.aspect_ratio,
            transform=kind.api_type,
            source_video_url=source.video_url,
        )
        return self.prepare(options), source

    async def find(self, guild_id: int, reference: str) -> Generation:
        """The generation of this server with that id (or its first 8 characters); another server's is 'not found',
        never shown."""
        if is_short_id(reference):
            return await self._find_short(guild_id, reference.strip())
        generation_id = clean_generation_id(reference)
        generation = await self._store.get_by_api_id(generation_id)
        if generation is None or generation.guild_id != guild_id:
            raise not_found(generation_id)
        return generation

    async def _find_short(self, guild_id: int, short_id: str) -> Generation:
        matches = await self._store.find_by_short_id(guild_id, short_id.lower())
        if not matches:
            raise not_found(short_id)
        if len(matches) > 1:
            raise UserFacingError(
                f"More than one video of this server has an id starting with `{short_id}`: give the whole id "
                "(the command's suggestions offer it)."
            )
        return matches[0]

    async def refresh(self, generation: Generation) -> Generation:
        """The generation with its state fetched fresh from the API (the stored row is updated).

        A timed-out generation is looked up too: if it finished after all, /status shows its video (its requester
        was already told it was late, so it is not announced again)."""
        if generation.state not in (State.RUNNING, State.TIMED_OUT) or generation.api_id is None:
            return generation
        fresh = await self._api.fetch(generation.api_id)
        if fresh is None or (generation.state is State.TIMED_OUT and not fresh.is_final):
            return generation
        try:
            return await self._store.apply_api_update(generation.id, fresh, self._clock(), expected=generation.state)
        except StorageUnavailable:
            return generation  # the tracker stores it once the database works again

    async def history(self, guild_id: int, user_id: int) -> list[Generation]:
        """A member's latest generations in this server, newest first."""
        return await self._store.recent_for_member(guild_id, user_id, HISTORY_SIZE)

    async def suggest(self, origin: Origin, text: str, *, finished_only: bool) -> list[Generation]:
        """Autocomplete for an id: the caller's own generations in this server matching what was typed, newest
        first; once something is typed, other members' too where the caller may use them (any but their private ones
        for /status; to build on, as the server's sharing setting says). `finished_only`: completed videos only."""
        text = text.strip()
        own = await self._store.search_references(
            origin.guild_id, text, SUGGESTIONS, requester_id=origin.user_id, finished_only=finished_only
        )
        if not text or len(own) >= SUGGESTIONS:
            return own
        if finished_only and not origin.is_moderator:
            rules = await self._moderation.rules(origin.guild_id)
            if not rules.members_share_videos:
                return own
        found = await self._store.search_references(origin.guild_id, text, SUGGESTIONS, finished_only=finished_only)
        # Another member's private videos stay theirs until they share them.
        return own + [g for g in found if g.requester_id != origin.user_id and not g.private]

    async def find_job(self, guild_id: int, reference: str) -> Generation:
        """A generation of this server by its id, or a job by its `#number` (a waiting job has no id yet)."""
        text = reference.strip()
        if not _ROW_REFERENCE.match(text):
            return await self.find(guild_id, text)
        if is_short_id(text):
            # Eight digits: the start of an id, or else a job's number.
            with contextlib.suppress(UserFacingError):
                return await self._find_short(guild_id, text)
        job = await self._store.get(int(text.lstrip("#")))
        if job is None or job.guild_id != guild_id:
            raise not_found(text)
        return job

    async def cancel(self, origin: Origin, reference: str) -> Generation:
        """Remove a waiting job: its requester or a moderator may; a job already sent can't be stopped."""
        job = await self.find_job(origin.guild_id, reference)
        own = job.requester_id == origin.user_id
        if not own and not origin.is_moderator:
            raise UserFacingError(
                f"`{job.reference}` was asked for by another member: only they or a moderator (Manage Server) can "
                "cancel it."
            )
        if job.state is State.QUEUED:
            reason = (
                f"Cancelled by {'its requester' if own else 'a moderator'} while it waited: nothing was sent or "
                "charged, and it does not count toward the limits."
            )
            try:
                removed = await self._store.cancel_queued(job.id, reason, self._clock())
            except StorageUnavailable as error:
                raise UserFacingError(
                    "The bot can't save anything right now (its database can't be written), so the job still waits."
                ) from error
            if removed:
                log.info("Row %d was cancelled while it waited (by member %d)", job.id, origin.user_id)
                return await self._store.get(job.id) or job
            job = await self._store.get(job.id) or job
        if job.state in _STARTED:
            raise UserFacingError(
                f"`{job.reference}` has already been sent to the video service, which can't stop a video once it has "
                "started: it will be posted here when it is ready."
            )
        raise UserFacingError(f"`{job.reference}` is not waiting any more: it is {job.display_state}.")

    async def current(self, generation: Generation) -> Generation:
        """The generation as stored now."""
        return await self._store.get(generation.id) or generation

    async def position(self, generation: Generation) -> int | None:
        """A waiting job's place in the queue (1 = next); None when it is not waiting."""
        if generation.state is not State.QUEUED:
            return None
        return (await positions(self._store, self._clock())).get(generation.id)

    async def queue_view(self, origin: Origin) -> QueueView:
        """Running now against the caps, how many wait, and the caller's waiting jobs (a moderator's: everyone's)."""
        rules = await self._moderation.rules(origin.guild_id)
        running = await self._store.running_counts()
        waiting = await self._store.queued()
        places = await positions(self._store, self._clock())
        here = [job for job in waiting if job.guild_id == origin.guild_id]
        shown = [job for job in here if origin.is_moderator or job.requester_id == origin.user_id]
        return QueueView(
            running_everywhere=sum(running.values()),
            max_running=self.max_running,
            running_here=sum(n for (guild, _), n in running.items() if guild == origin.guild_id),
            server_cap=rules.limits.server_concurrent,
            waiting_here=len(here),
            waiting_everywhere=len(waiting),
            jobs=sorted(((places.get(job.id, 0), job) for job in shown), key=lambda pair: pair[0]),
            shows_everyone=origin.is_moderator,
        )

    async def attach_status_message(self, generation: Generation, message_id: int) -> None:
        """Remember the public status message so the announcement can reply to it (a nicety: the video is announced
        without it if the database can't take it now)."""
        try:
            await self._store.set_status_message(generation.id, message_id)
        except StorageUnavailable:
            log.warning(
                "Row %d: the status message's id could not be stored; the announcement won't reply to it", generation.id
            )

    async def start(
        self, origin: Origin, options: GenerationOptions, *, parent: Generation | None, private: bool = False
    ) -> Generation:
        """Record and send one create (or extend, with a parent) request, exactly once.

        `options` come from prepare() and `parent` from extendable(); the cog calls those before deferring so
        that mistakes are answered at once.
        """
        async with self.submitting():
            return await self._start(origin, options, parent, private)

    async def _start(
        self, origin: Origin, options: GenerationOptions, parent: Generation | None, private: bool
    ) -> Generation:
        kind = _kind_of(options, parent)
        # The limits are checked once, atomically with the insert, below.
        rules, options = await self._permitted(origin, options, parent, private=private)
        model = options.model or self.models.default
        price = await self.expected_price(options) if self._balance is not None else 0
        if self._balance is not None:
            await self._balance.ensure_affordable(price)
        now = self._clock()

        def decide(usage: Usage) -> bool:
            outcome = self._admit(rules, origin.member, usage, now)
            if isinstance(outcome, LimitReached):
                raise outcome
            return outcome is Admission.QUEUE

        exempt = is_exempt(rules, origin.member)
        try:
            row = await self._store.reserve(
                kind=kind,
                guild_id=origin.guild_id,
                channel_id=origin.channel_id,
                requester_id=origin.user_id,
                options=options,
                parent_api_id=parent.api_id if parent else None,
                now=now,
                model=model,
                counted_since=day_start(now),
                decide=decide if self._counts_needed(rules, origin.member) else None,
                limits_exempt=exempt,
                counts=UsageCounts.for_limits(rules.limits, self._moderation.global_daily, self.max_running),
                upload_limit=origin.upload_limit,
                private=private,
            )
        except StorageOutcomeUnknown as error:
            raise UserFacingError(STORAGE_UNSURE) from error
        except StorageUnavailable as error:
            raise UserFacingError(STORAGE_DOWN) from error
        if row.state is State.QUEUED:
            log.info("Row %d (%s) waits in the queue", row.id, kind.value)
            self.wake_queue()
            return row
        may_wait = exempt or rules.limits.user_queued > 0
        return await self._send(row, options, price, may_wait=may_wait)

    async def send_queued(self, row: Generation) -> Generation:
        """Send a job the queue runner moved from 'queued' to 'submitting', by the same path as a direct create."""
        if self._closing:
            # Not sent: it waits again, at its place, for the next start.
            return await self._store.requeue(row.id, self._clock(), not_before=self._clock())
        # From here a shutdown waits for the send (no await came between the check above and this).
        async with self.submitting():
            options = options_of(row)
            try:
                price = await self.expected_price(options) if self._balance is not None else 0
                if self._balance is not None:
                    await self._balance.ensure_affordable(price)
            except UserFacingError:
                log.warning("Row %d waits on: the balance can't pay for it now", row.id)
                now = self._clock()
                return await self._store.requeue(row.id, now, not_before=now + BALANCE_BACKOFF_SECONDS)
            except BaseException:
                # Stopped (or failed) before its request left: nothing was sent, so it waits again at its place
                # rather than being taken for a create cut off mid-request.
                now = self._clock()
                await asyncio.shield(self._store.requeue(row.id, now, not_before=now))
                raise
            try:
                return await self._send(row, options, price, may_wait=True, answered_now=False)
            except UserFacingError as refusal:
                # The row holds the outcome; the tracker tells the requester, whose command was answered long ago.
                log.info("Queued row %d ended at once: %s", row.id, refusal.message)
                return await self._store.get(row.id) or row
            finally:
                self.wake_queue()

    async def _send(
        self, row: Generation, options: GenerationOptions, price: int, *, may_wait: bool, answered_now: bool = True
    ) -> Generation:
        """Send a row that is 'submitting' exactly once and record what the API answered. A 429 (provably refused,
        so not charged) puts the job back in the queue at its place where the server lets members wait.
        `answered_now`: the command's answer tells the requester an outcome (else the tracker announces it)."""
        model = row.model
        kind = row.kind
        try:
            if kind is Kind.EXTEND and row.parent_api_id is not None:
                accepted = await self._api.extend(row.parent_api_id, options, model)
            else:
                accepted = await self._api.create(options, model)
        except CreateOutcomeUnknown as error:
            return await self._outcome_unknown(row, error, requester_told=answered_now)
        except ApiRateLimited as error:
            if not may_wait:
                return await self._refused(row, error, kind, answered_now)
            return await self._back_in_queue(row, error)
        except VideoApiError as error:
            return await self._refused(row, error, kind, answered_now)
        except BaseException:
            # Anything unexpected (a bug, a cancellation) leaves the outcome unknown: look for it, never resend.
            await self._look_for(row, requester_told=False)
            raise
        # Logged before the row is updated, so the paid generation's id is on record even if that write fails.
        log.info("The API accepted %s for row %d as %s", kind.value, row.id, accepted.id)
        if self._balance is not None:
            self._balance.note_spent(price)
        now = self._clock()
        on_the_way = replace(row, api_id=accepted.id, api_state=accepted.state, state=State.RUNNING, submitted_at=now)
        return await self._record(on_the_way, lambda: self._store.mark_submitted(row.id, accepted, now))

    async def _refused(self, row: Generation, error: VideoApiError, kind: Kind, answered_now: bool) -> Generation:
        message = self._refusal_message(error, row.model, row.parent_api_id, kind)
        log.info("The API refused %s for row %d: %s", kind.value, row.id, error)
        now = self._clock()
        if answered_now:
            await self._record(row, lambda: self._store.mark_rejected(row.id, message, now))
        else:
            await self._record(row, lambda: self._store.mark_rejected_untold(row.id, message, now))
        raise UserFacingError(message) from error

    async def _back_in_queue(self, row: Generation, error: ApiRateLimited) -> Generation:
        now = self._clock()
        backoff = min(RATE_LIMIT_BACKOFF_MAX_SECONDS, RATE_LIMIT_BACKOFF_FIRST_SECONDS * 2.0**row.queue_attempts)
        not_before = now + max(backoff, error.retry_after or 0.0)
        log.info("The API answered 429 to row %d: back in the queue, tried again in %.0f s", row.id, not_before - now)
        queued = await self._record(
            replace(row, state=State.QUEUED), lambda: self._store.requeue(row.id, now, not_before=not_before)
        )
        self.wake_queue()
        return queued

    async def check_models(self) -> dict[str, ModelStatus]:
        """At start: a free look-up per enabled model. One that is gone or refuses the key is logged with the setting
        to change, and offered to no member; the others go on."""
        statuses: dict[str, ModelStatus] = {}
        for model in self.models.enabled:
            known = await self._store.latest_api_id(model, self._clock() - PROBE_KNOWN_ID_MAX_AGE)
            status = statuses[model] = await self._api.probe(model, known)
            problem = _PROBE_PROBLEMS.get(status)
            if problem is not None:
                level, what = problem
                log.log(level, "%s (%s) %s", label_of(model), model, what)
                if level >= logging.ERROR:
                    self.models.mark_unavailable(model)
        return statuses

    async def expected_price(self, options: GenerationOptions) -> int:
        """What a video with these options should cost: the last cost the API reported for its model and settings,
        else the documented price."""
        model = options.model or self.models.default
        key = (model, options.resolution, options.duration, bool(options.hdr))
        cached = self._prices.get(key)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        reported = await self._store.last_reported_cost(*key)
        price = reported if reported is not None else spec_of(model).documented_price
        # Prices change seldom; one read a minute per model and settings keeps this off each command's path.
        self._prices[key] = (self._clock() + PRICE_CACHE_SECONDS, price)
        return price

    async def recover_interrupted(self) -> list[Generation]:
        """At start, and then now and then: creates that a process's stop cut off before their answer was stored are
        looked for (or reported where nothing can find them), never resent. Only creates of processes that are gone:
        another process's create in flight is its own to finish."""
        recovered = []
        for row in await self._store.take_over_submissions(self._clock(), GONE_AFTER_SECONDS):
            log.warning("Row %d was being sent when its process stopped: its outcome is unknown, not resending", row.id)
            recovered.append(await self._look_for(row, requester_told=False))
        return recovered

    async def _outcome_unknown(
        self, row: Generation, error: CreateOutcomeUnknown, *, requester_told: bool = True
    ) -> Generation:
        """The create may have been accepted: look for it where the endpoint allows, and say so honestly."""
        sent_at = datetime.fromtimestamp(row.sent_at, UTC).isoformat(timespec="seconds")
        if self._api.can_list(row.model):
            log.warning(
                "Create for row %d (sent %s) has an unknown outcome: %s. Not resending; looking for it in the "
                "account's list of generations",
                row.id,
                sent_at,
                error,
            )
            return await self._look_for(row, requester_told=requester_told, interrupted=False)
        log.warning(
            "Create for row %d has an unknown outcome: %s. Not resending. %s keeps no list of generations, so check "
            "by hand for one made at about %s UTC with prompt %r (server %d, channel %d, member %d); "
            "`python -m bot.adopt %d <generation id>` hands a found one to the bot",
            row.id,
            error,
            row.model,
            sent_at,
            row.prompt[:200],
            row.guild_id,
            row.channel_id,
            row.requester_id,
            row.id,
        )
        await self._look_for(row, requester_told=requester_told, interrupted=False)
        raise UserFacingError(NO_LIST_UNCONFIRMED) from error

    async def _look_for(self, row: Generation, *, requester_told: bool, interrupted: bool | None = None) -> Generation:
        """Hand a create with an unknown outcome to reconciliation (or, where nothing can find it, to the tracker's
        report); the requester hears the outcome either way."""
        now = self._clock()
        if not self._api.can_list(row.model):
            unconfirmed = replace(row, state=State.UNCONFIRMED, failure_reason=NO_LIST_UNCONFIRMED)
            return await self._record(
                unconfirmed,
                lambda: self._store.mark_unconfirmed(row.id, NO_LIST_UNCONFIRMED, now, requester_told=requester_told),
            )
        next_check_at, check_until = self._check_schedule.start(now)
        note = checking_note(
            self._check_schedule, interrupted=not requester_told if interrupted is None else interrupted
        )
        return await self._record(
            replace(row, state=State.CHECKING, failure_reason=note),
            lambda: self._store.mark_checking(
                row.id, note, now, next_check_at=next_check_at, check_until=check_until, requester_told=requester_told
            ),
        )

    async def _record(self, expected: Generation, write: Callable[[], Awaitable[Generation]]) -> Generation:
        """Store what the API answered. If the database refuses, keep trying in the background and go on with
        `expected`: the answer is never lost while the process lives (and a restart looks for the row)."""
        try:
            return await write()
        except StorageUnavailable:
            task = asyncio.create_task(self._record_later(expected, write), name=f"record-row-{expected.id}")
            self._pending_records.add(task)
            task.add_done_callback(self._pending_records.discard)
            return expected

    @staticmethod
    async def _record_later(expected: Generation, write: Callable[[], Awaitable[Generation]]) -> None:
        delay = RECORD_RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECORD_RETRY_MAX_SECONDS)
            with contextlib.suppress(StorageUnavailable):
                await write()
                log.info(
                    "Row %d is recorded as %s, after the database refused it for a while", expected.id, expected.state
                )
                return

    def _refusal_message(self, error: VideoApiError, model: str, parent_api_id: str | None, kind: Kind) -> str:
        if not isinstance(error, ApiNotFound):
            return error.user_message
        if kind is Kind.EXTEND and parent_api_id is not None:
            # A 404 on an extension names the video (an unknown id), not the model.
            return f"The video service no longer knows generation `{parent_api_id}`, so it can't be extended."
        # The model's endpoint is gone: members hear so plainly, the operator learns what to change.
        self.models.mark_unavailable(model)
        others = [other for other in self.models.enabled if other != model and not self.models.is_unavailable(other)]
        log.error(
            "The video service answered %s to a create with %s: the model or its endpoint looks retired. "
            "Remove it from LUMA_MODELS (enabled: %s)",
            error.status,
            model,
            ", ".join(self.models.enabled),
        )
        message = f"{label_of(model)} is unavailable: the video service no longer offers it."
        if others:
            return message + f" Choose {' or '.join(label_of(other) for other in others)} with the `model` option."
        return message + " The bot's operator has been alerted."


def options_of(row: Generation) -> GenerationOptions:
    """The options a stored job was accepted with, as they are sent."""
    extras = row.extras
    return GenerationOptions(
        row.prompt,
        row.aspect_ratio,
        row.expand_prompt,
        resolution=extras.get("resolution"),
        duration=extras.get("duration"),
        loop=extras.get("loop"),
        image_url=extras.get("image_url"),
        image_end_url=extras.get("image_end_url"),
        model=row.model,
        hdr=extras.get("hdr"),
        transform=row.kind.api_type,
        source_video_url=extras.get("source_video_url"),
    )


def _kind_of(options: GenerationOptions, parent: Generation | None) -> Kind:
    if options.transform == Kind.EDIT.api_type:
        return Kind.EDIT
    if options.transform == Kind.REFRAME.api_type:
        return Kind.REFRAME
    return Kind.EXTEND if parent is not None else Kind.GENERATE
