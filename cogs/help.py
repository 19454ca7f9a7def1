"""/help: what the bot does and the commands the caller may use, read from the command tree itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import VideoBot
from bot.errors import UserFacingError
from bot.messages import CommandHelp, help_embed
from bot.quota import check_access
from cogs.generation import origin_of

# Marks a subcommand only moderators may use (a whole command is marked by its default permissions).
FOR_MODERATORS: dict[Any, Any] = {"for_moderators": True}


def for_moderators(command: app_commands.Command[Any, ..., Any]) -> bool:
    root = command.root_parent or command
    permissions = root.default_permissions
    return bool(command.extras.get("for_moderators")) or (permissions is not None and permissions.manage_guild)


def usage_of(command: app_commands.Command[Any, ..., Any]) -> str:
    """`/name required_option …`: the options a call needs; the optional ones as one ellipsis."""
    required = [parameter.name for parameter in command.parameters if parameter.required]
    optional = any(not parameter.required for parameter in command.parameters)
    return " ".join([f"/{command.qualified_name}", *required, *(["[…]"] if optional else [])])


def commands_of(tree: app_commands.CommandTree[Any]) -> Iterator[CommandHelp]:
    """Every command and subcommand the bot offers, in the order it registered them."""
    for top in tree.get_commands():
        found = top.walk_commands() if isinstance(top, app_commands.Group) else [top]
        for command in found:
            if isinstance(command, app_commands.Command):
                yield CommandHelp(usage_of(command), command.description, for_moderators(command))


class HelpCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What this bot does, and the commands you can use here")
    @app_commands.guild_only()
    async def help(self, interaction: discord.Interaction[VideoBot]) -> None:
        origin = origin_of(interaction)
        note = None
        try:
            check_access(
                await self.bot.moderation.rules(origin.guild_id),
                origin.member,
                origin.channel_id,
                origin.channel_parent_id,
            )
        except UserFacingError as refusal:
            note = refusal.message
        embed = help_embed(list(commands_of(self.bot.tree)), moderator=origin.is_moderator, note=note)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(HelpCog(bot))
