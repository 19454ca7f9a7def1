"""Three real bot processes on one PostgreSQL database, each on its own shards of the fake Discord, against the
simulator: every command's create sent once, every video announced once, the look-ups shared rather than repeated,
a process killed half way whose work the others finish (an announcement it had sent is not sent again, its create in
flight is found, not resent); and the operator's daily cap exact when commands arrive on every shard at once."""

# Waits take explicit timeouts: every wait of the test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.simulator import SimulatorConfig

from ..postgres import fresh_database
from .fake_discord import FakeChannel, FakeGuild, FakeUser, InteractionHandle
from .harness import ACK_DEADLINE, ANNOUNCEMENT_KINDS, E2E, STEP, BotRun, default_simulator, running_e2e
from .worlds import many_servers

asyncpg = pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install -e '.[test]')")

POLL_INTERVAL = 0.5
LOOKUP = "GET /luma-ai/generation"
CREATE = "POST /luma-ai/generations"
# The bound the other processes must keep: a dead process's work is theirs within 30 seconds.
TAKEOVER_BOUND = 30.0
SERVERS = 6


@dataclass
class Process:
    name: str
    shards: tuple[int, ...]
    run: BotRun

    @property
    def pid(self) -> int:
        return self.run.process.pid


class Cluster:
    """The bot processes of one test, on one database and one sharded fake Discord."""

    def __init__(self, e2e: E2E, database_url: str, shard_count: int) -> None:
        self.e2e = e2e
        self.fake = e2e.fake
        self.url = database_url
        self.shard_count = shard_count
        self.processes: list[Process] = []
        e2e.env.update(
            {
                "DATABASE_URL": database_url,
                "SHARD_COUNT": str(shard_count),
                "POLL_INTERVAL_SECONDS": str(POLL_INTERVAL),
                # Three processes' gateway chatter at DEBUG would cost the shared machine more than the test needs.
                "LOG_LEVEL": "INFO",
            }
        )

    async def start(self, layout: dict[str, Sequence[int]]) -> None:
        """Start a process per entry (its name and shards) at once; return when the commands are synced and every
        shard is connected."""
        for name, shards in layout.items():
            env = self.e2e._process_env() | {
                "SHARD_IDS": ",".join(str(shard) for shard in shards),
                # The heartbeat file of each process beside a path of its own.
                "DATABASE_PATH": str(self.e2e.tmp_path / name / "bot.sqlite3"),
            }
            self.processes.append(Process(name, tuple(shards), await self.e2e.spawn(env)))
        deadline = time.monotonic() + 4 * STEP
        while not (self.fake.sync_count and self.fake.connected_shards >= set(range(self.shard_count))):
            for process in self.processes:
                if not process.run.running:
                    raise AssertionError(f"{process.name} exited while starting:\n{process.run.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the processes did not start:\n{self.e2e.log_text()[-4000:]}")
            await asyncio.sleep(0.05)

    def process_of(self, guild: FakeGuild) -> Process:
        shard = self.fake.shard_of(guild, self.shard_count)
        return next(process for process in self.processes if shard in process.shards)

    def guilds_of(self, processes: Iterable[Process]) -> list[FakeGuild]:
        names = {process.name for process in processes}
        return [guild for guild in self.fake.world.guilds if self.process_of(guild).name in names]

    def alive(self) -> list[Process]:
        return [process for process in self.processes if process.run.running]

    async def kill(self, process: Process) -> None:
        process.run.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.run.process.wait(), STEP)

    async def query(self, sql: str, *args: Any) -> list[Any]:
        connection = await asyncpg.connect(self.url)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    async def count(self, sql: str, *args: Any) -> int:
        [[value]] = await self.query(sql, *args)
        return int(value)


@dataclass
class Sent:
    """A /generate a member sent, and what came of it."""

    handle: InteractionHandle
    guild: FakeGuild
    generation_id: str | None = None  # the id its status message shows; None when it was refused
    answer: str = ""


async def generate(
    cluster: Cluster, guild: FakeGuild, user: FakeUser, prompt: str, channel: FakeChannel | None = None
) -> Sent:
    handle = await cluster.e2e.command(
        "generate", {"prompt": prompt}, user=user, channel=channel or guild.channel("general")
    )
    assert handle.shard == cluster.fake.shard_of(guild, cluster.shard_count)
    outcome = await cluster.e2e.outcome(handle, timeout=2 * STEP)
    sent = Sent(handle, guild, answer=outcome.text)
    if not outcome.private:
        sent.generation_id = outcome.generation_id
    return sent


