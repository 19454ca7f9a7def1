"""What the bot's messages look like: pure functions from generations to Discord content and embeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord

from . import discord_limits
from .catalogue import label_of
from .models import Delivery, Generation, Kind, State

if TYPE_CHECKING:
    from .generations import QueueView
    from .history import HistoryPage

# A history line's link takes at most this much of the embed: longer ones are left to /status.
HISTORY_LINK_LIMIT = 300
# One entry of a /history page: ten of them and the page's header fit in an embed's description.
HISTORY_ENTRY_LIMIT = 390

_TITLES = {
    Kind.GENERATE: "Video generation",
    Kind.EXTEND: "Video extension",
    Kind.EDIT: "Video edit",
    Kind.REFRAME: "Video reframe",
}
_STATE_COLOURS = {
    State.QUEUED: discord.Colour.light_grey(),
    State.CANCELLED: discord.Colour.dark_grey(),
    State.EXPIRED: discord.Colour.dark_grey(),
    State.SUBMITTING: discord.Colour.light_grey(),
    State.RUNNING: discord.Colour.blurple(),
    State.COMPLETED: discord.Colour.green(),
    State.FAILED: discord.Colour.red(),
    State.TIMED_OUT: discord.Colour.orange(),
    State.REJECTED: discord.Colour.red(),
    State.CHECKING: discord.Colour.gold(),
    State.UNCONFIRMED: discord.Colour.orange(),
    State.NOT_RECEIVED: discord.Colour.dark_grey(),
}


def plain(text: str, limit: int) -> str:
    """Member-typed text made inert (no markdown, no mentions) and cut to `limit` characters."""
    return discord_limits.shorten(discord.utils.escape_mentions(discord.utils.escape_markdown(text)), limit)


def _timestamp(epoch: float) -> str:
    return discord.utils.format_dt(datetime.fromtimestamp(epoch, UTC), "R")


# The API's words for a generation it accepted but has not started.
_API_WAITING = frozenset({"pending", "queued"})


def took(seconds: float) -> str:
    """A duration as a member reads it: "45 s", "3 min 20 s", "1 h 5 min"."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(whole // 60, 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")


def progress_text(generation: Generation, ready_at: float | None = None) -> str | None:
    """Where a job stands, in a line that stays true while nobody edits it: times are Discord timestamps, which
    count by themselves in every member's client."""
    state = generation.state
    if state is State.SUBMITTING:
        return "Being sent to the video service."
    if state is State.RUNNING:
        since = _timestamp(generation.submitted_at or generation.sent_at)
        if (generation.api_state or "").lower() in _API_WAITING:
            line = f"Waiting at the video service, sent {since}."
        else:
            line = f"Dreaming, started {since}."
        if ready_at is not None:
            line += f" The video service expects it ready {_timestamp(ready_at)}."
        return line
    if state is State.COMPLETED and generation.finished_at is not None:
        return f"Finished in {took(generation.finished_at - generation.sent_at)}."
    return None


def status_embed(
    generation: Generation, *, note: str | None = None, position: int | None = None, ready_at: float | None = None
) -> discord.Embed:
    """A generation's id, prompt, requester, state, progress and (when finished) its video; a waiting job's place."""
    title = _TITLES[generation.kind]
    embed = discord.Embed(
        title=title,
        description=plain(generation.prompt, discord_limits.EMBED_DESCRIPTION - 200),
        colour=_STATE_COLOURS[generation.state],
    )
    embed.add_field(name="Id", value=f"`{generation.reference}`", inline=False)
    embed.add_field(name="State", value=generation.display_state, inline=True)
    if generation.state is State.QUEUED and position is not None:
        embed.add_field(name="Position in the queue", value=str(position), inline=True)
    progress = progress_text(generation, ready_at)
    if progress is not None:
        embed.add_field(name="Progress", value=progress, inline=False)
    embed.add_field(name="Requested by", value=f"<@{generation.requester_id}>", inline=True)
    embed.add_field(name="Aspect ratio", value=generation.aspect_ratio, inline=True)
    embed.add_field(name="Model", value=label_of(generation.model), inline=True)
    if generation.parent_api_id:
        relation = "Extends" if generation.kind is Kind.EXTEND else "Source"
        embed.add_field(name=relation, value=f"`{generation.parent_api_id}`", inline=False)
    if generation.video_url:
        embed.add_field(name="Video", value=video_link(generation.video_url), inline=False)
    if generation.failure_reason and generation.state is not State.COMPLETED:
        embed.add_field(
            name="Reason", value=plain(generation.failure_reason, discord_limits.EMBED_FIELD_VALUE), inline=False
        )
    if generation.thumbnail_url:
        embed.set_thumbnail(url=generation.thumbnail_url)
    if generation.delivery is Delivery.UNDELIVERABLE:
        embed.add_field(
            name="Delivery",
            value="The announcement could not be posted in the channel nor sent by direct message.",
            inline=False,
        )
    started = _timestamp(generation.created_at)
    embed.add_field(name="Requested", value=started, inline=True)
    where = "sent to you by direct message" if generation.private else "posted in this channel"
    if generation.state is State.RUNNING:
        embed.set_footer(text=f"The video will be {where} when it is ready.")
    if generation.state is State.QUEUED:
        embed.set_footer(
            text=f"Waiting for a free slot: it starts by itself, and the video is {where} when ready. Nothing "
            f"is sent or charged until then; Cancel or /cancel {generation.reference} removes it."
        )
    if note:
        embed.set_footer(text=note)
    return discord_limits.fit_embed(embed)


