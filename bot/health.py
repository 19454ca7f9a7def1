"""The bot's heartbeat and `python -m bot.health`, the container's health check.

The running bot keeps a small JSON file beside its database: whether it is connected to Discord and when its tracker
last finished a cycle, as of when it was written. Every few seconds the bot touches the file (its modification time
is the beat) and rewrites it only when that verdict changes, so that a bot with nothing to do writes nothing.
`python -m bot.health` reads the file and exits 0 when the beat is recent and the bot connected and cycling, 1
otherwise, with one line saying why. It needs neither the token nor the network, so it is cheap enough for Docker to
run every 30 seconds.
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

    def tracker_stalled(self) -> bool:
        """Whether the tracker had stalled when this was written."""
        cycle = self.tracker_cycle_at
        return cycle is not None and self.written_at - cycle > self.tracker_stale_after

    def verdict(self) -> tuple[bool, bool, bool]:
        """What the health check concludes from it besides its age: while this holds, a touch is enough."""
        return self.discord_connected, self.tracker_cycle_at is None, self.tracker_stalled()


def write_heartbeat(path: Path, heartbeat: Heartbeat) -> None:
    # Written aside and renamed, so the health check never reads half a file; the beat is the modification time.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(heartbeat.to_json(), encoding="utf-8")
    os.utime(partial, (heartbeat.written_at, heartbeat.written_at))
    partial.replace(path)


def assess(heartbeat: Heartbeat, now: float, beat_at: float | None = None) -> tuple[bool, str]:
    """Whether the bot is healthy by this heartbeat (last touched at `beat_at`), and why in one line."""
    age = now - max(heartbeat.written_at, beat_at or 0.0)
    if age > HEARTBEAT_STALE_AFTER_SECONDS:
        return False, f"the heartbeat is {age:.0f} s old: the bot is stopped or hung"
    if not heartbeat.discord_connected:
        return False, "not connected to Discord (reconnecting)"
    if heartbeat.tracker_cycle_at is None:
        return False, "the tracker has not finished a cycle yet"
    if heartbeat.tracker_stalled():
        cycle_age = now - heartbeat.tracker_cycle_at
        return False, f"the tracker's last cycle finished {cycle_age:.0f} s ago: it has stalled"
    return True, "connected to Discord, tracker cycling"


def check(path: Path, now: float) -> tuple[bool, str]:
    try:
        heartbeat = Heartbeat.from_json(path.read_text(encoding="utf-8"))
        beat_at = path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat at {path}: the bot is not running (or not yet started)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return False, f"the heartbeat at {path} can't be read: {error}"
    return assess(heartbeat, now, beat_at)


class HeartbeatWriter:
    """Beats every few seconds while the bot runs (a touch, or a rewrite when the verdict changed); removes the file
    on a clean stop."""

    def __init__(
        self, path: Path, status: Callable[[], Heartbeat], interval: float = HEARTBEAT_INTERVAL_SECONDS
    ) -> None:
        self._path = path
        self._status = status
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._written: tuple[bool, bool, bool] | None = None  # the verdict the file holds

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                self._beat()
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

    def _beat(self) -> None:
        heartbeat = self._status()
        if heartbeat.verdict() == self._written:
            try:
                os.utime(self._path, (heartbeat.written_at, heartbeat.written_at))
                return
            except FileNotFoundError:
                pass  # removed from outside: written anew below
        self._written = None
        write_heartbeat(self._path, heartbeat)
        self._written = heartbeat.verdict()

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
