"""/limits, /quota and /usage: moderators decide who generates, where and how much; members see where they stand."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import discord_limits
from bot.api_client import Balance
from bot.app import VideoBot
from bot.catalogue import label_of
from bot.errors import UserFacingError
from bot.models import TOKENS_PER_VIDEO
from bot.moderation import MemberSpend, ModerationService, Standing, UsageSummary
from bot.quota import GuildRules, discord_time
from bot.storage import LIMIT_NAMES, RuleEntry
from cogs.generation import origin_of
from cogs.help import FOR_MODERATORS

LimitValue = app_commands.Range[int, 0, 1_000_000]  # the service checks LIMIT_MAXIMUMS whatever arrives
ListAction = Literal["add", "remove", "clear"]
ADDED_OR_NOT = {True: "added to", False: "was already in"}
REMOVED_OR_NOT = {True: "removed from", False: "was not in"}


def require_moderator(interaction: discord.Interaction) -> int:
    """The server's id, if the caller may change its rules (Manage Server); checked here, whatever Discord shows."""
    guild_id = origin_of(interaction).guild_id
    if not interaction.permissions.manage_guild:
        raise UserFacingError("Only members with the **Manage Server** permission can do this.")
    return guild_id


def _limit_text(value: int, unit: str = "") -> str:
    return "no limit" if value == 0 else f"{value}{unit}"


def rules_embed(
    rules: GuildRules, *, global_daily: int, show_phrases: bool, models: Sequence[str] = ()
) -> discord.Embed:
    limits = rules.limits
    embed = discord.Embed(title="Video limits in this server", colour=discord.Colour.blurple())
    described = {
        "user_daily": ("Per member per day", _limit_text(limits.user_daily)),
        "server_daily": ("Whole server per day", _limit_text(limits.server_daily)),
        "user_concurrent": ("Running at once per member", _limit_text(limits.user_concurrent)),
        "cooldown_seconds": ("Cooldown between videos", _limit_text(limits.cooldown_seconds, " s")),
        "server_concurrent": ("Running at once in the server", _limit_text(limits.server_concurrent)),
        "user_queued": (
            "Waiting in the queue per member",
            "none (refused instead)" if limits.user_queued == 0 else str(limits.user_queued),
        ),
    }
    for name in LIMIT_NAMES:
        label, value = described[name]
        source = "" if name in rules.overridden else " (default)"
        embed.add_field(name=label, value=f"{value}{source}", inline=True)
    embed.add_field(
        name="Channels", value=_listed([f"<#{c}>" for c in sorted(rules.allowed_channels)], "everywhere"), inline=False
    )
    embed.add_field(
        name="Roles that may generate",
        value=_listed([f"<@&{r}>" for r in sorted(rules.allowed_roles)], "everyone"),
        inline=False,
    )
    embed.add_field(
        name="Roles exempt from limits",
        value=_listed([f"<@&{r}>" for r in sorted(rules.exempt_roles)], "none"),
        inline=False,
    )
    phrases = f"{len(rules.blocked_phrases)}"
    if show_phrases and rules.blocked_phrases:
        shown = [f"||{discord.utils.escape_markdown(p)}||" for p in rules.blocked_phrases]
        phrases = discord_limits.join_within([phrases + ":", *shown], discord_limits.EMBED_FIELD_VALUE, separator=" ")
    embed.add_field(name="Blocked words and phrases", value=phrases, inline=False)
    if len(models) > 1:
        used = [model for model in models if not rules.allowed_models or model in rules.allowed_models]
        names = ", ".join(label_of(model) for model in used) or "none"
        embed.add_field(name="Models", value=names + ("" if rules.allowed_models else " (all)"), inline=False)
    embed.add_field(
        name="Members may extend and re-roll each other's videos",
        value="yes" if rules.members_share_videos else "no (only their own; moderators may use any)",
        inline=False,
    )
    embed.add_field(
        name="Private mode",
        value="on (`private` sends a video to its requester by direct message)" if rules.private_mode else "off",
        inline=False,
    )
    embed.add_field(
        name="Finished videos",
        value="uploaded as files where they fit the upload limit, else linked"
        if rules.keep_videos
        else "linked (the provider's links expire)",
        inline=False,
    )
    if global_daily:
        embed.set_footer(text=f"The bot's operator caps all servers together at {global_daily} videos a day.")
    return discord_limits.fit_embed(embed)


