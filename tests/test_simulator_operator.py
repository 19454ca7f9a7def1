"""The simulator as an operator meets it: what it charges, its --help, a busy port, its video links."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.simulator import RunningSimulator, SimulatorConfig, run_simulator
from tests.conftest import FakeClock

KEY = "operator-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPO_ROOT = Path(__file__).resolve().parent.parent
START = 1_000_000_000.0


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(api_key=KEY, processing_after=1.0, complete_after=3.0, balance=START)
    async with run_simulator(config, clock=clock) as running:
        yield running


async def _call(sim: RunningSimulator, method: str, path: str, body: Any = None, **params: str) -> Any:
    async with (
        aiohttp.ClientSession(base_url=sim.base_url, headers=AUTH) as http,
        http.request(method, path, json=body, params=params) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _balance(sim: RunningSimulator) -> float:
    return float((await _call(sim, "GET", "/v1/billing/balance"))["balance"])


async def test_failed_generations_are_not_charged_and_finished_ones_are(
    sim: RunningSimulator, clock: FakeClock
) -> None:
    ok = await _call(sim, "POST", "/luma-ai/generations", {"user_prompt": "A quiet harbour"})
    bad = await _call(sim, "POST", "/luma-ai/generations", {"user_prompt": "A storm #fail"})
    v2_bad = await _call(sim, "POST", "/v2/video/generations", {"model": "luma/ray-2", "prompt": "Ash #fail"})
    # While they run, each accepted create is held.
    assert await _balance(sim) == START - 2 * 500_000 - 120_000  # a Ray 2 video costs what its answer reports
    clock.advance(5)
    found = await _call(sim, "GET", "/luma-ai/generation", ids=f"{ok['id']},{bad['id']}")
    assert {g["id"]: g["state"] for g in found} == {ok["id"]: "completed", bad["id"]: "failed"}
    assert (await _call(sim, "GET", "/v2/video/generations", generation_id=v2_bad["id"]))["status"] == "error"
    # Once they failed, the failures are given back, on both endpoints; the finished one stays paid.
    assert await _balance(sim) == START - 500_000
    assert (await _call(sim, "GET", "/v2/billing"))["balance"] == START - 500_000


async def test_a_generation_failed_by_the_controls_is_given_back_once(sim: RunningSimulator) -> None:
    made = await _call(sim, "POST", "/luma-ai/generations", {"user_prompt": "A kite"})
    await _call(sim, "POST", f"/_sim/generations/{made['id']}/fail")
    assert await _balance(sim) == START
    assert await _balance(sim) == START  # read twice: refunded once


async def test_a_finished_v2_answer_carries_every_documented_field(sim: RunningSimulator, clock: FakeClock) -> None:
    made = await _call(sim, "POST", "/v2/video/generations", {"model": "luma/ray-2", "prompt": "A lantern"})
    clock.advance(5)
    done = await _call(sim, "GET", "/v2/video/generations", generation_id=made["id"])
    assert set(done) >= {"id", "status", "video", "error", "meta"}
    assert done["meta"]["usage"] == {"credits_used": 120_000, "usd_spent": 0.06}


def _simulator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.simulator", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_help_explains_every_option_with_its_default_and_the_controls() -> None:
    result = _simulator("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines to the terminal's width
    for option, default in [
        ("--port", "(default: 8787)"),
        ("--api-key", "(default: sim-key)"),
        ("--complete-after", "(default: 20.0)"),
        ("--processing-after", "(default: 5.0)"),
        ("--lookup-fault-rate", "(default: 0.0)"),
        ("--fail-marker", "(default: #fail)"),
        ("--public-base-url", "(default: the address the request came to)"),
    ]:
        described = text.split(option, 2)[-1]  # past the usage line, in the option's own entry
        assert default in described.split(" --")[0], f"{option} has no description or default in --help"
    for control in ("/_sim/state", "/_sim/config", "/_sim/create_faults", "/_sim/lookup_faults", "/_sim/list_faults"):
        assert control in text
    assert "Discord cannot fetch them from 127.0.0.1" in text


def test_a_busy_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _simulator("--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Simulator not started: port {port} on 127.0.0.1 is already in use (another simulator?); "
        "choose another with --port"
    )
    assert "Traceback" not in result.stdout + result.stderr


async def test_video_links_use_the_public_base_url(clock: FakeClock) -> None:
    config = SimulatorConfig(api_key=KEY, complete_after=1.0, public_base_url="https://sim.example.org/")
    async with run_simulator(config, clock=clock) as running:
        made = await _call(running, "POST", "/luma-ai/generations", {"user_prompt": "A comet"})
        clock.advance(2)
        [done] = await _call(running, "GET", "/luma-ai/generation", ids=made["id"])
    assert done["video"]["url"] == f"https://sim.example.org/videos/{made['id']}.mp4"
