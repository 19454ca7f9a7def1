"""/history: your videos or the server's, ten to a page, with Previous and Next buttons that work after a restart."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import discord_limits
from bot.app import VideoBot, answer_privately, message_for_error
from bot.history import Direction, HistoryPage, HistoryQuery, Scope, scope_for
from bot.messages import history_page_embed
from cogs.generation import origin_of

log = logging.getLogger(__name__)

PREVIOUS_LABEL = "Previous"
NEXT_LABEL = "Next"
EXPIRED_TEXT = "This list has expired. Run `/history` again to see the videos as they are now."

_SCOPES = {Scope.MINE: "m", Scope.SERVER: "s"}
_DIRECTIONS = {Direction.FIRST: "f", Direction.OLDER: "o", Direction.NEWER: "n"}
# Version 1 of the buttons' custom id: the query and the page, all a press needs.
_QUERY_ID = (
    r"history:1:(?P<scope>[ms]):(?P<member>[0-9]{1,20}):(?P<direction>[fon]):(?P<cursor>[0-9]{1,19})"
    r":(?P<page>[0-9]{1,9})"
)


def history_custom_id(query: HistoryQuery) -> str:
    return discord_limits.custom_id(
        "history",
        1,
        _SCOPES[query.scope],
        query.member_id or 0,
        _DIRECTIONS[query.direction],
        query.cursor,
        query.page,
    )


def query_of(match: re.Match[str]) -> HistoryQuery:
    scopes = {code: scope for scope, code in _SCOPES.items()}
    directions = {code: direction for direction, code in _DIRECTIONS.items()}
    return HistoryQuery(
        scope=scopes[match["scope"]],
        member_id=int(match["member"]) or None,
        direction=directions[match["direction"]],
        cursor=int(match["cursor"]),
        page=int(match["page"]),
    )


def visible_channels(interaction: discord.Interaction[Any]) -> frozenset[int]:
    """The channels and threads of the server the caller can read, as far as the bot knows them."""
    guild, member = interaction.guild, interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return frozenset()
    readable = {channel.id for channel in guild.channels if _reads(channel.permissions_for(member))}
    for thread in guild.threads:
        parent = thread.parent
        if parent is None or parent.id not in readable:
            continue
        # A private thread shows only to its members, which the bot does not track: to those who manage threads.
        if not thread.is_private() or parent.permissions_for(member).manage_threads:
            readable.add(thread.id)
    return frozenset(readable)


def _reads(permissions: discord.Permissions) -> bool:
    # A video's messages are in the channel's past: seeing them takes both.
    return permissions.view_channel and permissions.read_message_history


async def read_page(interaction: discord.Interaction[VideoBot], query: HistoryQuery) -> HistoryPage:
    """The page as the caller may see it: a moderator every channel's videos, a member those of channels they read."""
    origin = origin_of(interaction)
    channels = None if origin.is_moderator else visible_channels(interaction)
    return await interaction.client.history.page(origin, query, channels)


class HistoryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=_QUERY_ID):
    """Previous or Next on a history list; its custom id carries the query and the page it opens."""

    def __init__(self, query: HistoryQuery, label: str, *, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=discord_limits.button_label(label),
                style=discord.ButtonStyle.secondary,
                custom_id=history_custom_id(query),
                disabled=disabled,
            )
        )
        self.query = query

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HistoryButton:
        label = item.label if isinstance(item, discord.ui.Button) and item.label else NEXT_LABEL
        return cls(query_of(match), label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            page = await read_page(interaction, self.query)
        except Exception as error:
            await answer_press_error(interaction, error)
            return
        await interaction.response.edit_message(embed=history_page_embed(page), view=history_view(page))


class ExpiredHistoryButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=rf"history:(?!{_QUERY_ID[len('history:') :]}$).*"
):
    """A Previous or Next of a list made by an older version of the bot, which this one can't read."""

    def __init__(self, custom_id: str) -> None:
        super().__init__(discord.ui.Button(label=NEXT_LABEL, custom_id=custom_id))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ExpiredHistoryButton:
        return cls(match.string)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await answer_privately(interaction, EXPIRED_TEXT)


async def answer_press_error(interaction: discord.Interaction[Any], error: Exception) -> None:
    """A press that can't be served is answered in plain words, never with "interaction failed"."""
    message = message_for_error(error)
    if message is None:
        log.exception("A history button failed", exc_info=error)
        message = "Something went wrong while reading the list. Run `/history` again."
    await answer_privately(interaction, message)


def history_view(page: HistoryPage) -> discord.ui.View | None:
    """Previous and Next, each disabled where there is nothing that way; none when everything fits on one page."""
    if not page.has_newer and not page.has_older:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(HistoryButton(page.newer(), PREVIOUS_LABEL, disabled=not page.has_newer))
    view.add_item(HistoryButton(page.older(), NEXT_LABEL, disabled=not page.has_older))
    return view


class HistoryCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="history", description="Your videos in this server, or the server's, newest first")
    @app_commands.guild_only()
    @app_commands.describe(
        scope="mine: your own videos (default); server: everyone's, as far as this server shares them",
        member="Only this member's videos (the server's list, narrowed to one member)",
    )
    async def history(
        self,
        interaction: discord.Interaction[VideoBot],
        scope: Literal["mine", "server"] | None = None,
        member: discord.User | None = None,
    ) -> None:
        member_id = member.id if member is not None else None
        query = HistoryQuery(scope=scope_for(Scope(scope) if scope else None, member_id), member_id=member_id)
        page = await read_page(interaction, query)
        await interaction.response.send_message(
            embed=history_page_embed(page), view=history_view(page) or discord.utils.MISSING, ephemeral=True
        )


async def setup(bot: VideoBot) -> None:
    # Registered at every start: Previous and Next on a list shown before a restart still turn its pages.
    bot.add_dynamic_items(HistoryButton, ExpiredHistoryButton)
    await bot.add_cog(HistoryCog(bot))
