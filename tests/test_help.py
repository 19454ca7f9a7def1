"""/help: what the bot does and the commands the caller may use, the moderators' part for moderators only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest

from bot.api_client import LumaClient
from bot.app import EXTENSIONS, VideoBot
from bot.config import load_settings
from bot.messages import CommandHelp, help_embed
from bot.storage import GenerationStore
from cogs.help import commands_of
from tests.test_messages import assert_within_discord_limits

MODERATOR_ONLY = {
    "/limits set […]",
    "/limits channels action […]",
    "/limits roles action […]",
    "/limits exempt action […]",
    "/limits words action […]",
    "/limits sharing allowed",
    "/limits private allowed",
    "/limits keep_videos upload",
    "/limits models action […]",
    "/usage […]",
}


@pytest.fixture
async def offered(store: GenerationStore) -> AsyncIterator[list[CommandHelp]]:
    """The commands of a bot with several models (so that every command is there)."""
    settings = load_settings(
        {"DISCORD_TOKEN": "t", "AIML_API_KEY": "k", "LUMA_MODELS": "luma/ray-2,luma/ray-3.2,legacy"}
    )
    async with aiohttp.ClientSession() as session:
        bot = VideoBot(settings, store, LumaClient(session, "http://127.0.0.1:9", settings.aiml_api_key))
        for extension in EXTENSIONS:
            await bot.load_extension(extension)
        yield list(commands_of(bot.tree))
        await bot.close()


def text_of(embed: discord.Embed) -> str:
    return "\n".join([embed.description or "", *(f"{field.name}\n{field.value}" for field in embed.fields)])


def test_the_moderators_commands_are_those_that_need_manage_server(offered: list[CommandHelp]) -> None:
    assert {command.usage for command in offered if command.for_moderators} == MODERATOR_ONLY


def test_a_member_reads_what_the_bot_does_and_only_the_commands_they_may_use(offered: list[CommandHelp]) -> None:
    embed = help_embed(offered, moderator=False)
    text = text_of(embed)
    assert "video studio" in text and "`/generate prompt […]`" in text and "`/history […]`" in text
    assert "`/limits show`" in text and "`/extend generation_id prompt […]`" in text and "`/help`" in text
    assert "`/show generation_id`" in text
    assert "For moderators" not in text
    assert not any(usage in text for usage in MODERATOR_ONLY)
    assert_within_discord_limits(embed)


def test_a_moderator_reads_the_moderators_part_too(offered: list[CommandHelp]) -> None:
    embed = help_embed(offered, moderator=True)
    text = text_of(embed)
    moderators_part = text[text.index("For moderators") :]
    assert all(usage in moderators_part for usage in MODERATOR_ONLY)
    assert "`/generate prompt […]`" in text[: text.index("For moderators")]
    assert_within_discord_limits(embed)


def test_a_member_who_may_not_make_videos_here_is_told_why() -> None:
    note = "Making videos in this server needs one of these roles: <@&5>."
    embed = help_embed([CommandHelp("/generate prompt", "Make a video")], moderator=False, note=note)
    assert note in (embed.description or "")


def test_many_long_commands_spread_over_fields_whole() -> None:
    many = [CommandHelp(f"/command{n} option", "d" * 300, for_moderators=n % 2 == 0) for n in range(40)]
    embed = help_embed(many, moderator=True)
    assert_within_discord_limits(embed)
    assert all(value.count("`/command") == value.count("` — ") for value in (f.value or "" for f in embed.fields))
