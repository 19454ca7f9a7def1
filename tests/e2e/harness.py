"""End-to-end harness: the simulator and the fake Discord in the test process, the real bot as a subprocess.

One :class:`E2E` per test (the ``e2e`` fixture of ``conftest.py``) owns a simulator of the video API and a fake
Discord, both on 127.0.0.1, and starts the bot with ``python -m bot`` pointed at them. The bot writes its log to
``bot-<n>.log`` in the test's ``tmp_path`` (one file per start). Every process the harness starts is killed when
the test ends, whether it passed or not.

Helpers speak in what a member or an operator notices: the first answer to a command, the public status message,
private answers, the announcements carrying a generation's id, the log, the database file.
"""

# Waits take explicit timeouts: every wait in the e2e suite is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.simulator import RunningSimulator, SimulatorConfig, run_simulator

from .discord_schema import default_spec_path
from .fake_discord import (
    FakeChannel,
    FakeDiscord,
    FakeMessage,
    FakeUser,
    InteractionHandle,
    MessageKind,
    World,
    run_fake_discord,
)

STEP = 10.0  # upper bound for any single wait of a test
ACK_DEADLINE = 3.0  # Discord's: an interaction not acknowledged by then "failed"
START_TIMEOUT = 20.0  # a bot start: interpreter, imports, login, command sync, gateway
BOT_COMMANDS = ("generate", "status", "extend", "limits", "quota", "usage", "queue", "cancel", "history", "help")
ANNOUNCEMENT_KINDS = (MessageKind.CHANNEL, MessageKind.DM)
EPHEMERAL = 1 << 6
GENERATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?::[\w./-]+)?")
LOG_PROBLEMS = ("Traceback", "Unclosed client session", "Unclosed connector", "Task exception was never retrieved")


class BotFailedToStart(AssertionError):
    pass


@dataclass
class BotRun:
    """One start of the bot process."""

    number: int
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


@dataclass
class Outcome:
    """How a command ended for the member: the public status message, or a private answer."""

    handle: InteractionHandle
    message: FakeMessage

    @property
    def private(self) -> bool:
        return self.message.ephemeral

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def generation_id(self) -> str:
        return status_id(self.message)


def embed_fields(message: FakeMessage) -> dict[str, str]:
    """The fields of the message's first embed, by name."""
    if not message.embeds:
        return {}
    return {str(f.get("name")): str(f.get("value")) for f in message.embeds[0].get("fields") or []}


def status_id(message: FakeMessage) -> str:
    """The generation id a status embed shows in its "Id" field."""
    value = embed_fields(message).get("Id", "")
    found = GENERATION_ID.search(value)
    assert found is not None, f"no generation id in the status message: {message.text!r}"
    return found.group(0)


def assert_private(message: FakeMessage, *phrases: str) -> None:
    """The answer only its member sees (flags 64), saying each phrase (case-insensitive)."""
    assert message.ephemeral, f"the answer is public: {message.text!r}"
    assert message.flags & EPHEMERAL
    for phrase in phrases:
        assert phrase.lower() in message.text.lower(), f"{phrase!r} not in the answer {message.text!r}"


def allowed_mentions_of(request_json: Any) -> dict[str, Any]:
    return dict((request_json or {}).get("allowed_mentions") or {})


