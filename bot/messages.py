"""What the bot's messages look like: pure functions from generations to Discord content and embeds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord

from .catalogue import label_of
from .models import Delivery, Generation, Kind, State

if TYPE_CHECKING:
    from .generations import QueueView

CONTENT_LIMIT = 2000
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELD_LIMIT = 1024
AUTOCOMPLETE_NAME_LIMIT = 100

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
    escaped = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    if len(escaped) <= limit:
        return escaped
    return escaped[: limit - 1].rstrip("\\") + "…"


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
        description=plain(generation.prompt, EMBED_DESCRIPTION_LIMIT - 200),
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
        embed.add_field(name="Video", value=generation.video_url[:EMBED_FIELD_LIMIT], inline=False)
    if generation.failure_reason and generation.state is not State.COMPLETED:
        embed.add_field(name="Reason", value=plain(generation.failure_reason, EMBED_FIELD_LIMIT), inline=False)
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
    if generation.state is State.RUNNING:
        embed.set_footer(text="The video will be posted in this channel when it is ready.")
    if generation.state is State.QUEUED:
        embed.set_footer(
            text="Waiting for a free slot: it starts by itself, and the video is posted here when ready. Nothing "
            f"is sent or charged until then; Cancel or /cancel {generation.reference} removes it."
        )
    if note:
        embed.set_footer(text=note)
    return embed


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
        if generation.video_url:
            line += f"\n{generation.video_url}"
        lines.append(line)
    embed.description = "\n\n".join(lines)[:EMBED_DESCRIPTION_LIMIT]
    embed.set_footer(text="/status <id> shows one in full; /extend <id> continues a finished video.")
    return embed


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
    return head[: CONTENT_LIMIT - len(body)] + body


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
        lines.append(f"**{place}.** `{job.reference}`{who} · {_timestamp(job.queued_at or job.created_at)}")
        lines.append(plain(job.prompt, 80))
    title = "Waiting jobs of this server" if view.shows_everyone else "Your waiting jobs"
    nothing = "none" if view.shows_everyone else "none: your videos start at once, or are running"
    embed.add_field(name=title, value="\n".join(lines)[:EMBED_FIELD_LIMIT] or nothing, inline=False)
    embed.set_footer(
        text="Places count across all servers, in the order of turns (an estimate: a job held by its server's cap or "
        "waiting after a busy answer lets others pass). /cancel <id> removes a waiting job."
    )
    return embed


def autocomplete_label(generation: Generation) -> str:
    """One autocomplete choice: short id, state and the start of the prompt, within Discord's 100 characters."""
    short_id = (generation.api_id or "")[:8]
    label = f"{short_id} · {generation.display_state} · {generation.prompt}"
    return label if len(label) <= AUTOCOMPLETE_NAME_LIMIT else label[: AUTOCOMPLETE_NAME_LIMIT - 1] + "…"
