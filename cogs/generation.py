"""/generate, /status and /extend: parse options, call the generation service, render the answer."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import discord_limits
from bot.api_client import VideoApiError
from bot.app import VideoBot, answer_privately
from bot.catalogue import ALL_DURATIONS, ALL_RESOLUTIONS, spec_of
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.messages import autocomplete_label, history_embed, status_embed
from bot.models import (
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    MAX_PROMPT_LENGTH,
    Generation,
    GenerationOptions,
    State,
)
from bot.prompts import check_image

log = logging.getLogger(__name__)

ASPECT_RATIO_NAMES = {
    "16:9": "16:9 landscape",
    "1:1": "1:1 square",
    "9:16": "9:16 portrait",
    "4:3": "4:3 classic",
    "3:4": "3:4 classic portrait",
    "21:9": "21:9 cinematic",
    "9:21": "9:21 tall",
}
ASPECT_RATIO_CHOICES = [app_commands.Choice(name=ASPECT_RATIO_NAMES[ratio], value=ratio) for ratio in ASPECT_RATIOS]
PromptText = app_commands.Range[str, 1, MAX_PROMPT_LENGTH]


def origin_of(interaction: discord.Interaction) -> Origin:
    """Who asked and where; video commands belong to servers (history, limits and results are per server)."""
    if interaction.guild_id is None or interaction.channel_id is None:
        raise UserFacingError(
            "Video commands work in a server's channels, not in direct messages. "
            "Use /generate in a server where this bot is installed."
        )
    user = interaction.user
    role_ids = frozenset(role.id for role in user.roles) if isinstance(user, discord.Member) else frozenset()
    return Origin(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=user.id,
        role_ids=role_ids,
        channel_parent_id=getattr(interaction.channel, "parent_id", None),
        is_moderator=interaction.permissions.manage_guild,
        upload_limit=interaction.filesize_limit,
    )


def offer_options(command: app_commands.Command[Any, ..., Any], models: Sequence[str]) -> None:
    """Fit /generate's options to the enabled models: `model` only when there is a choice to make, `hdr` only where
    a model makes HDR, and the resolutions and lengths those models offer."""
    specs = [spec_of(model) for model in models]
    resolutions = [r for r in ALL_RESOLUTIONS if any(r in spec.resolutions for spec in specs)]
    durations = [d for d in ALL_DURATIONS if any(d in spec.durations for spec in specs)]
    choices: dict[str, list[app_commands.Choice[str | int | float]]] = {
        "model": [app_commands.Choice(name=spec.label, value=spec.id) for spec in specs] if len(specs) > 1 else [],
        "resolution": [app_commands.Choice(name=r, value=r) for r in resolutions],
        "duration": [app_commands.Choice(name=f"{d} seconds", value=d) for d in durations],
    }
    if not choices["model"]:
        del command._params["model"]
    if not any(spec.hdr for spec in specs):
        del command._params["hdr"]
    for name in ("model", "resolution", "duration"):
        if choices[name]:
            # The parameter object is shared with the class's command: this instance's copy gets its own.
            command._params[name] = dataclasses.replace(command._params[name], choices=choices[name])


class GenerationCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.service = bot.generations
        offer_options(self.generate, self.service.models.enabled)

    @app_commands.command(name="generate", description="Make a video from a text prompt with Luma Dream Machine")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What the video shows, in plain words",
        aspect_ratio="Shape of the video (default 16:9 landscape)",
        expand_prompt="Let Luma enrich the prompt with more detail (default: yes)",
        resolution="Video resolution (the Ray models; each has its own set)",
        duration="Length in seconds (the Ray models; each has its own lengths)",
        loop="Make the video loop seamlessly (the Ray models)",
        image="A start frame: PNG, JPEG or WebP, up to 10 MiB",
        end_image="An end frame: PNG, JPEG or WebP, up to 10 MiB",
        last_frame_of="Start from the last frame of one of this server's finished videos (its id)",
        model="Which Luma model makes the video (default: the bot's first)",
        hdr="High dynamic range (Ray 3.2: 5-second videos at 720p or 1080p)",
        private="Only you see the answers, and the video comes to you by direct message, to share if you like",
    )
    # Ray 2's resolutions and lengths; offer_options() fits them to the enabled models.
    @app_commands.choices(
        aspect_ratio=ASPECT_RATIO_CHOICES,
        resolution=[app_commands.Choice(name=value, value=value) for value in ("540p", "720p", "1080p", "4k")],
    )
    @app_commands.choices(duration=[app_commands.Choice(name=f"{value} seconds", value=value) for value in (5, 9)])
    async def generate(
        self,
        interaction: discord.Interaction[VideoBot],
        prompt: PromptText,
        aspect_ratio: str = DEFAULT_ASPECT_RATIO,
        expand_prompt: bool = True,
        resolution: str | None = None,
        duration: int | None = None,
        loop: bool | None = None,
        image: discord.Attachment | None = None,
        end_image: discord.Attachment | None = None,
        last_frame_of: str | None = None,
        model: str | None = None,
        hdr: bool | None = None,
        private: bool = False,
    ) -> None:
        origin = origin_of(interaction)
        if image is not None:
            check_image("image", image.content_type, image.size)
        if end_image is not None:
            check_image("end_image", end_image.content_type, end_image.size)
        start_frame = image.url if image is not None else None
        if last_frame_of:
            if image is not None:
                raise UserFacingError("Give either `image` or `last_frame_of` as the start frame, not both.")
            start_frame = await self.service.last_frame_of(origin.guild_id, last_frame_of)
        options = self.service.prepare(
            GenerationOptions(
                prompt,
                aspect_ratio,
                expand_prompt,
                resolution=resolution,
                duration=duration,
                loop=loop,
                image_url=start_frame,
                image_end_url=end_image.url if end_image is not None else None,
                model=model,
                hdr=hdr,
            )
        )
        await start_publicly(self.service, interaction, origin, options, None, private=private)

    @app_commands.command(
        name="extend", description="Continue a finished video with a new prompt (about 5 seconds more)"
    )
    @app_commands.guild_only()
    @app_commands.describe(
        generation_id="The finished generation to continue",
        prompt="What happens next, in plain words",
        aspect_ratio="Shape of the video (default 16:9 landscape)",
        expand_prompt="Let Luma enrich the prompt with more detail (default: yes)",
        private="Only you see the answers, and the video comes to you by direct message, to share if you like",
    )
    @app_commands.choices(aspect_ratio=ASPECT_RATIO_CHOICES)
    async def extend(
        self,
        interaction: discord.Interaction[VideoBot],
        generation_id: str,
        prompt: PromptText,
        aspect_ratio: str = DEFAULT_ASPECT_RATIO,
        expand_prompt: bool = True,
        private: bool = False,
    ) -> None:
        origin = origin_of(interaction)
        parent = await self.service.extendable(origin.guild_id, generation_id)
        options = self.service.prepare(GenerationOptions(prompt, aspect_ratio, expand_prompt))
        await start_publicly(self.service, interaction, origin, options, parent, private=private)

    @app_commands.command(name="status", description="Follow a generation, or list your latest ones")
    @app_commands.guild_only()
    @app_commands.describe(
        generation_id="A generation id (or #number of a waiting job); leave empty to list your 10 latest here"
    )
    async def status(self, interaction: discord.Interaction[VideoBot], generation_id: str | None = None) -> None:
        origin = origin_of(interaction)
        if generation_id is None or not generation_id.strip():
            history = await self.service.history(origin.guild_id, origin.user_id)
            await interaction.response.send_message(embed=history_embed(history), ephemeral=True)
            return
        generation = await self.service.find_job(origin.guild_id, generation_id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        note = None
        try:
            generation = await self.service.refresh(generation)
        except VideoApiError as error:
            log.warning("Fresh look-up of %s failed: %s", generation.reference, error)
            note = "The video service could not be reached just now: this is the last known state."
        # The link in the content is what Discord plays inline; one too long for a message stays in the embed's note.
        link = (
            generation.video_url
            if generation.video_url and len(generation.video_url) <= discord_limits.CONTENT
            else None
        )
        await interaction.followup.send(
            content=link or discord.utils.MISSING,
            embed=status_embed(generation, note=note, position=await self.service.position(generation)),
            ephemeral=True,
        )

    @generate.autocomplete("last_frame_of")
    @extend.autocomplete("generation_id")
    async def finished_video_autocomplete(
        self, interaction: discord.Interaction[VideoBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await suggest_generations(self.service, interaction, current, finished_only=True)

    @status.autocomplete("generation_id")
    async def generation_id_autocomplete(
        self, interaction: discord.Interaction[VideoBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await suggest_generations(self.service, interaction, current, finished_only=False)


async def suggest_generations(
    service: GenerationService, interaction: discord.Interaction[VideoBot], current: str, *, finished_only: bool
) -> list[app_commands.Choice[str]]:
    """Autocomplete for a generation id: the caller's recent generations here (finished videos only where only
    those make sense), then others' whose id or prompt matches what was typed."""
    if interaction.guild_id is None or interaction.channel_id is None:
        return []
    matches = await service.suggest(origin_of(interaction), current, finished_only=finished_only)
    return discord_limits.choices(
        (autocomplete_label(generation), generation.api_id) for generation in matches if generation.api_id
    )


