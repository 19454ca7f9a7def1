"""The Discord side of announcements: post in the channel, fall back to a DM, never ping anyone else."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import aiohttp
import discord

from .messages import announcement
from .models import Delivery, Generation, State

log = logging.getLogger(__name__)

# How far back in a channel an earlier announcement is looked for after a restart.
HISTORY_SEARCH_LIMIT = 200


def announcement_nonce(generation: Generation) -> str:
    """Discord drops a second message with the same nonce from the same author for a few minutes."""
    # The notice that a lost create is being looked for comes before the announcement: it must not block it.
    if generation.state is State.CHECKING:
        return f"checking-{generation.id}"
    # With the id it ended with: a request adopted after a first announcement must not be dropped as its repeat.
    return f"video-{generation.id}" + (f"-{generation.api_id[:8]}" if generation.api_id else "")


def requester_only(generation: Generation) -> discord.AllowedMentions:
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(generation.requester_id)], replied_user=False
    )


def _is_passing(error: BaseException) -> bool:
    """Errors worth trying again next cycle rather than routing around."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(error, aiohttp.ClientError | TimeoutError)


class DiscordAnnouncer:
    """Posts the outcome of a generation where it was asked for, or by DM when the channel is closed."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client

    async def announce(self, generation: Generation) -> Delivery | None:
        channel = self._client.get_partial_messageable(generation.channel_id, guild_id=generation.guild_id)
        reference = None
        if generation.status_message_id is not None:
            reference = discord.MessageReference(
                message_id=generation.status_message_id,
                channel_id=generation.channel_id,
                guild_id=generation.guild_id,
                fail_if_not_exists=False,
            )
        try:
            try:
                await self._post(channel, generation, reference)
            except discord.Forbidden:
                if reference is None:
                    raise
                # Replying needs Read Message History; a plain message may still be allowed.
                await self._post(channel, generation, None)
            return Delivery.CHANNEL
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            if _is_passing(error):
                log.warning("Announcing row %d in its channel failed for now: %s", generation.id, error)
                return None
            log.warning(
                "Cannot post in channel %d (%s): sending row %d to the requester by DM",
                generation.channel_id,
                error,
                generation.id,
            )
        return await self._direct_message(generation)

    async def _post(
        self,
        channel: discord.PartialMessageable,
        generation: Generation,
        reference: discord.MessageReference | None,
    ) -> None:
        await channel.send(
            announcement(generation),
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=requester_only(generation),
            nonce=announcement_nonce(generation),
        )

    async def _direct_message(self, generation: Generation) -> Delivery | None:
        try:
            dm = await self._client.create_dm(discord.Object(generation.requester_id))
            await dm.send(
                announcement(generation, by_direct_message=True),
                allowed_mentions=requester_only(generation),
                nonce=announcement_nonce(generation),
            )
            return Delivery.DIRECT_MESSAGE
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            if _is_passing(error):
                log.warning("Announcing row %d by DM failed for now: %s", generation.id, error)
                return None
            log.warning("Row %d is undeliverable: the requester's DMs are closed too (%s)", generation.id, error)
            return Delivery.UNDELIVERABLE

    async def find_announcement(self, generation: Generation) -> Delivery | None:
        """Look in the channel, then the DM, for a message of ours that names this generation."""
        marker = f"`{generation.reference}`"
        try:
            channel = self._client.get_partial_messageable(generation.channel_id, guild_id=generation.guild_id)
            if await self._history_has(channel, marker, generation):
                return Delivery.CHANNEL
        except discord.HTTPException as error:
            log.info("Cannot read channel %d to check an earlier announcement: %s", generation.channel_id, error)
        try:
            dm = await self._client.create_dm(discord.Object(generation.requester_id))
            if await self._history_has(dm, marker, generation):
                return Delivery.DIRECT_MESSAGE
        except discord.HTTPException as error:
            log.info("Cannot read the DM of row %d to check an earlier announcement: %s", generation.id, error)
        return None

    async def _history_has(self, channel: discord.abc.Messageable, marker: str, generation: Generation) -> bool:
        me = self._client.user
        # An earlier attempt was sent after it was claimed: search from then, newest first.
        since = (generation.announce_claimed_at or generation.created_at) - 5
        after = discord.Object(discord.utils.time_snowflake(datetime.fromtimestamp(since, UTC)))
        async for message in channel.history(limit=HISTORY_SEARCH_LIMIT, after=after, oldest_first=False):
            if me is not None and message.author.id == me.id and marker in message.content:
                return True
        return False
