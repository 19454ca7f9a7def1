"""Who may press a finished result's buttons, and which buttons a result carries: pure rules, no Discord."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .models import Generation, State


class ResultAction(StrEnum):
    """The buttons of a finished result; the value is what the button's custom id carries."""

    EXTEND = "extend"
    REROLL = "reroll"
    REFRESH = "refresh"
    # On a privately delivered video: post it to the channel it was asked from.
    SHARE = "share"


# Results that ended without a video and without a charge: asking again is safe, so they offer "Try again".
RETRYABLE = frozenset({State.FAILED, State.REJECTED, State.NOT_RECEIVED, State.EXPIRED})


@dataclass(frozen=True)
class Presser:
    """Who pressed, and where: `guild_id` is None for a press in a direct message."""

    user_id: int
    guild_id: int | None
    is_moderator: bool = False


def result_actions(generation: Generation, *, private_copy: bool = False) -> tuple[ResultAction, ...]:
    """The buttons a result carries. A finished video: Extend, Re-roll, Refresh; one that ended without a video and
    without a charge: Re-roll (as "Try again"); a late one: Refresh, which shows it if it finished after all. Nothing
    that invites a new request while a paid video may still arrive. A private copy (the requester's DM) has Share."""
    if private_copy:
        return (ResultAction.SHARE,) if generation.state is State.COMPLETED and generation.video_url else ()
    if generation.state is State.COMPLETED:
        return (ResultAction.EXTEND, ResultAction.REROLL, ResultAction.REFRESH)
    if generation.state in RETRYABLE:
        return (ResultAction.REROLL,)
    if generation.state is State.TIMED_OUT and generation.api_id is not None:
        return (ResultAction.REFRESH,)
    return ()


def press_refusal(
    action: ResultAction, generation: Generation, presser: Presser, *, members_share_videos: bool
) -> str | None:
    """Why this member may not press this button on this result, in a member's words; None when they may.

    The requester and the server's moderators always may; other members as the server's sharing setting says. Share
    is the requester's alone. A press never reaches a generation of another server."""
    if presser.guild_id is None:
        if action is not ResultAction.SHARE:
            return "This button works on the video's message in its server."
    elif presser.guild_id != generation.guild_id:
        return f"No generation `#{generation.id}` was found in this server."
    own = presser.user_id == generation.requester_id
    if action is ResultAction.SHARE:
        return None if own else "Only the member who asked for this video can share it."
    if own or presser.is_moderator or members_share_videos:
        return None
    return (
        f"This video was asked for by <@{generation.requester_id}>, and this server lets members use only their own "
        "videos' buttons. They or a moderator (Manage Server) can."
    )
