"""/reframe and /edit: a finished video re-composed for another aspect ratio, or restyled by a prompt (Ray 3.2)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import VideoBot
from bot.models import Kind
from cogs.generation import ASPECT_RATIO_CHOICES, PromptText, origin_of, start_publicly, suggest_generations


class TransformCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.service = bot.generations

    @app_commands.command(name="reframe", description="Re-compose a finished video for another aspect ratio")
    @app_commands.guild_only()
    @app_commands.describe(
        generation_id="The finished video to re-compose",
        aspect_ratio="The new shape, e.g. 9:16 to make a landscape video a vertical short",
        prompt="What the new framing should show (default: the video's own prompt)",
    )
    @app_commands.choices(aspect_ratio=ASPECT_RATIO_CHOICES)
    async def reframe(
        self,
        interaction: discord.Interaction[VideoBot],
        generation_id: str,
        aspect_ratio: str,
        prompt: PromptText | None = None,
    ) -> None:
        origin = origin_of(interaction)
        options, source = await self.service.transform_options(
            origin.guild_id, generation_id, Kind.REFRAME, prompt=prompt, aspect_ratio=aspect_ratio
        )
        await start_publicly(self.service, interaction, origin, options, source)

    @app_commands.command(name="edit", description="Restyle a finished video by a prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        generation_id="The finished video to restyle", prompt="How it should look now, e.g. 'as a watercolour'"
    )
    async def edit(self, interaction: discord.Interaction[VideoBot], generation_id: str, prompt: PromptText) -> None:
        origin = origin_of(interaction)
        options, source = await self.service.transform_options(
            origin.guild_id, generation_id, Kind.EDIT, prompt=prompt, aspect_ratio=None
        )
        await start_publicly(self.service, interaction, origin, options, source)

    @reframe.autocomplete("generation_id")
    @edit.autocomplete("generation_id")
    async def generation_id_autocomplete(
        self, interaction: discord.Interaction[VideoBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await suggest_generations(self.service, interaction, current, finished_only=True)


async def setup(bot: VideoBot) -> None:
    # Offered only where a model that can edit and reframe is enabled.
    if bot.generations.models.transformers():
        await bot.add_cog(TransformCog(bot))
