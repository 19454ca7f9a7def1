"""Reaching Discord at start: one clear line when it can't be reached, then retries with growing pauses.

A bot restarted by a supervisor (Docker, systemd) must ride out a passing network cut rather than exit, while a
token Discord refuses stays a configuration error that no retry can fix (discord.LoginFailure passes through).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import aiohttp
import discord

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
# What "Discord can't be reached" looks like: no connection, DNS, TLS, a timeout, or Discord's own 5xx.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    aiohttp.ClientError,
    TimeoutError,
    discord.DiscordServerError,
    discord.GatewayNotFound,
)


def retry_delays(first: float = FIRST_RETRY_SECONDS, cap: float = MAX_RETRY_SECONDS) -> Callable[[], float]:
    """Doubling pauses with jitter, so many bots cut off together do not come back in step."""
    attempt = 0

    def next_delay() -> float:
        nonlocal attempt
        delay = min(cap, first * 2.0**attempt)
        attempt += 1
        return delay * random.uniform(0.75, 1.0)

    return next_delay


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def reach_discord(
    attempt: Callable[[], Awaitable[None]],
    reset: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    where: str,
    delays: Callable[[], float] | None = None,
) -> bool:
    """Run `attempt` (log in) until it succeeds; False when `stop` was set first.

    Between failed attempts `reset` drops what the failed one left (discord.py's HTTP session). The first failure
    is one warning line; later ones are logged at DEBUG, so a long outage does not flood the log.
    """
    next_delay = delays or retry_delays()
    failures = 0
    while not stop.is_set():
        try:
            await attempt()
        except UNREACHABLE_ERRORS as error:
            failures += 1
            await reset()
            delay = next_delay()
            if failures == 1:
                log.warning(
                    "Can't reach Discord at %s (%s); retrying in %.0f s, then with longer pauses up to %.0f s",
                    where,
                    describe(error),
                    delay,
                    MAX_RETRY_SECONDS,
                )
            else:
                log.debug("Discord still unreachable (%s); next try in %.1f s", describe(error), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        if failures:
            log.info("Reached Discord after %d failed attempts", failures)
        return True
    return False


async def forget_http_session(client: discord.Client) -> None:
    """Close the session a failed login opened, so the next login starts a fresh one (and nothing leaks).

    discord.py opens a new session (on a shared connector) at every login and never closes the old one itself.
    """
    await client.http.close()
    client.http.clear()
    client.http.connector = discord.utils.MISSING


class ReconnectLineFilter(logging.Filter):
    """discord.py logs every gateway reconnect with a full traceback; outside DEBUG one line says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and message.startswith("Attempting a reconnect"):
            error = record.exc_info[1]
            record.msg = "Lost the connection to Discord (%s); reconnecting in %s"
            record.args = (describe(error) if error else "unknown error", message.rsplit(" ", 1)[-1])
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.WARNING, "WARNING"
        return True


def silence_voice_warnings() -> None:
    """The bot has no voice: discord.py's warnings about missing voice libraries would only look like errors."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