def _listed(items: Sequence[str], nothing: str, separator: str = ", ") -> str:
    """Mentions for one embed field: whole ones while they fit, then how many more."""
    return discord_limits.join_within(items, discord_limits.EMBED_FIELD_VALUE, separator=separator) or nothing


def standing_embed(standing: Standing) -> discord.Embed:
    limits, usage = standing.rules.limits, standing.usage
    embed = discord.Embed(title="Your video quota in this server", colour=discord.Colour.blurple())
    if standing.exempt:
        embed.description = "One of your roles is exempt from this server's limits."
    embed.add_field(name="Used today", value=f"{usage.user_today} / {_limit_text(limits.user_daily)}", inline=True)
    embed.add_field(
        name="Running now", value=f"{usage.user_running} / {_limit_text(limits.user_concurrent)}", inline=True
    )
    cooldown = "ready" if standing.cooldown_left <= 0 else f"{int(standing.cooldown_left + 0.999)} s left"
    embed.add_field(name="Cooldown", value=f"{cooldown} ({_limit_text(limits.cooldown_seconds, ' s')})", inline=True)
    embed.add_field(
        name="Server today", value=f"{usage.server_today} / {_limit_text(limits.server_daily)}", inline=True
    )
    embed.add_field(name="Day resets", value=f"midnight UTC, {discord_time(standing.resets_at)}", inline=False)
    if standing.global_daily:
        embed.set_footer(text=f"All servers together: {usage.everyone_today} / {standing.global_daily} today.")
    return discord_limits.fit_embed(embed)


