"""The bot's heartbeat and `python -m bot.health`, the container's health check.

The running bot rewrites a small JSON file beside its database every few seconds: when it wrote it, whether it is
connected to Discord and when its tracker last finished a cycle. `python -m bot.health` reads that file and exits
0 when all three are recent and true, 1 otherwise, with one line saying why. It needs neither the token nor the
network, so it is cheap enough for Docker to run every 30 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

log = logging.getLogger(__name__)

DEFAULT_DATABASE_PATH = "data/bot.sqlite3"
# How often the bot rewrites its heartbeat, and how old it may get before the bot counts as hung.
HEARTBEAT_INTERVAL_SECONDS = 5.0
HEARTBEAT_STALE_AFTER_SECONDS = 60.0
EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1


def heartbeat_path(database_path: Path) -> Path:
    """The heartbeat lives beside the database, so it is in the same volume and found from the same setting."""
    return database_path.with_name(database_path.name + ".heartbeat")


def tracker_stale_after(poll_interval: float) -> float:
    """How long without a finished tracker cycle counts as stalled: a few cycles, never less than two minutes
    (a cycle may wait out API retries)."""
    return max(120.0, 5 * poll_interval)


@dataclass(frozen=True)
class Heartbeat:
    written_at: float
    discord_connected: bool
    # When the tracker last finished a cycle; None before its first one.
    tracker_cycle_at: float | None
    tracker_stale_after: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Heartbeat:
        data = json.loads(text)
        cycle = data.get("tracker_cycle_at")
        return cls(
            written_at=float(data["written_at"]),
            discord_connected=bool(data["discord_connected"]),
            tracker_cycle_at=None if cycle is None else float(cycle),
            tracker_stale_after=float(data["tracker_stale_after"]),
        )


def write_heartbeat(path: Path, heartbeat: Heartbeat) -> None:
    # Written aside and renamed, so the health check never reads half a file.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(heartbeat.to_json(), encoding="utf-8")
    partial.replace(path)


def assess(heartbeat: Heartbeat, now: float) -> tuple[bool, str]:
    """Whether the bot is healthy by this heartbeat, and why in one line."""
    age = now - heartbeat.written_at
    if age > HEARTBEAT_STALE_AFTER_SECONDS:
        return False, f"the heartbeat is {age:.0f} s old: the bot is stopped or hung"
    if not heartbeat.discord_connected:
        return False, "not connected to Discord (reconnecting)"
    if heartbeat.tracker_cycle_at is None:
        return False, "the tracker has not finished a cycle yet"
    cycle_age = now - heartbeat.tracker_cycle_at
    if cycle_age > heartbeat.tracker_stale_after:
        return False, f"the tracker's last cycle finished {cycle_age:.0f} s ago: it has stalled"
    return True, f"connected to Discord, tracker cycle {cycle_age:.0f} s ago"


def check(path: Path, now: float) -> tuple[bool, str]:
    try:
        heartbeat = Heartbeat.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no heartbeat at {path}: the bot is not running (or not yet started)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return False, f"the heartbeat at {path} can't be read: {error}"
    return assess(heartbeat, now)


class HeartbeatWriter:
    """Rewrites the heartbeat file every few seconds while the bot runs; removes it on a clean stop."""

    def __init__(
        self, path: Path, status: Callable[[], Heartbeat], interval: float = HEARTBEAT_INTERVAL_SECONDS
    ) -> None:
        self._path = path
        self._status = status
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                write_heartbeat(self._path, self._status())
            except OSError as error:
                # Once per trouble (a full disk lasts): the health check reports it as a stale heartbeat.
                if not failing:
                    log.warning("Could not write the heartbeat %s: %s; retrying every few seconds", self._path, error)
                failing = True
            else:
                if failing:
                    log.info("The heartbeat %s is written again", self._path)
                failing = False
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self._path.unlink(missing_ok=True)


def heartbeat_path_from(env: Mapping[str, str]) -> Path:
    database = env.get("DATABASE_PATH", "").strip() or DEFAULT_DATABASE_PATH
    return heartbeat_path(Path(database).expanduser())


def main() -> None:
    # The same .env and DATABASE_PATH resolution as the bot, so it finds the file the bot writes.
    load_dotenv(find_dotenv(usecwd=True))
    healthy, reason = check(heartbeat_path_from(os.environ), time.time())
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    sys.exit(EXIT_HEALTHY if healthy else EXIT_UNHEALTHY)


if __name__ == "__main__":
    main()
