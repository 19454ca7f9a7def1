"""Entry point: `python -m bot` (or the `luma-video-bot` script). Reads .env, checks settings, runs the bot."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterable

import aiohttp
import discord
import yarl
from dotenv import find_dotenv, load_dotenv

from .api_client import LumaClient
from .api_v2 import RayClient
from .app import VideoBot
from .balance import BalanceService
from .catalogue import label_of
from .config import ConfigError, Settings, load_settings
from .health import Heartbeat, HeartbeatWriter, heartbeat_path, tracker_stale_after
from .kept_video import VideoDownloader
from .metrics import BotMetrics, MetricsServer
from .startup import ReconnectLineFilter, forget_http_session, reach_discord
from .storage import DatabaseUnusable, open_store
from .video_api import VideoApiRouter

log = logging.getLogger("bot")

EXIT_CONFIG_ERROR = 2
# Interaction and webhook tokens travel in URL paths and in gateway events, both of which discord.py logs at DEBUG.
_URL_TOKENS = re.compile(r"(/(?:webhooks|interactions)/\d+/)[\w.-]{20,}")
_TOKEN_FIELDS = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+""")


class RedactingFilter(logging.Filter):
    """Replaces secrets in every log record, whoever logs it (discord.py, aiohttp or us)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = _URL_TOKENS.sub(r"\1[redacted]", text)
        return _TOKEN_FIELDS.sub(r"\1[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    secrets = [settings.discord_token.reveal(), settings.aiml_api_key.reveal()]
    if settings.database_url is not None:
        secrets.extend(settings.database_url.secrets)
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # discord.py's gateway chatter is noise unless debugging.
    if settings.log_level != "DEBUG":
        logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
        handler.addFilter(ReconnectLineFilter())


def point_discord_at(base_url: str) -> None:
    """Send discord.py's REST calls to another host (a proxy or a test double) instead of discord.com."""
    discord.http.Route.BASE = base_url.rstrip("/") + "/api/v10"


async def run(settings: Settings) -> int:
    try:
        store = await open_store(settings)
    except DatabaseUnusable as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    metrics = BotMetrics() if settings.metrics_port is not None else None
    try:
        async with (
            aiohttp.ClientSession(trace_configs=[metrics.api_trace()] if metrics else None) as session,
            # Video files come from the provider's CDN, not the API: a session of their own, outside the API's metrics.
            aiohttp.ClientSession() as downloads,
        ):
            legacy = LumaClient(session, settings.api_base_url, settings.aiml_api_key)
            current = RayClient(session, settings.api_base_url, settings.aiml_api_key)
            api = VideoApiRouter(legacy, current, settings.luma_models)
            balance = BalanceService(api, low_warning=settings.low_balance_warning, notices=store)
            bot = VideoBot(settings, store, api, balance, metrics, VideoDownloader(downloads))
            return await serve(settings, bot, metrics)
    finally:
        await store.close()


async def serve(settings: Settings, bot: VideoBot, metrics: BotMetrics | None) -> int:
    """Metrics, heartbeat and the Discord connection, until a signal asks to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    metrics_server = MetricsServer(metrics, bot.store) if metrics is not None else None
    if metrics_server is not None and settings.metrics_port is not None:
        try:
            await metrics_server.start(settings.metrics_host, settings.metrics_port)
        except OSError as error:
            reason = "another program uses it" if error.errno == errno.EADDRINUSE else error.strerror or str(error)
            print(
                f"Configuration error: METRICS_PORT {settings.metrics_port} can't be used on "
                f"{settings.metrics_host}: {reason}",
                file=sys.stderr,
            )
            return EXIT_CONFIG_ERROR
    heartbeat = HeartbeatWriter(heartbeat_path(settings.database_path), lambda: heartbeat_of(bot))
    heartbeat.start()
    try:
        async with bot:
            where = settings.discord_api_base_url or "discord.com"
            if await reach_discord(lambda: log_in(bot, settings), lambda: forget_http_session(bot), stop, where):
                await run_until_stopped(bot, stop)
    except discord.LoginFailure:
        print("Configuration error: DISCORD_TOKEN was refused by Discord.", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except discord.PrivilegedIntentsRequired:
        print("Discord refused the bot's intents for this application.", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    finally:
        await heartbeat.stop()
        if metrics_server is not None:
            await metrics_server.stop()
    log.info("Stopped cleanly")
    return 0


async def log_in(bot: VideoBot, settings: Settings) -> None:
    await bot.login(settings.discord_token.reveal())
    if settings.discord_api_base_url is not None:
        # The gateway's address comes from the same host, as it does from discord.com.
        _, gateway_url, _ = await bot.http.get_bot_gateway()
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def heartbeat_of(bot: VideoBot) -> Heartbeat:
    return Heartbeat(
        written_at=time.time(),
        discord_connected=bot.connected_to_discord and not bot.is_closed(),
        tracker_cycle_at=bot.tracker.last_cycle_at,
        tracker_stale_after=tracker_stale_after(bot.settings.poll_interval_seconds),
    )


async def run_until_stopped(bot: VideoBot, stop: asyncio.Event) -> None:
    """Stay connected until a signal asks to stop, then close without waiting out a reconnect backoff."""
    connection = asyncio.create_task(bot.connect(reconnect=True), name="discord-connection")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        await bot.close()
        connection.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connection
    if not stop.is_set():
        connection.result()  # the connection ended on its own: surface why (e.g. a refused token)


def main() -> None:
    # The .env of the folder the bot is started from; real environment variables win over it.
    load_dotenv(find_dotenv(usecwd=True))
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    configure_logging(settings)
    log.info("Making videos with %s", ", ".join(f"{label_of(model)} ({model})" for model in settings.luma_models))
    if settings.discord_api_base_url is not None:
        point_discord_at(settings.discord_api_base_url)
        log.warning("Talking to Discord at %s instead of discord.com", settings.discord_api_base_url)
    try:
        sys.exit(asyncio.run(run(settings)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
