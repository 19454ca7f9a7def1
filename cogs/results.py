"""/show, and the buttons of a finished result: Extend, Re-roll (or Try again), Refresh, and Share on a private copy.

Each button's custom id names its generation, so a press on a message posted before a restart still works; every
press is checked by the result service (server, requester, moderators, the sharing setting) and a press that makes a
video runs through the command's own path (start_publicly: the same checks and the one atomic reservation)."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import discord_limits
from bot.app import VideoBot, answer_failure
from bot.errors import UserFacingError
from bot.models import MAX_PROMPT_LENGTH, MIN_PROMPT_LENGTH, Generation, State
from bot.presses import Presser, ResultAction, result_actions
from bot.result_messages import result_embed, shared_text, shown_again_text
from cogs.generation import origin_of, start_publicly, suggest_generations

log = logging.getLogger(__name__)

LABELS = {
    ResultAction.EXTEND: "Extend",
    ResultAction.REROLL: "Re-roll",
    ResultAction.REFRESH: "Refresh",
    ResultAction.SHARE: "Share",
}
TRY_AGAIN_LABEL = "Try again"
SHARED_LABEL = "Shared"
_STYLES = {
    ResultAction.EXTEND: discord.ButtonStyle.primary,
    ResultAction.REROLL: discord.ButtonStyle.secondary,
    ResultAction.REFRESH: discord.ButtonStyle.secondary,
    ResultAction.SHARE: discord.ButtonStyle.primary,
}
_ACTIONS = "|".join(action.value for action in ResultAction)
# The Extend form's custom id names the video too: a form sent back after a restart still reaches it.
EXTEND_FORM_TEMPLATE = re.compile(r"result:extend-prompt:(?P<row>[0-9]{1,18})")
EXTEND_FORM_TITLE = "Extend this video"
PROMPT_FIELD = "prompt"


def result_custom_id(action: ResultAction, row_id: int) -> str:
    return discord_limits.custom_id("result", action.value, row_id)


def extend_form_custom_id(row_id: int) -> str:
    return discord_limits.custom_id("result", "extend-prompt", row_id)


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"result:(?P<action>{_ACTIONS}):(?P<row>[0-9]{{1,18}})",
):
    """One button of a finished result; its custom id carries the action and the generation's row."""

    def __init__(self, action: ResultAction, row_id: int, *, label: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=discord_limits.button_label(label or LABELS[action]),
                style=_STYLES[action],
                custom_id=result_custom_id(action, row_id),
            )
        )
        self.action = action
        self.row_id = row_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ResultButton:
        return cls(ResultAction(match["action"]), int(match["row"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await _PRESSES[self.action](interaction, self.row_id)
        except Exception as error:
            await answer_failure(interaction, error, f"The {LABELS[self.action]} button of row {self.row_id}")


def result_view(generation: Generation, private_copy: bool = False) -> discord.ui.View | None:
    """The buttons of a result (a private copy: Share); None when it has none."""
    actions = result_actions(generation, private_copy=private_copy)
    if not actions:
        return None
    view = discord.ui.View(timeout=None)
    for action in actions:
        label = TRY_AGAIN_LABEL if action is ResultAction.REROLL and generation.state is not State.COMPLETED else None
        view.add_item(ResultButton(action, generation.id, label=label))
    return view


def shared_view(row_id: int) -> discord.ui.View:
    """A private copy once shared: its Share button greyed out, so that the video is not posted twice."""
    view = discord.ui.View(timeout=None)
    view.add_item(
        discord.ui.Button(
            label=SHARED_LABEL, disabled=True, custom_id=discord_limits.custom_id("result", "shared", row_id)
        )
    )
    return view


def extend_form(generation: Generation) -> discord.ui.Modal:
    """The form that asks for the continuation prompt. It is answered by ResultsCog.on_interaction, by its custom id,
    not by a form object held in memory: that would be lost in a restart, and shared by two members extending the
    same video at once."""
    form = discord.ui.Modal(
        title=discord_limits.modal_title(EXTEND_FORM_TITLE),
        custom_id=extend_form_custom_id(generation.id),
        timeout=None,
    )
    form.add_item(
        discord.ui.TextInput(
            label="What happens next",
            custom_id=PROMPT_FIELD,
            style=discord.TextStyle.paragraph,
            placeholder="Describe how the video goes on, in plain words",
            min_length=MIN_PROMPT_LENGTH,
            max_length=MAX_PROMPT_LENGTH,
        )
    )
    # Stopped before it is sent, so that discord.py keeps no copy of it to answer with.
    form.stop()
    return form


def presser_of(interaction: discord.Interaction[Any]) -> Presser:
    return Presser(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        is_moderator=interaction.guild_id is not None and interaction.permissions.manage_guild,
    )


async def press_extend(interaction: discord.Interaction[VideoBot], row_id: int) -> None:
    bot = interaction.client
    generation = await bot.results.pressed(presser_of(interaction), row_id, ResultAction.EXTEND)
    await bot.results.check_extendable(generation)
    await interaction.response.send_modal(extend_form(generation))


async def press_reroll(interaction: discord.Interaction[VideoBot], row_id: int) -> None:
    bot = interaction.client
    generation = await bot.results.pressed(presser_of(interaction), row_id, ResultAction.REROLL)
    options, parent = await bot.results.reroll_request(generation)
    await start_publicly(bot.generations, interaction, origin_of(interaction), options, parent)


async def press_refresh(interaction: discord.Interaction[VideoBot], row_id: int) -> None:
    bot = interaction.client
    generation = await bot.results.pressed(presser_of(interaction), row_id, ResultAction.REFRESH)
    # Looking the video up may take longer than Discord's 3 seconds: the message is updated in place after.
    await interaction.response.defer()
    fresh = await bot.results.refetch(generation)
    content = interaction.message.content if interaction.message is not None else ""
    await interaction.edit_original_response(
        content=refreshed_content(content, generation, fresh), embed=result_embed(fresh), view=result_view(fresh)
    )


def refreshed_content(content: str, before: Generation, after: Generation) -> str:
    """The message's text with the video's old link swapped for the fresh one (or the link added, for a video that
    finished after all), whatever else the message says."""
    if not after.video_url or after.video_url in content:
        return content
    if before.video_url and before.video_url in content:
        return discord_limits.content(content.replace(before.video_url, after.video_url))
    return discord_limits.content_keeping_tail(content, f"\n{after.video_url}").strip()


async def press_share(interaction: discord.Interaction[VideoBot], row_id: int) -> None:
    bot = interaction.client
    generation = await bot.results.pressed(presser_of(interaction), row_id, ResultAction.SHARE)
    await interaction.response.defer()
    fresh = await bot.results.fresh_or_stored(generation)
    channel = bot.get_partial_messageable(generation.channel_id, guild_id=generation.guild_id)
    try:
        await channel.send(
            shared_text(fresh),
            embed=result_embed(fresh),
            allowed_mentions=discord.AllowedMentions.none(),
            view=result_view(fresh) or discord.utils.MISSING,
            # Two quick presses (or two copies of the DM) post it once: Discord drops a repeated nonce for a while.
            nonce=f"share-{generation.id}",
        )
    except discord.HTTPException as error:
        log.info("Sharing row %d in channel %d failed: %s", generation.id, generation.channel_id, error)
        raise UserFacingError(
            f"The video could not be posted in <#{generation.channel_id}>: the bot may no longer be allowed to write "
            "there. It is still yours here."
        ) from error
    await interaction.edit_original_response(view=shared_view(generation.id))
    await interaction.followup.send(f"Shared in <#{generation.channel_id}>.", ephemeral=True)


_PRESSES = {
    ResultAction.EXTEND: press_extend,
    ResultAction.REROLL: press_reroll,
    ResultAction.REFRESH: press_refresh,
    ResultAction.SHARE: press_share,
}


def submitted_prompt(interaction: discord.Interaction[Any]) -> str:
    """The text typed into the Extend form."""
    data: dict[str, Any] = dict(interaction.data or {})
    rows = data.get("components", [])
    for row in rows if isinstance(rows, list) else []:
        for field in row.get("components", []) if isinstance(row, dict) else []:
            if isinstance(field, dict) and field.get("custom_id") == PROMPT_FIELD:
                return str(field.get("value") or "")
    return ""


class ResultsCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="show", description="Post a finished video of this server again, with its buttons")
    @app_commands.guild_only()
    @app_commands.describe(generation_id="The finished video to post again (pings nobody)")
    async def show(self, interaction: discord.Interaction[VideoBot], generation_id: str) -> None:
        origin = origin_of(interaction)
        generation = await self.bot.results.showable(origin, generation_id)
        await interaction.response.defer(thinking=True)
        fresh = await self.bot.results.fresh_or_stored(generation)
        await interaction.edit_original_response(
            content=shown_again_text(fresh, origin.user_id),
            embed=result_embed(fresh),
            allowed_mentions=discord.AllowedMentions.none(),
            view=result_view(fresh),
        )

    @show.autocomplete("generation_id")
    async def show_autocomplete(
        self, interaction: discord.Interaction[VideoBot], current: str
    ) -> list[app_commands.Choice[str]]:
        return await suggest_generations(self.bot.generations, interaction, current, finished_only=True)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[VideoBot]) -> None:
        """The Extend form sent back: extend the video as /extend would."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        match = EXTEND_FORM_TEMPLATE.fullmatch(str(data.get("custom_id", "")))
        if match is None:
            return
        row_id = int(match["row"])
        try:
            generation = await self.bot.results.pressed(presser_of(interaction), row_id, ResultAction.EXTEND)
            options, parent = await self.bot.results.extend_request(generation, submitted_prompt(interaction))
            await start_publicly(self.bot.generations, interaction, origin_of(interaction), options, parent)
        except Exception as error:
            await answer_failure(interaction, error, f"The Extend form of row {row_id}")


async def setup(bot: VideoBot) -> None:
    # Registered at every start: a press on a message posted before a restart still reaches its generation.
    bot.add_dynamic_items(ResultButton)
    bot.announcer.result_view = result_view
    await bot.add_cog(ResultsCog(bot))