def video_link(url: str) -> str:
    """A video's link for an embed field: whole, or a plain note when no field could hold it."""
    if len(url) <= discord_limits.EMBED_FIELD_VALUE:
        return url
    return "The link is too long to show here; the announcement of the video carries it."


def history_embed(generations: Sequence[Generation]) -> discord.Embed:
    """A member's latest generations in a server, newest first."""
    embed = discord.Embed(title="Your latest generations", colour=discord.Colour.blurple())
    if not generations:
        embed.description = "You have no generations in this server yet. Start one with `/generate`."
        return embed
    lines = []
    for generation in generations:
        line = f"`{generation.reference}` · **{generation.display_state}** · {_timestamp(generation.created_at)}"
        line += f"\n{plain(generation.prompt, 80)}"
        if generation.video_url and len(generation.video_url) <= HISTORY_LINK_LIMIT:
            line += f"\n{generation.video_url}"
        lines.append(line)
    embed.description = discord_limits.join_within(lines, discord_limits.EMBED_DESCRIPTION, separator="\n\n")
    embed.set_footer(text="/status <id> shows one in full; /extend <id> continues a finished video.")
    return discord_limits.fit_embed(embed)


def short_id(generation: Generation) -> str:
    """The id members see in lists: the start of the API's id, or the job's number before it has one."""
    return generation.api_id[:8] if generation.api_id else f"#{generation.id}"


def history_entry(number: int, generation: Generation) -> str:
    """One video of a /history page: short id, state, requester and when; the prompt's start; the link."""
    head = (
        f"**{number}.** `{short_id(generation)}` · **{generation.display_state}** · <@{generation.requester_id}> · "
        f"{_timestamp(generation.created_at)}\n{plain(generation.prompt, 100)}"
    )
    link = f"\n[Video]({generation.video_url})" if generation.video_url else ""
    if link and len(head) + len(link) > HISTORY_ENTRY_LIMIT:
        link = f"\n(the link is too long for this list: `/status {short_id(generation)}` shows it)"
    return head + link


def history_page_embed(page: HistoryPage) -> discord.Embed:
    """A page of /history: up to ten videos, newest first, and where the page is."""
    lines = []
    if page.own:
        title = "Your videos in this server"
    elif page.requester_id is None:
        title = "Videos of this server"
    else:
        title = "A member's videos in this server"
        lines.append(f"Requested by <@{page.requester_id}>")
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    lines += [history_entry(page.first_number + n, generation) for n, generation in enumerate(page.generations)]
    if not page.generations:
        lines.append("No older videos." if page.page > 1 else "No videos here yet. `/generate` makes one.")
    embed.description = discord_limits.join_within(lines, discord_limits.EMBED_DESCRIPTION, separator="\n\n")
    footer = f"Page {page.page} · newest first · /status <id> shows one in full"
    if page.channels_narrowed:
        footer += " · videos of channels you can't see are left out"
    embed.set_footer(text=footer)
    return discord_limits.fit_embed(embed)


_REQUEST_ENDINGS = {
    State.NOT_RECEIVED: ("never reached the video service", "Trying again is safe."),
    State.EXPIRED: ("was dropped from the queue", "It waited too long."),
    State.UNCONFIRMED: ("may not have been received", "The video service did not confirm the request."),
}