async def generate_many(cluster: Cluster, guilds: Sequence[FakeGuild], count: int, label: str) -> list[Sent]:
    """`count` /generate spread over the servers and their two members, a few at a time (the machine is shared)."""
    members = [cluster.fake.alice, cluster.fake.bob]
    jobs = [(guilds[n % len(guilds)], members[(n // len(guilds)) % 2], f"{label} {n}") for n in range(count)]
    sent: list[Sent] = []
    for start in range(0, len(jobs), 8):
        sent += await asyncio.gather(*(generate(cluster, g, u, p) for g, u, p in jobs[start : start + 8]))
    return sent


def lookups_between(e2e: E2E, start: float, end: float) -> list[int]:
    """How many ids each look-up request the simulator received in [start, end) asked for."""
    return [
        sum(1 for key in request.query if key.startswith("ids"))
        for request in e2e.sim.state.requests
        if request.endpoint == LOOKUP and start <= request.received_at < end
    ]


def announcements_of(e2e: E2E, generation_id: str) -> list[Any]:
    found = {
        message.id: message
        for message in e2e.fake.message_log
        if message.kind in ANNOUNCEMENT_KINDS and generation_id in message.content
    }
    return list(found.values())


def simulator() -> SimulatorConfig:
    config = default_simulator()
    config.processing_after = 0.3
    config.complete_after = 3600.0  # the test says when videos finish
    return config


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    world = many_servers(SERVERS)
    world.guilds[0].add_channel(FakeChannel(1320000000000000001, "quiet", position=1))
    async with fresh_database() as url, running_e2e(tmp_path, simulator(), world) as e2e:
        yield Cluster(e2e, url, shard_count=4)


async def test_three_processes_share_the_work_and_survive_the_death_of_one(cluster: Cluster) -> None:
    e2e, fake, sim = cluster.e2e, cluster.fake, cluster.e2e.sim
    await cluster.start({"a": (0, 1), "b": (2,), "c": (3,)})
    assert fake.sync_count == 1  # by the process with shard 0 only
    assert {cluster.process_of(guild).name for guild in fake.world.guilds} == {"a", "b", "c"}

    # Half of the videos, commands arriving on every shard.
    first = await generate_many(cluster, fake.world.guilds, 75, "first half")
    assert all(sent.generation_id for sent in first), [sent.answer for sent in first if not sent.generation_id]
    await e2e.wait_until(lambda: len(sim.state.generations) == 75, "the first half's creates", 2 * STEP)

    # The look-ups of a few cycles with all of them running: each is looked up once a cycle, by one process, and the
    # requests stay within ceil(running / 50) + processes a cycle (the bounds leave one cycle of slack at the ends).
    await cluster_settled(cluster, running=75)
    started = time.monotonic()
    await asyncio.sleep(8 * POLL_INTERVAL)
    window = time.monotonic() - started
    running = await cluster.count("SELECT COUNT(*) FROM generations WHERE state = 'running'")
    asked = lookups_between(e2e, started, started + window)
    cycles = window / POLL_INTERVAL + 2
    assert len(asked) <= cycles * (math.ceil(running / 50) + len(cluster.processes))
    assert 0 < sum(asked) <= cycles * running  # each process alone would ask for every one, three times as often

    # One announcement whose answer never comes back: its process dies while waiting for it.
    quiet = fake.world.guilds[0].channel("quiet")
    held = await generate(cluster, fake.world.guilds[0], fake.alice, "announced just before a death", quiet)
    assert held.generation_id is not None
    fake.delay_next(1, f"/channels/{quiet.id}/messages", 600.0, method="POST")
    sim.state.generations[held.generation_id.split(":")[0]].forced_state = "completed"
    await e2e.wait_until(lambda: fake.held_answers == 1, "the announcement in #quiet", STEP)
    [[owner]] = await cluster.query("SELECT lease_owner FROM generations WHERE api_id = $1", held.generation_id)
    victim = next(process for process in cluster.processes if process.pid == int(owner.split(":")[1]))

    # And one create in flight on the same process: accepted by the API, its answer still on the way.
    sim.config.slow_seconds = 600.0
    sim.state.create_faults.append("accept_then_slow")
    creates_before = sim.state.count("POST", "/luma-ai/generations")
    in_flight_guild = cluster.guilds_of([victim])[0]
    in_flight = asyncio.create_task(
        e2e.command(
            "generate", {"prompt": "in flight at the death"}, user=fake.bob, channel=in_flight_guild.channel("general")
        )
    )
    await e2e.wait_until(
        lambda: sim.state.count("POST", "/luma-ai/generations") > creates_before, "the create in flight", STEP
    )
    await cluster.kill(victim)
    killed_at = time.time()
    await in_flight

    # The other half, on the servers of the processes still running.
    second = await generate_many(cluster, cluster.guilds_of(cluster.alive()), 75, "second half")
    assert all(sent.generation_id for sent in second), [sent.answer for sent in second if not sent.generation_id]
    for generation in sim.state.generations.values():
        generation.forced_state = "completed"
    finished_at = time.time()

    # Every row announced (the in-flight one once found in the account's list, after its process's heartbeat aged).
    await wait_all_announced(cluster, timeout=TAKEOVER_BOUND + 2 * STEP)
    rows = await cluster.query("SELECT api_id, state, announced_at, owner, prompt FROM generations ORDER BY id")
    accepted = len(first) + len(second) + 2  # and the announced one, and the one in flight
    assert len(rows) == accepted
    assert sim.state.count("POST", "/luma-ai/generations") == accepted  # each sent once, none resent
    assert len({row["api_id"] for row in rows}) == accepted and all(row["state"] == "completed" for row in rows)
    for row in rows:
        assert len(announcements_of(e2e, row["api_id"])) == 1, row["api_id"]
    # The dead process's work, finished by the others within the bound: its create in flight was taken over by a
    # live process, and nothing was announced later than the bound after the death or the videos being ready.
    [taken_over] = [row for row in rows if row["prompt"] == "in flight at the death"]
    assert int(taken_over["owner"].split(":")[1]) in {process.pid for process in cluster.alive()}
    latest = max(row["announced_at"] for row in rows)
    assert latest <= max(killed_at, finished_at) + TAKEOVER_BOUND
    # The announcement it had sent was found, not sent again.
    assert [m.channel_id for m in announcements_of(e2e, held.generation_id)] == [quiet.id]
    e2e.finish()


async def cluster_settled(cluster: Cluster, *, running: int) -> None:
    """Until this many generations are running and no create is on its way."""
    deadline = time.monotonic() + 2 * STEP
    while await cluster.count("SELECT COUNT(*) FROM generations WHERE state = 'running'") < running:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {running} generations running")
        await asyncio.sleep(0.1)


async def wait_all_announced(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await cluster.count("SELECT COUNT(*) FROM generations WHERE announced_at IS NULL"):
        if time.monotonic() > deadline:
            left = await cluster.query("SELECT id, state, api_id FROM generations WHERE announced_at IS NULL")
            raise AssertionError(f"not announced within {timeout}s: {left}\n{cluster.e2e.log_text()[-3000:]}")
        await asyncio.sleep(0.2)


async def test_commands_at_once_on_every_shard_get_exactly_what_the_daily_cap_leaves(tmp_path: Path) -> None:
    world = many_servers(SERVERS)
    async with fresh_database() as url, running_e2e(tmp_path, simulator(), world) as e2e:
        cluster = Cluster(e2e, url, shard_count=3)
        e2e.env["GLOBAL_DAILY_LIMIT"] = "6"
        await cluster.start({"a": (0,), "b": (1,), "c": (2,)})
        fake = e2e.fake
        spent = [await generate(cluster, guild, fake.alice, f"spent {n}") for n, guild in enumerate(world.guilds[:3])]
        assert all(sent.generation_id for sent in spent)
        # Two commands per server, every shard at once, for the three videos the cap still allows.
        rush = [(guild, user) for guild in world.guilds for user in (fake.alice, fake.bob)]
        handles = await asyncio.gather(
            *(
                e2e.command("generate", {"prompt": f"rush {n}"}, user=user, channel=guild.channel("general"))
                for n, (guild, user) in enumerate(rush)
            )
        )
        assert {handle.shard for handle in handles} == {0, 1, 2}
        outcomes = [await e2e.outcome(handle, timeout=2 * STEP) for handle in handles]
        for handle in handles:
            assert handle.ack_latency is not None and handle.ack_latency < ACK_DEADLINE
        started = [outcome for outcome in outcomes if not outcome.private]
        refused = [outcome for outcome in outcomes if outcome.private]
        assert len(started) == 3 and len(refused) == len(rush) - 3
        assert all("daily limit across all servers" in outcome.text for outcome in refused)
        assert sim_creates(e2e) == 6
        assert await cluster.count("SELECT COUNT(*) FROM generations") == 6
        e2e.finish()


def sim_creates(e2e: E2E) -> int:
    return e2e.sim.state.count("POST", "/luma-ai/generations")
