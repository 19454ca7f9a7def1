"""The real process on gateway shards: one process runs every shard Discord recommends; a process without shard 0
leaves the commands alone, answers on its own shard and announces videos of servers on any shard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .fake_discord import FakeGuild
from .harness import E2E, STEP, running_e2e
from .worlds import many_servers


@pytest.fixture
async def sharded(tmp_path: Path) -> AsyncIterator[E2E]:
    """Four servers spread over two shards, which the fake Discord recommends."""
    async with running_e2e(tmp_path, world=many_servers(4)) as harness:
        harness.fake.recommended_shards = 2
        yield harness


def servers_on(e2e: E2E, shard: int) -> list[FakeGuild]:
    return [guild for guild in e2e.fake.world.guilds if e2e.fake.shard_of(guild, 2) == shard]


def identified_shards(e2e: E2E) -> list[list[int]]:
    return [frame.d["shard"] for frame in e2e.fake.gateway_log if frame.direction == "received" and frame.op == 2]


async def test_one_process_runs_every_recommended_shard_and_serves_servers_on_each(sharded: E2E) -> None:
    fake = sharded.fake
    await sharded.start_bot()
    await fake.wait_until_shards_connected([0, 1], STEP)
    assert sorted(identified_shards(sharded)) == [[0, 2], [1, 2]]
    assert fake.sync_count == 1

    started = []
    for shard in (0, 1):
        guild = servers_on(sharded, shard)[0]
        handle = await sharded.command(
            "generate", {"prompt": f"A lighthouse on shard {shard}"}, channel=guild.channel("general")
        )
        assert handle.shard == shard
        result = await sharded.outcome(handle)
        assert not result.private, result.text
        started.append((guild, result.generation_id))
    for guild, generation_id in started:
        announcement = await sharded.wait_announcement(generation_id)
        assert announcement.channel_id == guild.channel("general").id
    sharded.finish()


async def test_a_process_without_shard_0_syncs_nothing_and_announces_for_every_shard(sharded: E2E) -> None:
    fake = sharded.fake
    # The process of shard 0 syncs the commands and starts a video in a server of its shard, then dies.
    await sharded.start_bot(SHARD_COUNT="2", SHARD_IDS="0")
    assert identified_shards(sharded) == [[0, 2]]
    assert fake.sync_count == 1
    on_zero = servers_on(sharded, 0)[0]
    sharded.sim.config.complete_after = 4.0
    handle = await sharded.command("generate", {"prompt": "A slow tide"}, channel=on_zero.channel("general"))
    left_running = (await sharded.outcome(handle)).generation_id
    await sharded.kill_bot()

    # The process of shard 1 alone: no sync, members of its servers are answered, and the video of the server on
    # shard 0 (not in its gateway cache) is announced there.
    sharded.sim.config.complete_after = 1.0
    await sharded.start_bot(wait=False, SHARD_COUNT="2", SHARD_IDS="1")
    await fake.wait_until_shards_connected([1], STEP)
    assert identified_shards(sharded)[-1] == [1, 2]
    on_one = servers_on(sharded, 1)[0]
    handle = await sharded.command("generate", {"prompt": "A quiet harbour"}, channel=on_one.channel("general"))
    assert handle.shard == 1
    answered = await sharded.outcome(handle)
    assert not answered.private, answered.text
    for guild, generation_id in ((on_zero, left_running), (on_one, answered.generation_id)):
        announcement = await sharded.wait_announcement(generation_id, timeout=2 * STEP)
        assert announcement.channel_id == guild.channel("general").id
        assert len(sharded.announcements(generation_id)) == 1
    assert fake.sync_count == 1
    assert "synced by the process that runs shard 0" in sharded.bot.log()
    sharded.finish()
