"""The Discord side of live progress: a status message edited in its channel with the bot's own token.

The interaction that posted a status message can edit it for 15 minutes only; videos and queues take longer, so every
edit goes through the channel (channel id and message id), which works for the whole life of the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
import discord

from .messages import status_embed
from .models import Generation
from .progress import GONE, SHOWN, EditOutcome, EditResult, StatusView

log = logging.getLogger(__name__)

# Discord's answer when a body it refuses would be refused again: nothing to gain by sending it later.
_FOR_GOOD = (400, 403, 404)


def _no_buttons(generation: Generation) -> discord.ui.View | None:
    return None


class DiscordStatusEditor:
    """Edits a generation's status message to show where it stands; says whether to try again."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client
        # The buttons a status message carries in each state (a waiting job's Cancel); set by the cog that owns them.
        self.buttons: Callable[[Generation], discord.ui.View | None] = _no_buttons

    async def edit(self, generation: Generation, view: StatusView) -> EditResult:
        if generation.status_message_id is None:
            return GONE
        channel = self._client.get_partial_messageable(generation.channel_id, guild_id=generation.guild_id)
        message = channel.get_partial_message(generation.status_message_id)
        embed = status_embed(generation, position=view.position, ready_at=view.ready_at)
        try:
            await message.edit(embed=embed, view=self.buttons(generation))
        except discord.RateLimited as limited:
            return EditResult(EditOutcome.LATER, retry_after=limited.retry_after)
        except discord.HTTPException as error:
            return _result_of(generation, error)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("Could not reach Discord to edit the status message of row %d: %s", generation.id, error)
            return EditResult(EditOutcome.LATER)
        return SHOWN


def _result_of(generation: Generation, error: discord.HTTPException) -> EditResult:
    if error.status == 429:
        # discord.py waited and retried already; the rest of the wait is ours.
        retry_after = _retry_after(error)
        return EditResult(EditOutcome.LATER, retry_after=retry_after, everywhere=_is_global(error))
    if error.status in _FOR_GOOD:
        log.info("The status message of row %d can't be edited (%s): it is left as it is", generation.id, error)
        return GONE
    log.info("Discord refused to edit the status message of row %d for now: %s", generation.id, error)
    return EditResult(EditOutcome.LATER)


def _retry_after(error: discord.HTTPException) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return float(headers[name])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _is_global(error: discord.HTTPException) -> bool:
    headers = getattr(error.response, "headers", None) or {}
    return str(headers.get("X-RateLimit-Global", "")).lower() == "true"
