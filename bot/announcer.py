"""The Discord side of announcements: post in the channel, fall back to a DM, never ping anyone else."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import discord

from .kept_video import KeptVideo, VideoKeeper
from .messages import announcement
from .models import Delivery, Generation, State
from .pacing import ANNOUNCEMENTS_PER_SECOND, Pace
from .result_messages import dm_closed_text, private_ready_text, result_embed

log = logging.getLogger(__name__)

# How far back in a channel an earlier announcement is looked for after a restart.
HISTORY_SEARCH_LIMIT = 200
# Discord's answers that refuse a part of a message for good: no permission (to attach files, or to read the history a
# reply needs), or a file over the upload limit. The message goes again without that part.
_PART_REFUSED = (403, 413)
# Discord accepts an interaction's follow-ups for 15 minutes; a margin keeps a send from racing the expiry.
INTERACTION_TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_SAFETY_MARGIN = timedelta(seconds=30)

# The buttons of a result (set by cogs.results); `private_copy`: the requester's own copy, sent by DM.
ResultView = Callable[[Generation, bool], discord.ui.View | None]


def _no_buttons(generation: Generation, private_copy: bool) -> discord.ui.View | None:
    return None


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


class PrivateAnswers:
    """The answers of private commands while Discord still accepts follow-ups to them: the one way left to reach a
    requester whose DMs are closed. Kept in memory only: a token is a credential, and it is dead within 15 minutes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_row: dict[int, tuple[discord.Webhook, float]] = {}

    def remember(self, row_id: int, interaction: discord.Interaction[Any]) -> None:
        usable_until = interaction.created_at + INTERACTION_TOKEN_LIFETIME - TOKEN_SAFETY_MARGIN
        self._forget_expired()
        self._by_row[row_id] = (interaction.followup, usable_until.timestamp())

    def followup(self, row_id: int) -> discord.Webhook | None:
        """The follow-up webhook of the command that asked for this row, while its token lives."""
        self._forget_expired()
        entry = self._by_row.get(row_id)
        return entry[0] if entry is not None else None

    def forget(self, row_id: int) -> None:
        self._by_row.pop(row_id, None)

    def _forget_expired(self) -> None:
        now = self._clock()
        for row_id in [row for row, (_, until) in self._by_row.items() if until <= now]:
            del self._by_row[row_id]


