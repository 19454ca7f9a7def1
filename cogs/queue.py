"""/queue and /cancel, and the Cancel button a waiting job's status message carries."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import discord_limits
from bot.app import VideoBot
from bot.generations import Origin
from bot.messages import queue_embed
from cogs.generation import CancelButton, cancelled_text, origin_of, waiting_view

log = logging.getLogger(__name__)


class QueueCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.service = bot.generations

    @app_commands.command(name="queue", description="Videos running now, how many wait, and your waiting ones")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction[VideoBot]) -> None:
        view = await self.service.queue_view(origin_of(interaction))
        await interaction.response.send_message(embed=queue_embed(view), ephemeral=True)

    @app_commands.command(name="cancel", description="Remove a waiting video from the queue")
    @app_commands.guild_only()
    @app_commands.describe(generation_id="The waiting job, e.g. #12 (its status message and /queue show it)")
    async def cancel(self, interaction: discord.Interaction[VideoBot], generation_id: str) -> None:
        origin: Origin = origin_of(interaction)
        cancelled = await self.service.cancel(origin, generation_id)
        await interaction.response.send_message(cancelled_text(cancelled), ephemeral=True)
        self.bot.progress.note(cancelled)

    @cancel.autocomplete("generation_id")
    async def waiting_autocomplete(
        self, interaction: discord.Interaction[VideoBot], current: str
    ) -> list[app_commands.Choice[str]]:
        """The caller's waiting jobs (a moderator's: the server's) whose number or prompt matches what was typed."""
        if interaction.guild_id is None or interaction.channel_id is None:
            return []
        view = await self.service.queue_view(origin_of(interaction))
        typed = current.strip().lower()
        return discord_limits.choices(
            (f"{job.reference} · place {place} · {job.prompt}", job.reference)
            for place, job in view.jobs
            if typed in f"{job.reference} {job.prompt}".lower()
        )


async def setup(bot: VideoBot) -> None:
    # Registered at every start: a press on a message posted before a restart still reaches its job.
    bot.add_dynamic_items(CancelButton)
    bot.status_editor.buttons = waiting_view
    await bot.add_cog(QueueCog(bot))
