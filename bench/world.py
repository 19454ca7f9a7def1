"""The benchmark's world: a fake Discord server with many members, and generations already running.

Running generations are written straight into the bot's SQLite file while the bot is stopped, and into the
simulator's state, as if the bot had started them itself: that is how 10 000 of them can be running without
10 000 commands first.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.simulator import SimGeneration, SimulatorState
from tests.e2e.fake_discord import DefaultIds, FakeMember, FakeUser, World, default_world

MEMBER_IDS_FROM = 1_600_000_000_000_000_000
# How long ago the prefilled generations started: well inside GENERATION_TIMEOUT_MINUTES.
PREFILLED_AGE_SECONDS = 120.0


def bench_world(members: int) -> World:
    """The default fake world, with `members` more members in its first server to spread the commands over."""
    world = default_world()
    guild = world.guild(DefaultIds.GUILD_1)
    for n in range(members):
        user = FakeUser(MEMBER_IDS_FROM + n, f"member{n}", f"Member {n}")
        world.users.append(user)
        guild.members.append(FakeMember(user.id))
    return world


@dataclass
class RunningSet:
    """The generations the bot follows, as the benchmark knows them."""

    db_path: Path
    state: SimulatorState
    member_ids: list[int]

    def running_ids(self) -> list[str]:
        """Api ids of the rows the bot considers running, oldest first."""
        with sqlite3.connect(self.db_path, timeout=10) as connection:
            rows = connection.execute(
                "SELECT api_id FROM generations WHERE state = 'running' AND api_id IS NOT NULL ORDER BY id"
            ).fetchall()
        return [row[0] for row in rows]

    def fill_to(self, total: int) -> int:
        """Add running generations until `total` run (the bot must be stopped); returns how many were added."""
        missing = total - len(self.running_ids())
        if missing <= 0:
            return 0
        # The simulator's clock is the wall clock: its generations age from their wall-clock start.
        started_wall = time.time() - PREFILLED_AGE_SECONDS
        created_iso = datetime.fromtimestamp(started_wall, UTC).isoformat().replace("+00:00", "Z")
        rows = []
        for n in range(missing):
            api_id = str(uuid.uuid4())
            prompt = f"a prefilled scene number {n}"
            self.state.generations[api_id] = SimGeneration(
                id=api_id,
                prompt=prompt,
                aspect_ratio="16:9",
                created_at=started_wall,
                kind="legacy",
                created_iso=created_iso,
            )
            member = self.member_ids[n % len(self.member_ids)]
            rows.append((api_id, member, prompt, started_wall))
        with sqlite3.connect(self.db_path, timeout=10) as connection:
            connection.executemany(
                "INSERT INTO generations (api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
                " expand_prompt, state, api_state, created_at, updated_at, submitted_at)"
                f" VALUES (?, 'generate', {DefaultIds.GUILD_1}, {DefaultIds.GENERAL_1}, ?, ?, '16:9', 1,"
                " 'running', 'processing', ?4, ?4, ?4)",
                rows,
            )
        return missing

    def finish(self, api_id: str) -> float:
        """Make the API report this generation as completed from now on; returns when (time.monotonic())."""
        self.state.generations[api_id].forced_state = "completed"
        return time.monotonic()
