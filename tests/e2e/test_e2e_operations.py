"""What an operator meets: Discord out of reach at start, the metrics endpoint, the health check, the Docker run."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

import aiohttp

from .harness import E2E, STEP, assert_private
from .relay import Relay

VOICE_WARNINGS = ("PyNaCl", "davey", "voice will NOT be supported")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition, by name and labels (all of them, in any order)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([\w:]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


async def test_discord_out_of_reach_at_start_is_one_line_then_retries_until_it_connects(e2e: E2E) -> None:
    relay = Relay(e2e.fake.port)
    try:
        run = await e2e.start_bot(wait=False, DISCORD_API_BASE_URL=relay.url)
        await e2e.wait_until(lambda: "Discord still unreachable" in run.log(), "a second attempt")
        assert run.running, run.log()
        await relay.open()  # the network comes back
        await e2e.wait_ready(run, ready_before=0)
        started = await e2e.generate("A lighthouse after the storm")
        await e2e.wait_announcement(started.generation_id)
    finally:
        await relay.close()
    output = run.log()
    unreachable = [line for line in output.splitlines() if "Can't reach Discord" in line]
    assert len(unreachable) == 1, output
    assert relay.url in unreachable[0] and "retrying in" in unreachable[0]
    assert "Traceback" not in output and "Unclosed" not in output
    assert not any(warning in output for warning in VOICE_WARNINGS)
    e2e.finish()


async def test_a_stop_while_discord_is_out_of_reach_ends_the_bot_at_once(e2e: E2E) -> None:
    relay = Relay(e2e.fake.port)
    try:
        run = await e2e.start_bot(wait=False, DISCORD_API_BASE_URL=relay.url)
        await e2e.wait_until(lambda: "Can't reach Discord" in run.log(), "the unreachable line")
        status, took = await e2e.terminate_bot()
    finally:
        await relay.close()
    assert status == 0 and took < 5
    assert "Traceback" not in run.log()


async def test_metrics_show_commands_generations_spend_and_errors(e2e: E2E) -> None:
    port = free_port()
    run = await e2e.start_bot(METRICS_PORT=str(port))
    assert f"Serving Prometheus metrics on http://127.0.0.1:{port}/metrics" in run.log()

    started = await e2e.generate("A paper boat in the rain")
    # One look-up answered 502, and one 429 from Discord on the announcement: both must be counted.
    e2e.sim.state.lookup_faults.append(502)
    e2e.fake.rate_limit_next(1, f"/channels/{e2e.fake.general.id}/messages", retry_after=0.2, method="POST")
    await e2e.wait_announcement(started.generation_id)
    refused = await e2e.ask("generate", {"prompt": "ab"})
    assert_private(refused)

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP)) as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()

    assert metric(text, "videobot_commands_total", command="generate", outcome="ok") == 1
    assert metric(text, "videobot_commands_total", command="generate", outcome="refused") == 1
    assert metric(text, "videobot_command_ack_seconds_count") == 2
    assert 0 < metric(text, "videobot_command_ack_seconds_sum") < 2 * 3
    assert metric(text, "videobot_generations", state="completed") == 1
    assert metric(text, "videobot_generations", state="running") == 0
    assert metric(text, "videobot_generations_running") == 0 and metric(text, "videobot_generations_waiting") == 0
    assert metric(text, "videobot_tokens_spent") == 500_000
    assert metric(text, "videobot_api_request_seconds_count", operation="create") == 1
    assert metric(text, "videobot_api_request_seconds_count", operation="lookup") >= 2
    assert metric(text, "videobot_api_errors_total", operation="lookup", status="502") == 1
    assert metric(text, "videobot_discord_rate_limited_total") == 1
    assert metric(text, "videobot_announcement_delay_seconds_count") == 1
    e2e.finish()


async def test_a_busy_metrics_port_is_one_configuration_line(e2e: E2E) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await e2e.start_bot(wait=False, METRICS_PORT=str(port))
        status = await asyncio.wait_for(run.process.wait(), STEP)
    output = run.log()
    assert status == 2
    assert [line for line in output.splitlines() if "METRICS_PORT" in line] == [
        f"Configuration error: METRICS_PORT {port} can't be used on 127.0.0.1: another program uses it"
    ], output
    assert "Traceback" not in output and not e2e.fake.connected


async def test_the_health_check_passes_while_the_bot_runs_and_fails_once_it_stops(e2e: E2E) -> None:
    await e2e.start_bot()

    async def health() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.health",
            cwd=e2e.tmp_path,
            env=e2e._process_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), STEP)
        return await process.wait(), output.decode()

    heartbeat = e2e.db_path.with_name(e2e.db_path.name + ".heartbeat")
    await e2e.wait_until(lambda: '"discord_connected": true' in read(heartbeat), "a connected heartbeat", 15)
    status, output = await health()
    assert status == 0 and output.startswith("healthy: connected to Discord"), output

    await e2e.terminate_bot()
    status, output = await health()
    assert status == 1 and output.startswith("unhealthy: no heartbeat"), output