class DiscordAnnouncer:
    """Posts the outcome of a generation where it was asked for, or by DM when the channel is closed; where the server
    keeps videos, the post carries the video file itself. A private one goes by DM only."""

    def __init__(
        self,
        client: discord.Client,
        keeper: VideoKeeper | None = None,
        pace: Pace | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keeper = keeper
        # Many videos ending at once must not take the bot past Discord's global limit.
        self._pace = pace or Pace(ANNOUNCEMENTS_PER_SECOND)
        self.result_view: ResultView = _no_buttons
        self.private_answers = PrivateAnswers(clock)

    def _card(self, generation: Generation, view: discord.ui.View | None) -> dict[str, Any]:
        """A result's embed and buttons; the notice that the bot is still checking carries neither."""
        if generation.state is State.CHECKING:
            return {}
        card: dict[str, Any] = {"embed": result_embed(generation)}
        if view is not None:
            card["view"] = view
        return card

    async def announce(self, generation: Generation) -> Delivery | None:
        if generation.private:
            return await self._announce_privately(generation)
        kept = await self._keeper.file_for(generation) if self._keeper is not None else None
        try:
            return await self._announce(generation, kept)
        finally:
            if kept is not None:
                kept.close()

    async def _announce(self, generation: Generation, kept: KeptVideo | None) -> Delivery | None:
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
            await self._post_as_allowed(channel, generation, reference, kept)
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

    async def _post_as_allowed(
        self,
        channel: discord.PartialMessageable,
        generation: Generation,
        reference: discord.MessageReference | None,
        kept: KeptVideo | None,
    ) -> None:
        """Post with the video file and as a reply; each part Discord refuses for good is dropped in turn (the file
        first, then the reply), so that the announcement itself gets through. A refused post made no message, so
        the next one, with the same nonce, is not a repeat."""
        ways: list[tuple[discord.MessageReference | None, KeptVideo | None]] = [(reference, kept)]
        if kept is not None and reference is not None:
            ways.append((reference, None))
        if kept is not None or reference is not None:
            ways.append((None, None))
        for number, (replying_to, file) in enumerate(ways, start=1):
            try:
                await self._post(channel, generation, replying_to, file)
                return
            except discord.HTTPException as error:
                if error.status not in _PART_REFUSED or number == len(ways):
                    raise
                dropped = "the video file" if file is not None else "the reply"
                log.info(
                    "Discord refused row %d's announcement (%s): posting it without %s", generation.id, error, dropped
                )

    async def _post(
        self,
        channel: discord.PartialMessageable,
        generation: Generation,
        reference: discord.MessageReference | None,
        kept: KeptVideo | None,
    ) -> None:
        content = announcement(generation)
        files: list[discord.File] = discord.utils.MISSING
        if kept is not None:
            files = [discord.File(cast(io.BufferedIOBase, kept.file), filename=kept.filename)]
            if generation.video_url:
                # The file plays inline; the provider's link stays in the words, without a second player.
                content = content.replace(generation.video_url, f"<{generation.video_url}>")
        await self._pace.turn()
        await channel.send(
            content,
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=requester_only(generation),
            nonce=announcement_nonce(generation),
            files=files,
            **self._card(generation, self.result_view(generation, False)),
        )

    async def _direct_message(self, generation: Generation) -> Delivery | None:
        try:
            dm = await self._client.create_dm(discord.Object(generation.requester_id))
            await self._pace.turn()
            # The buttons work on the server's message only: a DM in place of the channel carries none.
            await dm.send(
                announcement(generation, by_direct_message=True),
                allowed_mentions=requester_only(generation),
                nonce=announcement_nonce(generation),
                **self._card(generation, None),
            )
            return Delivery.DIRECT_MESSAGE
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            if _is_passing(error):
                log.warning("Announcing row %d by DM failed for now: %s", generation.id, error)
                return None
            log.warning("Row %d is undeliverable: the requester's DMs are closed too (%s)", generation.id, error)
            return Delivery.UNDELIVERABLE

    async def _announce_privately(self, generation: Generation) -> Delivery | None:
        """A private result goes to its requester by DM with its Share button, never to the channel. With their DMs
        closed, they are told in their command's ephemeral answer while its token lives; after that, the log says so."""
        try:
            dm = await self._client.create_dm(discord.Object(generation.requester_id))
            await self._pace.turn()
            await dm.send(
                private_ready_text(generation),
                allowed_mentions=requester_only(generation),
                nonce=announcement_nonce(generation),
                **self._card(generation, self.result_view(generation, True)),
            )
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            if _is_passing(error):
                log.warning("Sending private row %d by DM failed for now: %s", generation.id, error)
                return None
            return await self._answer_privately(generation, error)
        if generation.state.is_final:
            self.private_answers.forget(generation.id)
        return Delivery.DIRECT_MESSAGE

    async def _answer_privately(self, generation: Generation, dm_error: BaseException) -> Delivery | None:
        followup = self.private_answers.followup(generation.id)
        if followup is not None:
            try:
                await self._pace.turn()
                await followup.send(
                    dm_closed_text(generation),
                    ephemeral=True,
                    allowed_mentions=discord.AllowedMentions.none(),
                    **self._card(generation, self.result_view(generation, True)),
                )
            except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
                if _is_passing(error):
                    log.warning("Answering private row %d ephemerally failed for now: %s", generation.id, error)
                    return None
                log.info("Discord refused the answer of private row %d's command: %s", generation.id, error)
                self.private_answers.forget(generation.id)
            else:
                log.info(
                    "Private row %d: the requester's DMs are closed; told in their command's answer", generation.id
                )
                return Delivery.EPHEMERAL
        log.warning(
            "Private row %d could not be sent by DM (%s), and its command's answer has expired: the requester "
            "finds it with /status %s",
            generation.id,
            dm_error,
            generation.reference,
        )
        return Delivery.UNDELIVERABLE

    async def find_announcement(self, generation: Generation) -> Delivery | None:
        """Look in the channel, then the DM, for a message of ours that names this generation."""
        marker = f"`{generation.reference}`"
        try:
            # A private result never goes to the channel: only its DM can hold it.
            channel = self._client.get_partial_messageable(generation.channel_id, guild_id=generation.guild_id)
            if not generation.private and await self._history_has(channel, marker, generation):
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