def _spend_line(member: MemberSpend) -> str:
    return f"<@{member.user_id}> — {member.videos} video{'s' if member.videos != 1 else ''}, {member.tokens:,} tokens"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def usage_embed(summary: UsageSummary, balance: Balance | None = None, balance_known: bool = False) -> discord.Embed:
    report = summary.report
    period = "today" if summary.days == 1 else f"the last {summary.days} days"
    embed = discord.Embed(title=f"Video usage in this server, {period}", colour=discord.Colour.blurple())
    embed.add_field(name="Generations", value=str(report.generations), inline=True)
    embed.add_field(name="Extensions", value=str(report.extensions), inline=True)
    embed.add_field(name="Edits and reframes", value=str(report.charged - report.generations - report.extensions))
    estimated = summary.estimated_videos
    how = (
        "as reported by the video service"
        if not estimated
        else f"{estimated} of {report.charged} videos at the documented price: no cost reported for them"
    )
    embed.add_field(name="Tokens spent", value=f"{summary.tokens_spent:,} ({how})", inline=False)
    if summary.usd_spent is not None:
        embed.add_field(name="USD spent (reported)", value=f"${summary.usd_spent:,.2f}", inline=True)
    embed.add_field(name="Failed (no cost)", value=str(report.failures), inline=True)
    embed.add_field(name="Refused by the API (no cost)", value=str(report.refused), inline=True)
    median = summary.median_wait
    waited = f"{summary.waited}" + ("" if median is None else f", median wait {_duration(median)}")
    embed.add_field(name="Waited in the queue", value=waited, inline=True)
    by_videos, by_spend = summary.top_by_videos(), summary.top_by_spend()
    top = _listed([_spend_line(m) for m in by_videos], "nobody yet", "\n")
    embed.add_field(name="Top members", value=top, inline=False)
    if [m.user_id for m in by_spend] != [m.user_id for m in by_videos]:
        by_spend_lines = _listed([_spend_line(m) for m in by_spend], "nobody yet", "\n")
        embed.add_field(name="Top members by spend", value=by_spend_lines, inline=False)
    if balance is not None:
        videos = max(0, int(balance.amount // TOKENS_PER_VIDEO))
        embed.add_field(
            name="AI/ML account balance",
            value=f"{balance.amount:,.0f} (about {videos} videos at the legacy 500,000 each)",
            inline=False,
        )
    elif balance_known:
        embed.add_field(name="AI/ML account balance", value="not readable with this API key right now", inline=False)
    embed.set_footer(
        text="Videos are those the API accepted (or may have, while the bot checks) and did not report failed, "
        "running ones included. Spend is what the video service reported for each; where it reported nothing, the "
        "model's documented price (500,000 tokens). Counted since midnight UTC at the start of the period."
    )
    return discord_limits.fit_embed(embed)


def offer_model_choices(group: app_commands.Group, models: Sequence[str]) -> None:
    """`/limits models` lists the enabled models; with only one there is nothing to narrow, and no such command."""
    command = group.get_command("models")
    assert isinstance(command, app_commands.Command)
    if len(models) < 2:
        group.remove_command("models")
        return
    choices: list[app_commands.Choice[str | int | float]] = [
        app_commands.Choice(name=label_of(model), value=model) for model in models
    ]
    command._params["model"] = dataclasses.replace(command._params["model"], choices=choices)


class ModerationCog(commands.Cog):
    limits = app_commands.Group(
        name="limits", description="Who may make videos in this server, where and how many", guild_only=True
    )

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.service: ModerationService = bot.moderation
        offer_model_choices(self.limits, self.service.models)

    async def _show(self, interaction: discord.Interaction, guild_id: int, headline: str | None = None) -> None:
        rules = await self.service.rules(guild_id)
        embed = rules_embed(
            rules,
            global_daily=self.service.global_daily,
            show_phrases=interaction.permissions.manage_guild,
            models=self.service.models,
        )
        await interaction.response.send_message(headline, embed=embed, ephemeral=True)

    @limits.command(name="show", description="Show this server's video limits")
    async def show(self, interaction: discord.Interaction[VideoBot]) -> None:
        await self._show(interaction, origin_of(interaction).guild_id)

    @limits.command(name="set", description="Set video limits (Manage Server); 0 means no limit", extras=FOR_MODERATORS)
    @app_commands.describe(
        user_daily="Videos (and extensions) per member per day, UTC",
        server_daily="Videos for the whole server per day, UTC",
        user_concurrent="Videos one member may have running at once",
        cooldown_seconds="Seconds between two submissions of one member",
        server_concurrent="Videos the whole server may have running at once; more wait in the queue",
        user_queued="Videos one member may have waiting in the queue (0: refuse instead of waiting)",
    )
    async def set_limits(
        self,
        interaction: discord.Interaction[VideoBot],
        user_daily: LimitValue | None = None,
        server_daily: LimitValue | None = None,
        user_concurrent: LimitValue | None = None,
        cooldown_seconds: LimitValue | None = None,
        server_concurrent: LimitValue | None = None,
        user_queued: LimitValue | None = None,
    ) -> None:
        guild_id = require_moderator(interaction)
        given = {
            "user_daily": user_daily,
            "server_daily": server_daily,
            "user_concurrent": user_concurrent,
            "cooldown_seconds": cooldown_seconds,
            "server_concurrent": server_concurrent,
            "user_queued": user_queued,
        }
        values = {name: value for name, value in given.items() if value is not None}
        if not values:
            raise UserFacingError("Give at least one limit to change, for example `user_daily: 3`.")
        await self.service.set_limits(guild_id, values)
        await self._show(interaction, guild_id, "Limits updated.")

    @limits.command(
        name="channels",
        description="Channels where videos may be made (Manage Server); none = all",
        extras=FOR_MODERATORS,
    )
    @app_commands.describe(
        action="add or remove a channel, or clear the list (none listed: videos may be made everywhere)",
        channel="The channel or thread to add or remove",
    )
    async def channels(
        self,
        interaction: discord.Interaction[VideoBot],
        action: ListAction,
        channel: discord.TextChannel | discord.VoiceChannel | discord.Thread | None = None,
    ) -> None:
        await self._edit_list(interaction, RuleEntry.CHANNEL, action, channel.id if channel else None, "channel")

    @limits.command(
        name="roles", description="Roles allowed to make videos (Manage Server); none = everyone", extras=FOR_MODERATORS
    )
    @app_commands.describe(
        action="add or remove a role, or clear the list (none listed: everyone may make videos)",
        role="The role to add or remove",
    )
    async def roles(
        self, interaction: discord.Interaction[VideoBot], action: ListAction, role: discord.Role | None = None
    ) -> None:
        await self._edit_list(interaction, RuleEntry.ROLE, action, role.id if role else None, "role")

    @limits.command(name="exempt", description="Roles exempt from the limits (Manage Server)", extras=FOR_MODERATORS)
    @app_commands.describe(
        action="add or remove a role, or clear the list (none listed: the limits apply to everyone)",
        role="The role whose members skip the limits",
    )
    async def exempt(
        self, interaction: discord.Interaction[VideoBot], action: ListAction, role: discord.Role | None = None
    ) -> None:
        await self._edit_list(interaction, RuleEntry.EXEMPT_ROLE, action, role.id if role else None, "role")

    @limits.command(
        name="words", description="Words or phrases prompts may not contain (Manage Server)", extras=FOR_MODERATORS
    )
    @app_commands.describe(
        action="add or remove a word or phrase, or clear the list",
        phrase="A word or phrase, matched as whole words whatever the case or look-alike letters",
    )
    async def words(
        self,
        interaction: discord.Interaction[VideoBot],
        action: ListAction,
        phrase: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        await self._edit_list(interaction, RuleEntry.BLOCKED_PHRASE, action, phrase, "phrase")

    @limits.command(
        name="models", description="Which of the bot's models this server uses (Manage Server)", extras=FOR_MODERATORS
    )
    @app_commands.describe(
        action="add or remove a model, or clear the list (none listed: the server uses all of them)",
        model="One of the models the bot's operator enabled",
    )
    async def models(
        self, interaction: discord.Interaction[VideoBot], action: ListAction, model: str | None = None
    ) -> None:
        await self._edit_list(interaction, RuleEntry.MODEL, action, model, "model")

    @limits.command(
        name="sharing",
        description="Whether members may extend and re-roll each other's videos (Manage Server)",
        extras=FOR_MODERATORS,
    )
    @app_commands.describe(allowed="Yes: members may extend and re-roll each other's videos; no: only their own")
    async def sharing(self, interaction: discord.Interaction[VideoBot], allowed: bool) -> None:
        guild_id = require_moderator(interaction)
        await self.service.set_sharing(guild_id, allowed)
        await self._show(interaction, guild_id, "Sharing updated.")

    @limits.command(
        name="private",
        description="Whether members may ask for videos privately (Manage Server)",
        extras=FOR_MODERATORS,
    )
    @app_commands.describe(allowed="true: `private` delivers by direct message; false: every video is posted here")
    async def private(self, interaction: discord.Interaction[VideoBot], allowed: bool) -> None:
        guild_id = require_moderator(interaction)
        await self.service.set_private_mode(guild_id, allowed)
        await self._show(interaction, guild_id, "Private mode updated.")

    @limits.command(
        name="keep_videos",
        description="Upload finished videos as files, so they outlive the link (Manage Server)",
        extras=FOR_MODERATORS,
    )
    @app_commands.describe(
        upload="Upload each finished video when it fits this server's upload limit (else post the link)"
    )
    async def keep_videos(self, interaction: discord.Interaction[VideoBot], upload: bool) -> None:
        guild_id = require_moderator(interaction)
        await self.service.set_keep_videos(guild_id, upload)
        await self._show(
            interaction, guild_id, "Finished videos will be uploaded." if upload else "Finished videos will be linked."
        )

    async def _edit_list(
        self,
        interaction: discord.Interaction,
        kind: RuleEntry,
        action: str,
        value: int | str | None,
        what: str,
    ) -> None:
        guild_id = require_moderator(interaction)
        if action == "clear":
            removed = await self.service.clear(guild_id, kind)
            await self._show(interaction, guild_id, f"Cleared {removed} entries.")
            return
        if action not in ("add", "remove"):
            raise UserFacingError("The action must be add, remove or clear.")
        if value is None:
            raise UserFacingError(f"Name the {what} to {action}.")
        if action == "add":
            changed = await self.service.add(guild_id, kind, str(value))
            headline = f"The {what} {ADDED_OR_NOT[changed]} the list."
        else:
            changed = await self.service.remove(guild_id, kind, str(value))
            headline = f"The {what} {REMOVED_OR_NOT[changed]} the list."
        await self._show(interaction, guild_id, headline)

    @app_commands.command(name="quota", description="Your video quota in this server: used, running, cooldown")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction[VideoBot]) -> None:
        origin = origin_of(interaction)
        standing = await self.service.standing(origin.guild_id, origin.member)
        await interaction.response.send_message(embed=standing_embed(standing), ephemeral=True)

    @app_commands.command(name="usage", description="This server's videos and tokens spent (Manage Server)")
    @app_commands.guild_only()
    @app_commands.describe(days="How many days back, today included (default 7)")
    @app_commands.default_permissions(manage_guild=True)
    async def usage(
        self, interaction: discord.Interaction[VideoBot], days: app_commands.Range[int, 1, 365] = 7
    ) -> None:
        guild_id = require_moderator(interaction)
        summary = await self.service.usage(guild_id, days)
        if self.bot.balance is None:
            await interaction.response.send_message(embed=usage_embed(summary), ephemeral=True)
            return
        # Reading the balance is a request to the API: acknowledge first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        balance = await self.bot.balance.read()
        await interaction.followup.send(embed=usage_embed(summary, balance, balance_known=True), ephemeral=True)


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(ModerationCog(bot))
