"""What a finished result looks like: its embed, and the texts of re-posting, sharing and private delivery."""

from __future__ import annotations

import discord

from . import discord_limits
from .catalogue import label_of
from .messages import announcement, plain, short_id, took
from .models import Generation, Kind, State

# The prompt is the card's description; the rest of the card needs far less than what this leaves of the 6000.
PROMPT_IN_CARD = discord_limits.EMBED_DESCRIPTION // 2

_RESULT_TITLES = {
    Kind.GENERATE: "Video",
    Kind.EXTEND: "Extended video",
    Kind.EDIT: "Edited video",
    Kind.REFRAME: "Reframed video",
}
_RESULT_COLOURS = {
    State.COMPLETED: discord.Colour.green(),
    State.TIMED_OUT: discord.Colour.orange(),
    State.UNCONFIRMED: discord.Colour.orange(),
}


def time_taken(generation: Generation) -> str | None:
    """From the moment its request left for the video service to the moment it finished; None if it never left."""
    if generation.finished_at is None or generation.api_id is None:
        return None
    return took(generation.finished_at - generation.sent_at)


def result_embed(generation: Generation) -> discord.Embed:
    """A result's card: the prompt, who asked, aspect ratio, model, what it continues, time taken, a short id and
    the thumbnail when the video service gave one."""
    title = _RESULT_TITLES[generation.kind]
    if generation.state is not State.COMPLETED:
        title += f" · {generation.state.label}"
    embed = discord.Embed(
        title=title,
        description=plain(generation.prompt, PROMPT_IN_CARD),
        colour=_RESULT_COLOURS.get(generation.state, discord.Colour.red()),
    )
    embed.add_field(name="Requested by", value=f"<@{generation.requester_id}>", inline=True)
    embed.add_field(name="Aspect ratio", value=generation.aspect_ratio, inline=True)
    embed.add_field(name="Model", value=label_of(generation.model), inline=True)
    if generation.parent_api_id:
        relation = "Extends" if generation.kind is Kind.EXTEND else "Made from"
        embed.add_field(name=relation, value=f"`{generation.parent_api_id}`", inline=False)
    taken = time_taken(generation)
    if taken is not None and generation.state is State.COMPLETED:
        embed.add_field(name="Time taken", value=taken, inline=True)
    embed.add_field(name="Id", value=f"`{short_id(generation)}`", inline=True)
    if generation.failure_reason and generation.state is not State.COMPLETED:
        embed.add_field(
            name="Reason", value=plain(generation.failure_reason, discord_limits.EMBED_FIELD_VALUE), inline=False
        )
    if generation.thumbnail_url:
        embed.set_thumbnail(url=generation.thumbnail_url)
    return discord_limits.fit_embed(embed)


def _with_link(head: str, generation: Generation) -> str:
    """`head` cut to fit, then the video link whole on its own line (Discord plays it inline)."""
    return discord_limits.content_keeping_tail(head, f"\n{generation.video_url}" if generation.video_url else "")


def shown_again_text(generation: Generation, shown_by: int) -> str:
    """/show: a finished video posted again. Mentions name people without pinging (the message allows none), and
    the full id is left out so that a restart's search for an earlier announcement never mistakes this post for one."""
    who = "" if shown_by == generation.requester_id else f", shown again by <@{shown_by}>"
    return _with_link(f"A video by <@{generation.requester_id}>{who}: **{plain(generation.prompt, 300)}**", generation)


def shared_text(generation: Generation) -> str:
    """Share: a privately delivered video posted by its requester to the channel it was asked from."""
    return _with_link(f"<@{generation.requester_id}> shared a video: **{plain(generation.prompt, 300)}**", generation)


def private_ready_text(generation: Generation) -> str:
    """The requester's DM carrying a private result; the backticked id lets a restart find it again."""
    if generation.state is not State.COMPLETED:
        return announcement(generation, by_direct_message=True)
    head = (
        f"<@{generation.requester_id}> your private video is ready (asked in <#{generation.channel_id}>): "
        f"**{plain(generation.prompt, 300)}**\nGeneration `{generation.reference}` · only you see it here; **Share** "
        "posts it in that channel."
    )
    return _with_link(head, generation)


def dm_closed_text(generation: Generation) -> str:
    """Told to the requester of a private request, in their command's ephemeral answer, when their DMs are closed."""
    note = (
        "Your DMs are closed to this bot, so this is shown here, to you only, for now. "
        f"Later, `/status {generation.reference}` or `/history` shows it again."
    )
    if generation.state is State.COMPLETED:
        return _with_link(f"{note}\nYour private video is ready: **{plain(generation.prompt, 300)}**", generation)
    return discord_limits.content(f"{note}\n{announcement(generation)}")