async def start_publicly(
    service: GenerationService,
    interaction: discord.Interaction[VideoBot],
    origin: Origin,
    options: GenerationOptions,
    parent: Generation | None,
    *,
    private: bool = False,
) -> None:
    """Check, acknowledge publicly (privately for a private request), start, and show the status message: every
    command and every button that makes a video."""
    _, options = await service.check(origin, options, parent, private=private)
    # From here to the status message the command counts as under way: a shutdown waits for it.
    async with service.submitting():
        # Everything a member can get wrong was checked by now, so the acknowledgement can be public; the
        # API call may take longer than Discord's 3 seconds, hence the deferral.
        await interaction.response.defer(ephemeral=private, thinking=True)
        try:
            generation = await service.start(origin, options, parent=parent, private=private)
        except BaseException:
            # The refusal is told privately by the error handler; drop the public "thinking…" placeholder.
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
            raise
        if private:
            # The one way to reach the requester if their DMs turn out closed, while Discord accepts it.
            interaction.client.announcer.private_answers.remember(generation.id, interaction)
        try:
            message = await show_started(service, interaction, generation)
        except discord.HTTPException as error:
            # The generation runs (or waits) and will be announced anyway; only the status message is missing.
            log.warning("Could not show the status of %s: %s", generation.reference, error)
            return
        if private:
            return  # an ephemeral message: the announcement can't reply to it, nor an edit reach it by the channel
        await service.attach_status_message(generation, message.id)
        if generation.state is State.QUEUED:
            # The queue may have moved it before the message's id was stored, when no edit could reach it.
            fresh = await service.current(generation)
            if fresh.state is not State.QUEUED:
                with contextlib.suppress(discord.HTTPException):
                    await show_started(service, interaction, fresh)


