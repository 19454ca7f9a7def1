"""What a finished result's buttons and /show do: who may, on which generation, and the request each one makes.

A press that makes a video (Extend, Re-roll) only prepares the request here: the cog then runs it through the same
check and the same atomic reservation as the command (GenerationService.check and start), never a path of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from .api_client import VideoApiError
from .errors import UserFacingError
from .generations import GenerationService, Origin, VideoApi, not_found, options_of
from .models import Generation, GenerationOptions, Kind, State
from .moderation import ModerationService
from .presses import Presser, ResultAction, press_refusal
from .storage import GenerationStore, StorageUnavailable

log = logging.getLogger(__name__)

VIDEO_GONE = (
    "The video service no longer has this video, so there is no fresh link to give. Its prompt and options are "
    "kept: Re-roll makes it again."
)


class ResultService:
    """The finished result's buttons (Extend, Re-roll, Refresh, Share) and /show."""

    def __init__(
        self,
        store: GenerationStore,
        api: VideoApi,
        generations: GenerationService,
        moderation: ModerationService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._api = api
        self._generations = generations
        self._moderation = moderation
        self._clock = clock

    async def pressed(self, presser: Presser, row_id: int, action: ResultAction) -> Generation:
        """The generation a button names, if this member may press it here; raises UserFacingError with the reason.

        A button on a message of another server never reaches this server's generation, and the reverse."""
        generation = await self._store.get(row_id)
        if generation is None:
            raise not_found(f"#{row_id}")
        rules = await self._moderation.rules(generation.guild_id)
        refusal = press_refusal(action, generation, presser, members_share_videos=rules.members_share_videos)
        if refusal is not None:
            raise UserFacingError(refusal)
        return generation

    async def reroll_request(self, generation: Generation) -> tuple[GenerationOptions, Generation | None]:
        """The options and the video it builds on (for an extension, edit or reframe) of a new generation with the
        same prompt and options; the caller starts it as the command would."""
        if generation.kind is Kind.GENERATE or generation.parent_api_id is None:
            return self._generations.prepare(options_of(generation)), None
        if generation.kind is Kind.EXTEND:
            parent = await self._generations.extendable(generation.guild_id, generation.parent_api_id)
            return self._generations.prepare(options_of(generation)), parent
        # An edit or reframe works from its source's video as it is now (a provider's link expires).
        options, source = await self._generations.transform_options(
            generation.guild_id,
            generation.parent_api_id,
            generation.kind,
            prompt=generation.prompt,
            aspect_ratio=generation.aspect_ratio if generation.kind is Kind.REFRAME else None,
        )
        return options, source

    async def check_extendable(self, generation: Generation) -> None:
        """Before the Extend form is shown: the video is finished and its model can continue it (the rest is checked
        with the prompt, as for /extend)."""
        parent = await self._generations.extendable(generation.guild_id, generation.reference)
        self._generations.models.choose(None, parent, frozenset())

    async def extend_request(self, generation: Generation, prompt: str) -> tuple[GenerationOptions, Generation]:
        """The options of an extension of this finished video with a new prompt, in its own shape, as /extend would
        make them; and the video it continues."""
        parent = await self._generations.extendable(generation.guild_id, generation.reference)
        options = GenerationOptions(prompt, parent.aspect_ratio, expand_prompt=True)
        return self._generations.prepare(options), parent

    async def refetch(self, generation: Generation) -> Generation:
        """The generation fetched again from the video service, with a fresh link (a provider's link expires); a late
        one shows its video if it finished after all. Raises UserFacingError when the video is gone."""
        if generation.state is State.TIMED_OUT:
            return await self._generations.refresh(generation)
        if generation.state is not State.COMPLETED or generation.api_id is None:
            state = generation.display_state
            raise UserFacingError(f"`{generation.reference}` has no video to refresh: it is {state}.")
        fresh = await self._api.fetch(generation.api_id)
        if fresh is None or not fresh.is_completed:
            log.info("Refreshing row %d: the video service answered %s", generation.id, fresh and fresh.state)
            raise UserFacingError(VIDEO_GONE)
        try:
            return await self._store.apply_api_update(generation.id, fresh, self._clock(), expected=State.COMPLETED)
        except StorageUnavailable:
            # The fresh link is shown all the same; the stored one is renewed by the next refresh.
            return replace(generation, video_url=fresh.video_url or generation.video_url)

    async def showable(self, origin: Origin, reference: str) -> Generation:
        """A finished video of this server that this member may post again here; raises UserFacingError why not."""
        generation = await self._generations.find_job(origin.guild_id, reference)
        if generation.private and generation.requester_id != origin.user_id:
            raise not_found(reference.strip())  # a private video stays its requester's until they share it
        if generation.state is not State.COMPLETED or not generation.video_url:
            raise UserFacingError(
                f"`{generation.reference}` is not a finished video (it is {generation.display_state}): `/show` posts "
                "finished videos again."
            )
        rules = await self._moderation.rules(origin.guild_id)
        allowed = rules.allowed_channels
        if allowed and not {origin.channel_id, origin.channel_parent_id} & allowed:
            channels = ", ".join(f"<#{channel}>" for channel in sorted(allowed))
            raise UserFacingError(f"This server keeps videos to {channels}: use `/show` there.")
        return generation

    async def fresh_or_stored(self, generation: Generation) -> Generation:
        """The generation with a fresh link where the video service gives one now, else as stored (for /show and
        Share, where a stale link beats no post)."""
        try:
            return await self.refetch(generation)
        except (UserFacingError, VideoApiError) as error:
            log.info("Posting row %d with its stored link: %s", generation.id, error)
            return generation
