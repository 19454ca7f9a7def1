"""`python -m bot.health`: healthy only while the heartbeat is fresh, Discord connected and the tracker cycling."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.health import Heartbeat, HeartbeatWriter, heartbeat_path, write_heartbeat

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_health(tmp_path: Path, database: Path) -> subprocess.CompletedProcess[str]:
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    env["DATABASE_PATH"] = str(database)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot.health"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )


def beat(*, age: float = 1.0, connected: bool = True, cycle_age: float | None = 2.0) -> Heartbeat:
    now = time.time()
    return Heartbeat(
        written_at=now - age,
        discord_connected=connected,
        tracker_cycle_at=None if cycle_age is None else now - cycle_age,
        tracker_stale_after=120.0,
    )


def test_healthy_when_connected_and_the_tracker_cycled_recently(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.sqlite3"
    database.parent.mkdir()
    write_heartbeat(heartbeat_path(database), beat())
    result = run_health(tmp_path, database)
    assert result.returncode == 0, result
    assert result.stdout.startswith("healthy: connected to Discord")


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"age": 300}, "the heartbeat is 300 s old"),
        ({"connected": False}, "not connected to Discord"),
        ({"cycle_age": 600}, "the tracker's last cycle finished 600 s ago"),
        ({"cycle_age": None}, "the tracker has not finished a cycle yet"),
    ],
)
def test_unhealthy_with_a_stale_heartbeat_a_lost_discord_or_a_stalled_tracker(
    tmp_path: Path, state: dict[str, Any], reason: str
) -> None:
    database = tmp_path / "bot.sqlite3"
    write_heartbeat(heartbeat_path(database), beat(**state))
    result = run_health(tmp_path, database)
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: " + reason), result.stdout


def test_unhealthy_without_a_heartbeat_and_with_a_broken_one(tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    missing = run_health(tmp_path, database)
    assert missing.returncode == 1 and "no heartbeat" in missing.stdout
    heartbeat_path(database).write_text("{not json", encoding="utf-8")
    broken = run_health(tmp_path, database)
    assert broken.returncode == 1 and "can't be read" in broken.stdout
    assert "Traceback" not in missing.stderr + broken.stderr


async def test_the_writer_keeps_the_heartbeat_warns_once_while_it_cannot_and_removes_it_on_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "not-yet"
    path = heartbeat_path(folder / "bot.sqlite3")
    writer = HeartbeatWriter(path, beat, interval=0.01)
    writer.start()
    await asyncio.sleep(0.1)  # the folder is missing: every write fails
    folder.mkdir()
    for _ in range(200):
        if path.exists():
            break
        await asyncio.sleep(0.01)
    assert Heartbeat.from_json(path.read_text(encoding="utf-8")).discord_connected
    await writer.stop()
    assert not path.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Could not write the heartbeat" in warnings[0]


def test_a_bot_with_nothing_new_to_report_only_touches_its_heartbeat(tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    path = heartbeat_path(database)
    status = {"connected": True}
    clock = [time.time() - 40]

    def current() -> Heartbeat:
        clock[0] += 10
        return Heartbeat(clock[0], status["connected"], clock[0] - 2, 120.0)

    writer = HeartbeatWriter(path, current)
    writer._beat()
    first = path.read_text(encoding="utf-8")
    writer._beat()
    writer._beat()
    assert path.read_text(encoding="utf-8") == first  # the same verdict: not rewritten
    assert path.stat().st_mtime == pytest.approx(clock[0])  # but the beat moved on
    assert run_health(tmp_path, database).returncode == 0
    status["connected"] = False
    writer._beat()
    assert not Heartbeat.from_json(path.read_text(encoding="utf-8")).discord_connected
    result = run_health(tmp_path, database)
    assert result.returncode == 1 and "not connected to Discord" in result.stdout