CANCEL_LABEL = "Cancel"


def cancelled_text(generation: Generation) -> str:
    return (
        f"`{generation.reference}` was removed from the queue. Nothing was sent or charged, and it does not count "
        "toward the limits."
    )


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"queue:cancel:(?P<row>[0-9]{1,18})"):
    """The Cancel button of a waiting job; its custom id names the job, so it works after a restart."""

    def __init__(self, row_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=CANCEL_LABEL, style=discord.ButtonStyle.secondary, custom_id=f"queue:cancel:{row_id}"
            )
        )
        self.row_id = row_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["row"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: VideoBot = interaction.client
        try:
            cancelled = await bot.generations.cancel(origin_of(interaction), f"#{self.row_id}")
        except UserFacingError as refusal:
            await refresh_if_moved_on(bot.generations, interaction, self.row_id)
            await answer_privately(interaction, refusal.message)
            return
        await interaction.response.edit_message(embed=status_embed(cancelled), view=None)
        await interaction.followup.send(cancelled_text(cancelled), ephemeral=True)


async def refresh_if_moved_on(service: GenerationService, interaction: discord.Interaction[Any], row_id: int) -> None:
    """A Cancel button on a job that no longer waits (its message missed an update, say across a crash): the
    message shows the job as it is now, without the button."""
    if interaction.guild_id is None:
        return
    try:
        job = await service.find_job(interaction.guild_id, f"#{row_id}")
    except UserFacingError:
        return
    if job.state is not State.QUEUED:
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.edit_message(embed=status_embed(job), view=None)


def waiting_view(generation: Generation) -> discord.ui.View | None:
    """A waiting job's Cancel button; nothing once it left the queue."""
    if generation.state is not State.QUEUED:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(generation.id))
    return view


async def show_started(
    service: GenerationService, interaction: discord.Interaction[VideoBot], generation: Generation
) -> discord.InteractionMessage:
    """The command's status message: a waiting job with its place and its Cancel button, or the started one."""
    position = await service.position(generation)
    return await interaction.edit_original_response(
        embed=status_embed(generation, position=position), view=waiting_view(generation)
    )


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(GenerationCog(bot))