class E2E:
    """The simulator, the fake Discord and the bot processes of one test."""

    def __init__(self, tmp_path: Path, fake: FakeDiscord, sim: RunningSimulator) -> None:
        self.tmp_path = tmp_path
        self.fake = fake
        self.sim = sim
        self.db_path = tmp_path / "data" / "bot.sqlite3"
        self.runs: list[BotRun] = []
        self.env: dict[str, str] = {
            "DISCORD_TOKEN": fake.token,
            "AIML_API_KEY": sim.config.api_key,
            "AIML_API_BASE_URL": sim.base_url,
            "DISCORD_API_BASE_URL": fake.base_url,
            "DATABASE_PATH": str(self.db_path),
            "POLL_INTERVAL_SECONDS": "0.2",
            "GENERATION_TIMEOUT_MINUTES": "30",
            "LOG_LEVEL": "DEBUG",
            "LUMA_MODEL": "legacy",
            # A create whose answer was lost is looked for at once, and given up after 15 s.
            "RECONCILE_FIRST_CHECK_SECONDS": "0.5",
            "RECONCILE_WINDOW_MINUTES": "0.25",
        }

    # -- the bot process -----------------------------------------------------------------------------------

    @property
    def bot(self) -> BotRun:
        assert self.runs, "the bot was never started"
        return self.runs[-1]

    def _process_env(self) -> dict[str, str]:
        # A small environment of its own: nothing of the developer's shell (a DEV_GUILD_ID, a real token)
        # leaks in; the working directory (tmp_path) has no .env for python-dotenv to find.
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def start_bot(self, *, wait: bool = True, **overrides: str) -> BotRun:
        """Start ``python -m bot``; with ``wait``, return once its commands are synced and its gateway is READY.

        ``overrides`` are environment variables, e.g. ``LUMA_MODEL="luma/ray-2"``; they stay for restarts.
        """
        assert not any(run.running for run in self.runs), "a bot process is already running"
        self.env.update(overrides)
        ready_before = self.ready_count()
        run = await self.spawn(self._process_env())
        if wait:
            await self.wait_ready(run, ready_before)
        return run

    async def spawn(self, env: Mapping[str, str]) -> BotRun:
        """Start one ``python -m bot`` with exactly this environment, logging to ``bot-<n>.log``."""
        number = len(self.runs) + 1
        log_path = self.tmp_path / f"bot-{number}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self.tmp_path,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        run = BotRun(number, process, log_path)
        self.runs.append(run)
        _STARTED.append(process)
        return run

    def ready_count(self) -> int:
        """How many gateway sessions the fake has made READY so far."""
        return sum(1 for frame in self.fake.gateway_log if frame.direction == "sent" and frame.t == "READY")

    async def wait_ready(self, run: BotRun, ready_before: int, timeout: float = START_TIMEOUT) -> None:
        """Until this run has synced its commands (or finds them synced) and identified on the gateway."""
        deadline = time.monotonic() + timeout
        while True:
            if not run.running:
                raise BotFailedToStart(f"the bot exited with {run.process.returncode} while starting:\n{run.log()}")
            synced = all(self._has_command(name) for name in BOT_COMMANDS)
            if synced and self.ready_count() > ready_before and self.fake.connected:
                return
            if time.monotonic() > deadline:
                raise BotFailedToStart(f"the bot was not ready within {timeout}s:\n{run.log()[-4000:]}")
            await asyncio.sleep(0.05)

    def _has_command(self, name: str) -> bool:
        try:
            self.fake.command(name)
        except LookupError:
            return False
        return True

    async def kill_bot(self) -> None:
        """SIGKILL, as a crash or a pulled plug: nothing of the bot runs after this."""
        run = self.bot
        if run.running:
            run.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(run.process.wait(), STEP)
        await self.fake.wait_until_disconnected(STEP)

    async def terminate_bot(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM, as `docker stop` does; returns the exit status and how long the bot took to exit."""
        run = self.bot
        started = time.monotonic()
        run.process.send_signal(signal.SIGTERM)
        try:
            status = await asyncio.wait_for(run.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the bot did not stop within {timeout}s of SIGTERM:\n{run.log()[-4000:]}") from None
        return status, time.monotonic() - started

    async def restart_bot(self, **overrides: str) -> BotRun:
        """Kill the running bot (if any) and start it again on the same database."""
        if self.runs and self.bot.running:
            await self.kill_bot()
        self.env.update(overrides)
        return await self.start_bot()

    async def close(self) -> None:
        """Kill every process still running; called by the fixture whatever the outcome."""
        for run in self.runs:
            if run.running:
                with contextlib.suppress(ProcessLookupError):
                    run.process.send_signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.process.wait(), STEP)

    def log_text(self) -> str:
        """Everything every start of the bot logged, in order."""
        return "\n".join(run.log() for run in self.runs)

    # -- commands, as a member sends them ------------------------------------------------------------------

    async def command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
        **kwargs: Any,
    ) -> InteractionHandle:
        return await self.fake.send_interaction(
            name,
            options or {},
            user=user or self.fake.alice,
            channel=channel if channel is not None or kwargs.get("dm") else self.fake.general,
            **kwargs,
        )

    async def outcome(self, handle: InteractionHandle, timeout: float = STEP) -> Outcome:
        """Acknowledged within Discord's 3 s, then either the public status message or a private answer."""
        await handle.wait_response(ACK_DEADLINE)

        def final(message: FakeMessage) -> bool:
            if message.loading or message.deleted:
                return False
            return message.ephemeral or (message.id == handle.original_message_id and bool(message.embeds))

        message = await handle.wait_message(final, timeout)
        return Outcome(handle, message)

    async def generate(
        self, prompt: str, *, user: FakeUser | None = None, channel: FakeChannel | None = None, **options: Any
    ) -> Outcome:
        """/generate that must start: returns its public status message."""
        handle = await self.command("generate", {"prompt": prompt, **options}, user=user, channel=channel)
        result = await self.outcome(handle)
        assert not result.private, f"/generate was refused: {result.text!r}"
        return result

    async def generate_extension(self, generation_id: str, prompt: str, **options: Any) -> str:
        """/extend that must start: returns the new generation's id."""
        handle = await self.command("extend", {"generation_id": generation_id, "prompt": prompt, **options})
        result = await self.outcome(handle)
        assert not result.private, f"/extend was refused: {result.text!r}"
        return result.generation_id

    async def private_answer(self, handle: InteractionHandle, timeout: float = STEP) -> FakeMessage:
        """The private answer to a command (the member sees it within the 3 s, or after a deferral)."""
        result = await self.outcome(handle, timeout)
        assert result.private, f"expected a private answer, got a public one: {result.text!r}"
        return result.message

    async def ask(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
        **kwargs: Any,
    ) -> FakeMessage:
        """Send a command and return its private answer."""
        return await self.private_answer(await self.command(name, options, user=user, channel=channel, **kwargs))

    # -- announcements ---------------------------------------------------------------------------------------

    def announcements(self, reference: str) -> list[FakeMessage]:
        """Messages posted outside any interaction (channel or DM) that carry this generation's reference."""
        found: dict[int, FakeMessage] = {}
        for message in self.fake.message_log:
            if message.kind in ANNOUNCEMENT_KINDS and reference in message.content:
                found.setdefault(message.id, message)
        return list(found.values())

    async def wait_announcement(self, reference: str, timeout: float = STEP) -> FakeMessage:
        return await self.fake.wait_for_message(
            lambda m: m.kind in ANNOUNCEMENT_KINDS and reference in m.content, timeout
        )

    def announcement_request(self, message: FakeMessage) -> dict[str, Any]:
        """The JSON body of the POST that created this message."""
        for request in self.fake.requests:
            if (
                request.method == "POST"
                and request.path == f"/channels/{message.channel_id}/messages"
                and request.status == 200
                and isinstance(request.json, dict)
                and request.json.get("content") == message.content
            ):
                return request.json
        raise AssertionError(f"no request created the message {message.id}")

    # -- the simulator ---------------------------------------------------------------------------------------

    def creates(self) -> int:
        """Create and extend requests that reached the simulator (answered or not)."""
        state = self.sim.state
        return sum(
            state.count("POST", endpoint)
            for endpoint in ("/luma-ai/generations", "/luma-ai/generations/{id}/extend", "/v2/video/generations")
        )

    def create_bodies(self) -> list[Any]:
        return [r.json for r in self.sim.state.requests if r.method == "POST" and not r.path.startswith("/_sim")]

    async def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = STEP) -> None:
        """Poll a condition of the simulator, the fake or the files until it holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not happen within {timeout}s; bot log tail:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.02)

    # -- the database ----------------------------------------------------------------------------------------

    def db_query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Read the bot's database as an operator would with the sqlite3 shell."""
        connection = sqlite3.connect(self.db_path, timeout=5.0)
        try:
            return list(connection.execute(sql, tuple(params)).fetchall())
        finally:
            connection.close()

    # -- checks every test ends with -------------------------------------------------------------------------

    def secrets(self) -> dict[str, str]:
        return {"DISCORD_TOKEN": self.fake.token, "AIML_API_KEY": self.sim.config.api_key}

    def assert_no_secrets(self) -> None:
        """Neither secret in the bot's log, in what it sent to Discord (bodies, queries, headers other than the
        Authorization the fake never records), in any message members were shown, nor the bot token in what it
        sent to the video API."""
        log = self.log_text()
        sent_to_discord = []
        for request in self.fake.requests:
            sent_to_discord += [request.path, json.dumps(request.query), json.dumps(request.json, default=str)]
            sent_to_discord += [part.text() for part in request.parts or ()]
            sent_to_discord += [f"{key}: {value}" for key, value in request.headers.items()]
        sent_to_discord += [message.text for message in self.fake.message_log]
        sent_to_discord += [json.dumps(f.d, default=str) for f in self.fake.gateway_log if f.direction == "received"]
        for name, value in self.secrets().items():
            assert value not in log, f"{name} appears in the bot's log"
            leaks = [text[:200] for text in sent_to_discord if value in text]
            assert leaks == [], f"{name} was sent to Discord: {leaks}"
        sent_to_api = [json.dumps(r.json, default=str) + json.dumps(r.query) for r in self.sim.state.requests]
        assert not any(self.fake.token in text for text in sent_to_api), "DISCORD_TOKEN was sent to the video API"

    def assert_schema_clean(self) -> None:
        """Every body the bot sent to Discord matches Discord's OpenAPI description (skipped without it)."""
        if self.fake.validator is None:
            pytest.skip(
                f"request bodies were not checked: Discord's OpenAPI description is missing at {default_spec_path()}"
            )
        assert self.fake.schema_errors == []

    def finish(self) -> None:
        """The checks of every test: no secret leaked, no bug in the fake, valid bodies (last: it may skip)."""
        self.assert_no_secrets()
        assert self.fake.internal_errors == []
        self.assert_schema_clean()


