"""Start-up: retries while Discord is out of reach, a refused token is not retried, gateway reconnects in one line."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys

import aiohttp
import discord
import pytest

from bot.config import ConfigError, load_settings
from bot.startup import ReconnectLineFilter, reach_discord, retry_delays

REQUIRED = {"DISCORD_TOKEN": "discord-secret-token", "AIML_API_KEY": "aiml-secret-key"}


class Attempts:
    """A login that fails with the given errors, one per attempt, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.made = 0
        self.resets = 0

    async def attempt(self) -> None:
        self.made += 1
        if self.errors:
            raise self.errors.pop(0)

    async def reset(self) -> None:
        self.resets += 1


async def test_unreachable_discord_is_one_warning_then_retries_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("discord.com", 443, True, True, None, None, None),
        OSError(111, "Connect call failed"),
    )
    attempts = Attempts(refused, TimeoutError(), OSError(101, "Network is unreachable"))
    caplog.set_level(logging.DEBUG, logger="bot.startup")
    reached = await reach_discord(attempts.attempt, attempts.reset, asyncio.Event(), "discord.com", lambda: 0.0)
    assert reached and attempts.made == 4 and attempts.resets == 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "Can't reach Discord at discord.com" in warnings[0].getMessage()
    assert "retrying" in warnings[0].getMessage()
    assert any("after 3 failed attempts" in r.getMessage() for r in caplog.records)


async def test_a_refused_token_is_not_retried() -> None:
    attempts = Attempts(discord.LoginFailure("Improper token has been passed."))
    with pytest.raises(discord.LoginFailure):
        await reach_discord(attempts.attempt, attempts.reset, asyncio.Event(), "discord.com", lambda: 0.0)
    assert attempts.made == 1


async def test_a_stop_during_the_wait_ends_the_retries() -> None:
    stop = asyncio.Event()
    attempts = Attempts(*(OSError("down") for _ in range(100)))
    waiting = asyncio.create_task(reach_discord(attempts.attempt, attempts.reset, stop, "discord.com", lambda: 30.0))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(waiting, 2) is False
    assert attempts.made == 1


def test_pauses_grow_to_a_minute_with_jitter() -> None:
    delays = retry_delays()
    pauses = [delays() for _ in range(10)]
    assert 0.75 <= pauses[0] <= 1.0 and 1.5 <= pauses[1] <= 2.0
    assert all(later >= earlier * 0.75 for earlier, later in itertools.pairwise(pauses))
    assert max(pauses) <= 60 and pauses[-1] >= 45


def test_a_gateway_reconnect_is_one_line_without_a_traceback() -> None:
    try:
        raise aiohttp.ClientConnectionError("Cannot connect to host gateway.discord.gg:443")
    except aiohttp.ClientConnectionError:
        record = logging.LogRecord(
            "discord.client", logging.ERROR, __file__, 1, "Attempting a reconnect in %.2fs", (2.5,), sys.exc_info()
        )
    assert ReconnectLineFilter().filter(record)
    assert record.exc_info is None and record.levelname == "WARNING"
    assert record.getMessage() == (
        "Lost the connection to Discord (ClientConnectionError: Cannot connect to host gateway.discord.gg:443); "
        "reconnecting in 2.50s"
    )


@pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
def test_a_bad_metrics_port_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        load_settings(REQUIRED | {"METRICS_PORT": value})


def test_metrics_are_off_unless_a_port_is_given() -> None:
    assert load_settings(REQUIRED).metrics_port is None
    on = load_settings(REQUIRED | {"METRICS_PORT": "9100", "METRICS_HOST": "0.0.0.0"})
    assert (on.metrics_port, on.metrics_host) == (9100, "0.0.0.0")
