"""The bot class and its command tree: wiring only, everything it uses is built outside and passed in."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from . import discord_limits
from .announcer import DiscordAnnouncer
from .api_client import VideoApiError
from .balance import BalanceService
from .config import Settings
from .errors import UserFacingError
from .generations import GenerationService, VideoApi
from .history import HistoryService
from .kept_video import VideoDownloader, VideoKeeper
from .metrics import BotMetrics, TimedAnnouncer
from .model_choice import ModelChoice
from .moderation import ModerationService
from .pacing import ANNOUNCEMENTS_PER_SECOND, Pace, share_of
from .progress import GLOBAL_EDITS, ProgressBoard, QueuePlaces
from .queue import QueueRunner
from .reconcile import CheckSchedule, Reconciler
from .results import ResultService
from .sharing import QUEUE_BOARD_JOB, lease_holder
from .startup import silence_voice_warnings
from .status_messages import DiscordStatusEditor
from .storage import GenerationStore, StorageUnavailable
from .tracker import Announcer, Tracker

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = (
    "cogs.generation",
    "cogs.transforms",
    "cogs.moderation",
    "cogs.queue",
    "cogs.history",
    "cogs.help",
    "cogs.results",
)
COMMANDS_HASH_KEY = "commands_hash"
# How long a shutdown waits for create requests under way (SIGTERM must end the bot within 5 seconds).
SHUTDOWN_GRACE_SECONDS = 2.5


def error_id() -> str:
    """A short id that ties an apology shown to a member to the full error in the log."""
    return secrets.token_hex(4)


def message_for_error(error: BaseException) -> str | None:
    """The plain-words answer for errors a member should see explained; None for unexpected ones."""
    if isinstance(error, UserFacingError):
        return error.message
    if isinstance(error, VideoApiError):
        return error.user_message
    if isinstance(error, StorageUnavailable):
        return "The bot can't reach its database right now, so nothing was changed. Please try again in a few minutes."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in servers, not in direct messages."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} seconds."
    if isinstance(error, app_commands.MissingPermissions | app_commands.CheckFailure):
        return str(error) or "You are not allowed to use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"That value isn't valid here: {error}"
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "This command has changed since Discord last loaded it. Please try again in a minute."
    return None


async def answer_privately(interaction: discord.Interaction, message: str) -> None:
    """Send an ephemeral answer whether or not the interaction was acknowledged already."""
    message = discord_limits.content(message)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
    except discord.HTTPException as error:
        log.warning("Could not send an error answer for interaction %s: %s", interaction.id, error)


async def answer_failure(interaction: discord.Interaction, cause: BaseException, what: str) -> None:
    """Answer a command or a press that failed: in plain words when the member should know why, else with an
    apology whose id ties it to the full error in the log."""
    message = message_for_error(cause)
    if message is None:
        incident = error_id()
        log.error("%s failed [error %s]", what, incident, exc_info=cause)
        message = (
            f"Something went wrong on our side (error `{incident}`). Nothing is ever sent or charged twice: "
            "if a video was started, it is still posted here when ready, and `/status` lists your requests. "
            "Tell the server's moderators if this keeps happening."
        )
    elif isinstance(cause, VideoApiError):
        log.warning("%s failed on the video API: %s", what, cause)
    await answer_privately(interaction, message)


def command_name(interaction: discord.Interaction[VideoBot]) -> str:
    return interaction.command.qualified_name if interaction.command else "unknown"


class VideoCommandTree(app_commands.CommandTree["VideoBot"]):
    """The one error handler for every slash command."""

    async def interaction_check(self, interaction: discord.Interaction[VideoBot], /) -> bool:
        # The first thing the tree does with a command: the acknowledgement latency counts from here.
        if interaction.client.metrics is not None and interaction.type is discord.InteractionType.application_command:
            interaction.client.metrics.interaction_received(interaction.id)
        return True

    async def on_error(self, interaction: discord.Interaction[VideoBot], error: app_commands.AppCommandError) -> None:
        cause: BaseException = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        message = message_for_error(cause)
        if interaction.client.metrics is not None:
            outcome = "error" if message is None else "api_error" if isinstance(cause, VideoApiError) else "refused"
            interaction.client.metrics.command_finished(command_name(interaction), outcome)
        await answer_failure(interaction, cause, f"Command /{command_name(interaction)}")


class VideoBot(commands.AutoShardedBot):
    """Owns the tracker and the command tree; the settings, storage and API client are given to it.

    Sharded: one process runs the shards the settings name (all that Discord recommends by default). Everything
    that may concern a server of another process's shards (announcements, edits of status messages) goes through
    REST with partial messageables, never through the gateway's cache."""

    def __init__(
        self,
        settings: Settings,
        store: GenerationStore,
        api: VideoApi,
        balance: BalanceService | None = None,
        metrics: BotMetrics | None = None,
        downloader: VideoDownloader | None = None,
    ) -> None:
        silence_voice_warnings()
        # Timings and 429s of discord.py's own requests, when metrics are on; the shards of this process, if named.
        options: dict[str, Any] = {"http_trace": metrics.discord_trace()} if metrics is not None else {}
        if settings.shard_ids is not None:
            options["shard_ids"] = list(settings.shard_ids)
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=VideoCommandTree,
            help_command=None,
            # Nothing the bot says may ping anyone unless a message says so itself (announcements allow the
            # requester only), whatever a prompt contains.
            allowed_mentions=discord.AllowedMentions.none(),
            # Videos, limits and history belong to a server: no command is offered in DMs or to user installs.
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            shard_count=settings.shard_count,
            **options,
        )
        self.settings = settings
        self.metrics = metrics
        self._model_check: asyncio.Task[object] | None = None
        # Kept by the gateway events below, for the heartbeat.
        self.connected_to_discord = False
        self.store = store
        self.api = api
        self.moderation = ModerationService(
            store, settings.default_limits, global_daily=settings.global_daily_limit, models=settings.luma_models
        )
        self.balance = balance
        schedule = CheckSchedule(
            first_check_seconds=settings.reconcile_first_check_seconds,
            window_seconds=settings.reconcile_window_minutes * 60,
        )
        self.generations = GenerationService(
            store,
            api,
            moderation=self.moderation,
            balance=balance,
            check_schedule=schedule,
            models=ModelChoice(settings.luma_models),
            max_running=settings.max_running_generations,
        )
        self.results = ResultService(store, api, self.generations, self.moderation)
        self.history = HistoryService(store, self.moderation.rules)
        # Status messages are edited at the board's pace; the buttons they carry are set by cogs.queue.
        self.status_editor = DiscordStatusEditor(self)
        # Discord's limits are per bot: a process running part of the shards paces itself to its part.
        self.progress = ProgressBoard(
            store, self.status_editor, global_edits=share_of(GLOBAL_EDITS, settings.discord_share)
        )
        self.queue_runner = QueueRunner(
            store,
            self.generations,
            self.moderation.rules,
            max_running=settings.max_running_generations,
            timeout_seconds=settings.queue_timeout_seconds,
            board=QueuePlaces(self.progress),
            edit_interval=0.0,  # the board paces the edits
            shows_positions=lease_holder(store, QUEUE_BOARD_JOB, settings.poll_interval_seconds),
        )
        self.generations.wake_queue = self.queue_runner.wake
        keeper = VideoKeeper(downloader, self._keeps_videos) if downloader is not None else None
        self.announcer = DiscordAnnouncer(
            self, keeper, pace=Pace(share_of(ANNOUNCEMENTS_PER_SECOND, settings.discord_share))
        )
        announcer: Announcer = self.announcer if metrics is None else TimedAnnouncer(self.announcer, metrics)
        self.tracker = Tracker(
            store,
            api,
            announcer,
            poll_interval=settings.poll_interval_seconds,
            timeout_seconds=settings.generation_timeout_seconds,
            balance=balance,
            reconciler=Reconciler(store, api, schedule=schedule),
            queue=self.queue_runner,
            progress=self.progress,
            recover=self.generations.recover_interrupted,
        )

    async def _keeps_videos(self, guild_id: int) -> bool:
        return (await self.moderation.rules(guild_id)).keep_videos

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        # Alive in the database before anything else, so that no other process takes this one's work for a dead one's.
        await self.store.beat(time.time())
        await self.generations.recover_interrupted()
        # In the background: a slow API must not hold up the start; members meet a gone model plainly either way.
        self._model_check = asyncio.create_task(self.generations.check_models(), name="model-check")
        if self.settings.syncs_commands:
            await self.sync_commands()
        else:
            log.info("Slash commands are synced by the process that runs shard 0")
        self.progress.start()
        self.tracker.start()

    async def close(self) -> None:
        # New submissions are refused; those waiting on the API get a moment to record its answer.
        await self.generations.drain(SHUTDOWN_GRACE_SECONDS)
        if self._model_check is not None:
            self._model_check.cancel()
        # The queue runner first: a pass it is in the middle of must not be cut between a claim and its send.
        await self.queue_runner.stop()
        await self.tracker.stop()
        # Edits not sent are lost with the process; endings among them are shown after the restart.
        await self.progress.stop()
        if not isinstance(self.loop, asyncio.AbstractEventLoop):
            # Built but never started (neither entered nor logged in, as where its commands are read): nothing is
            # connected, and discord.py's sharded close needs what starting sets up.
            return
        await super().close()

    def commands_digest(self) -> str:
        """A hash of the command tree as Discord would receive it (and of the application it belongs to)."""
        payload = {
            "application": self.application_id,
            "commands": sorted(
                (command.to_dict(self.tree) for command in self.tree.get_commands()), key=lambda c: str(c["name"])
            ),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    async def sync_commands(self) -> None:
        """Sync globally when the commands changed since the last sync; always to the dev server if set."""
        digest = self.commands_digest()
        try:
            if await self.store.get_meta(COMMANDS_HASH_KEY) != digest:
                synced = await self.tree.sync()
                await self.store.set_meta(COMMANDS_HASH_KEY, digest)
                log.info("Synced %d slash commands globally", len(synced))
            else:
                log.info("Slash commands unchanged since the last sync")
            if self.settings.dev_guild_id is not None:
                guild = discord.Object(self.settings.dev_guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("Synced %d slash commands to the dev server %d", len(synced), guild.id)
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as error:
            # The commands Discord already has keep working; the next start tries again.
            log.error("Could not sync slash commands: %s", error)

    async def on_ready(self) -> None:
        assert self.user is not None
        self.connected_to_discord = True
        log.info("Logged in as %s (id %d) in %d servers", self.user, self.user.id, len(self.guilds))

    async def on_resumed(self) -> None:
        self.connected_to_discord = True

    async def on_disconnect(self) -> None:
        self.connected_to_discord = False

    async def on_app_command_completion(
        self, interaction: discord.Interaction[VideoBot], command: app_commands.Command[Any, Any, Any]
    ) -> None:
        if self.metrics is not None:
            self.metrics.command_finished(command.qualified_name, "ok")