def default_simulator() -> SimulatorConfig:
    """Quick videos (ready after 1 s), a key of its own per test, reproducible random faults."""
    return SimulatorConfig(
        api_key="sim-" + secrets.token_hex(16),
        processing_after=0.3,
        complete_after=1.0,
        seed=1234,
        slow_seconds=1.0,
    )


@contextlib.asynccontextmanager
async def running_e2e(
    tmp_path: Path, simulator: SimulatorConfig | None = None, world: World | None = None, **fake_options: Any
) -> AsyncIterator[E2E]:
    """The simulator and the fake Discord (with `fake_options`, e.g. ``rate_limits=``), and the bot processes the
    test starts (killed at the end)."""
    async with (
        run_simulator(simulator or default_simulator()) as sim,
        run_fake_discord(world=world, **fake_options) as fake,
    ):
        e2e = E2E(tmp_path, fake, sim)
        try:
            yield e2e
            # Every body the bot sent in the run, whatever the test looked at: Discord's description and limits.
            assert fake.schema_errors == [], "the bot sent bodies Discord would refuse"
        finally:
            await e2e.close()


def _kill_leftovers() -> None:
    """Last resort when the test process exits abnormally: no bot outlives the test run. Only processes never
    reaped (returncode None) are signalled, so their pid cannot belong to anyone else yet."""
    for process in _STARTED:
        if process.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)


_STARTED: list[asyncio.subprocess.Process] = []
atexit.register(_kill_leftovers)