def announcement(generation: Generation, *, by_direct_message: bool = False) -> str:
    """The message that tells a requester how their generation ended; it carries the id for de-duplication."""
    mention = f"<@{generation.requester_id}>"
    where = f" (asked in <#{generation.channel_id}>)" if by_direct_message else ""
    reference = f"`{generation.reference}`"
    prompt = plain(generation.prompt, 300)
    if generation.state is State.COMPLETED:
        head = f"{mention} your video is ready{where}: **{prompt}**\nGeneration {reference} · `/extend` continues it."
        body = f"\n{generation.video_url}" if generation.video_url else ""
    elif generation.state is State.FAILED:
        reason = plain(generation.failure_reason or "no reason given", 500)
        head = f"{mention} your video could not be made{where}: {reason}\nGeneration {reference} · **{prompt}**"
        body = "\nIt does not count toward your daily limit: you can try again, perhaps with other words."
    elif generation.state is State.CHECKING:
        # No backticked reference: the announcement that follows must not be mistaken for this notice.
        reason = plain(generation.failure_reason or "The bot is checking whether the video service got it.", 800)
        head = f"{mention} {reason}{where}\n"
        body = f"Request #{generation.id} · **{prompt}**"
    elif generation.state is State.REJECTED:
        reason = plain(generation.failure_reason or "no reason given", 500)
        head = f"{mention} the video service refused your queued request{where}: {reason}\n"
        body = f"Request {reference} · **{prompt}** · nothing was charged."
    elif generation.state is State.TIMED_OUT:
        reason = plain(generation.failure_reason or "It took too long.", 300)
        head = f"{mention} your video is late{where}. {reason}\nGeneration {reference} · **{prompt}**"
        body = f"\n`/status {generation.reference}` can still show it if it finishes later."
    else:
        # Requests that ended without a video: never received, dropped from the queue, or unconfirmed.
        what, default_reason = _REQUEST_ENDINGS.get(generation.state, _REQUEST_ENDINGS[State.UNCONFIRMED])
        reason = plain(generation.failure_reason or default_reason, 500)
        head = f"{mention} your video request {what}{where}. {reason}\n"
        body = f"Request {reference} · **{prompt}**"
    # The body holds the video link: cut the head, never the link.
    return discord_limits.content_keeping_tail(head, body)


@dataclass(frozen=True)
class CommandHelp:
    """One command as /help shows it: how to call it, what it does, and whether it is for moderators."""

    usage: str
    description: str
    for_moderators: bool = False


HELP_INTRO = (
    "This bot turns the channel into a video studio. Describe a video with `/generate`: the bot answers at once "
    "and posts the video here when it is ready, pinging only you. Every video costs the bot's operator, so this "
    "server's limits apply (`/quota` shows where you stand). Lists and settings, like this help, are shown to you "
    "only."
)


def help_embed(commands: Sequence[CommandHelp], *, moderator: bool, note: str | None = None) -> discord.Embed:
    """/help: what the bot does and the commands the caller may use; the moderators' part only for moderators."""
    embed = discord.Embed(title="Making videos with this bot", description=HELP_INTRO, colour=discord.Colour.blurple())
    if note:
        embed.description = f"{HELP_INTRO}\n\n**Here:** {note}"
    members = [f"`{c.usage}` — {c.description}" for c in commands if not c.for_moderators]
    _add_lines(embed, "Commands", members)
    if moderator:
        moderators = [f"`{c.usage}` — {c.description}" for c in commands if c.for_moderators]
        _add_lines(embed, "For moderators (Manage Server)", moderators)
    embed.set_footer(text="Ids: the short ones shown in lists work everywhere an id is asked for.")
    return discord_limits.fit_embed(embed)


def _add_lines(embed: discord.Embed, title: str, lines: Sequence[str]) -> None:
    """Lines spread over as many fields as they need, each line whole."""
    field: list[str] = []
    for line in lines:
        line = discord_limits.shorten(line, discord_limits.EMBED_FIELD_VALUE)
        if field and len("\n".join([*field, line])) > discord_limits.EMBED_FIELD_VALUE:
            embed.add_field(name=title, value="\n".join(field), inline=False)
            title, field = "\u200b", []
        field.append(line)
    if field:
        embed.add_field(name=title, value="\n".join(field), inline=False)


def _running_line(running: int, cap: int) -> str:
    return f"{running} of {cap}" if cap else f"{running} (no cap)"


def queue_embed(view: QueueView) -> discord.Embed:
    """/queue: running now against the caps, how many wait, and the waiting jobs the caller may see."""
    embed = discord.Embed(title="The video queue", colour=discord.Colour.blurple())
    embed.add_field(name="Running in this server", value=_running_line(view.running_here, view.server_cap))
    embed.add_field(name="Running for all servers", value=_running_line(view.running_everywhere, view.max_running))
    embed.add_field(name="Waiting", value=f"{view.waiting_here} here, {view.waiting_everywhere} in all")
    lines = []
    for place, job in view.jobs:
        who = f" · <@{job.requester_id}>" if view.shows_everyone else ""
        when = _timestamp(job.queued_at or job.created_at)
        lines.append(f"**{place}.** `{job.reference}`{who} · {when}\n{plain(job.prompt, 80)}")
    title = "Waiting jobs of this server" if view.shows_everyone else "Your waiting jobs"
    nothing = "none" if view.shows_everyone else "none: your videos start at once, or are running"
    shown = discord_limits.join_within(lines, discord_limits.EMBED_FIELD_VALUE)
    embed.add_field(name=title, value=shown or nothing, inline=False)
    embed.set_footer(
        text="Places count across all servers, in the order of turns (an estimate: a job held by its server's cap or "
        "waiting after a busy answer lets others pass). /cancel <id> removes a waiting job."
    )
    return discord_limits.fit_embed(embed)


def autocomplete_label(generation: Generation) -> str:
    """One autocomplete choice: short id, state and the start of the prompt, within Discord's 100 characters."""
    short_id = (generation.api_id or "")[:8]
    return discord_limits.choice_name(f"{short_id} · {generation.display_state} · {generation.prompt}")
