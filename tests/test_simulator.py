"""The simulator, driven over real HTTP on 127.0.0.1 with a fake clock."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.simulator import RunningSimulator, SimulatorConfig, run_simulator
from tests.conftest import FakeClock

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CREATE = "/luma-ai/generations"
LOOKUP = "/luma-ai/generation"
V2 = "/v2/video/generations"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(api_key=KEY, processing_after=1.0, complete_after=3.0, seed=7, slow_seconds=0.05)


@pytest.fixture
async def sim(config: SimulatorConfig, clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(config, clock=clock) as running:
        yield running


@pytest.fixture
async def http(sim: RunningSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(base_url=sim.base_url, headers=AUTH, timeout=timeout) as session:
        yield session


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(path, json=body) as resp:
        return resp.status, await resp.json()


async def get(http: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, Any]:
    async with http.get(path, params=params) as resp:
        return resp.status, await resp.json()


async def create(http: aiohttp.ClientSession, prompt: str = "Flying jellyfish", **extra: Any) -> dict[str, Any]:
    status, body = await post(http, CREATE, {"user_prompt": prompt, "aspect_ratio": "16:9", **extra})
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def lookup_one(http: aiohttp.ClientSession, gen_id: str) -> dict[str, Any]:
    status, body = await get(http, LOOKUP, **{"ids[0]": gen_id})
    assert status == 200
    assert len(body) == 1
    return dict(body[0])


def assert_error_body(body: Any, status: int, path: str) -> None:
    assert body["statusCode"] == status
    assert body["path"] == path
    assert isinstance(body["message"], str) and body["message"]
    uuid.UUID(body["requestId"])
    assert body["timestamp"].endswith("Z")


# ---------------------------------------------------------------- auth and validation


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}])
async def test_missing_or_wrong_key_is_401(sim: RunningSimulator, headers: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession(base_url=sim.base_url, headers=headers) as session,
        session.post(CREATE, json={"user_prompt": "Flying jellyfish"}) as resp,
    ):
        assert resp.status == 401
        assert_error_body(await resp.json(), 401, CREATE)
    assert sim.state.create_count == 0
    assert sim.state.requests[-1].status == 401


@pytest.mark.parametrize(
    "body",
    [
        {"user_prompt": " a  ", "aspect_ratio": "16:9"},
        {"user_prompt": "x" * 5001},
        {"aspect_ratio": "16:9"},
        {"user_prompt": 42},
        {"user_prompt": "Flying jellyfish", "aspect_ratio": "2:1"},
        {"user_prompt": "Flying jellyfish", "expand_prompt": "yes"},
        {"user_prompt": "Flying jellyfish", "image_url": 3},
        ["not", "an", "object"],
    ],
)
async def test_create_validation_is_400(sim: RunningSimulator, http: aiohttp.ClientSession, body: Any) -> None:
    status, answer = await post(http, CREATE, body)
    assert status == 400
    assert answer["message"] == "Body validation error!"
    assert answer["details"] and all(isinstance(d, str) for d in answer["details"])
    assert sim.state.create_count == 0
    assert sim.state.generations == {}


async def test_non_json_body_is_400(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(CREATE, data=b"user_prompt=hello") as resp:
        assert resp.status == 400
        assert_error_body(await resp.json(), 400, CREATE)


async def test_unknown_route_answers_error_body(http: aiohttp.ClientSession) -> None:
    status, body = await get(http, "/luma-ai/nothing-here")
    assert status == 404
    assert_error_body(body, 404, "/luma-ai/nothing-here")


# ---------------------------------------------------------------- legacy lifecycle


async def test_state_progression_to_completed(
    sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    gen = await create(http, expand_prompt=True)
    uuid.UUID(gen["id"])
    assert gen["state"] == "pending"
    assert gen["prompt"] == "Flying jellyfish"
    assert gen["created_at"].endswith("Z")
    assert gen["estimate_wait_seconds"] == 3
    assert gen["liked"] is None and gen["video"] is None

    clock.advance(1.5)
    assert (await lookup_one(http, gen["id"]))["state"] == "processing"

    clock.advance(2.0)
    done = await lookup_one(http, gen["id"])
    assert done["state"] == "completed"
    assert done["estimate_wait_seconds"] is None
    video = done["video"]
    assert video["url"] == f"{sim.base_url}/videos/{gen['id']}.mp4"
    assert (video["width"], video["height"]) == (1360, 752)
    assert video["thumbnail"] == f"{sim.base_url}/videos/{gen['id']}.jpg"
    assert done["last_frame"]["url"] == f"{sim.base_url}/videos/{gen['id']}-last.jpg"

    # Files are served without auth, as a CDN would.
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(video["url"]) as resp:
            assert resp.status == 200
            assert resp.content_type == "video/mp4"
            assert await resp.read()
        async with anonymous.get(video["thumbnail"]) as resp:
            assert resp.content_type == "image/jpeg"


async def test_v1_prefix_and_public_base_url(
    config: SimulatorConfig, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config.public_base_url = "https://cdn.example.test/"
    status, gen = await post(http, "/v1" + CREATE, {"user_prompt": "Flying jellyfish"})
    assert status == 200
    clock.advance(10)
    status, found = await get(http, "/v1" + LOOKUP, ids=gen["id"])
    assert status == 200
    assert found[0]["video"]["url"] == f"https://cdn.example.test/videos/{gen['id']}.mp4"


async def test_fail_marker_ends_failed(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    gen = await create(http, "A jellyfish that will #FAIL to render")
    clock.advance(10)
    failed = await lookup_one(http, gen["id"])
    assert failed["state"] == "failed"
    assert failed["failure_reason"] == "The generation failed (simulated)."
    assert failed["video"] is None


async def test_batch_lookup_formats_and_unknown_ids(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    ids = [(await create(http, f"Jellyfish number {n}"))["id"] for n in range(5)]
    params = {f"ids[{n}]": gen_id for n, gen_id in enumerate([*ids, "unknown-id"])}
    status, found = await get(http, LOOKUP, **params)
    assert status == 200
    assert sorted(g["id"] for g in found) == sorted(ids)

    status, found = await get(http, LOOKUP, ids=f"{ids[0]},{ids[1]},missing")
    assert status == 200
    assert {g["id"] for g in found} == {ids[0], ids[1]}

    # The order is shuffled so a client matching by position would break.
    orders = set()
    for _ in range(10):
        _, found = await get(http, LOOKUP, **params)
        orders.add(tuple(g["id"] for g in found))
    assert len(orders) > 1

    too_many = {f"ids[{n}]": f"id-{n}" for n in range(101)}
    status, body = await get(http, LOOKUP, **too_many)
    assert status == 400
    assert "100" in body["details"][0]
    assert sim.state.count("GET", LOOKUP) == 13


async def test_legacy_extend(sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    parent = await create(http)
    status, body = await post(http, f"{CREATE}/{parent['id']}/extend", {"user_prompt": "and then it swims"})
    assert status == 400
    assert "completed" in body["message"].lower()

    status, body = await post(http, f"{CREATE}/{uuid.uuid4()}/extend", {"user_prompt": "and then it swims"})
    assert status == 404

    clock.advance(5)
    status, child = await post(http, f"{CREATE}/{parent['id']}/extend", {"user_prompt": "and then it swims"})
    assert status == 200
    assert child["id"] != parent["id"]
    assert child["state"] == "pending"
    assert sim.state.generations[child["id"]].parent_id == parent["id"]
    assert sim.state.create_count == 2
    assert sim.state.count("POST", "/luma-ai/generations/{id}/extend") == 3


# ---------------------------------------------------------------- v2 endpoint


async def test_v2_create_lookup_and_extend(
    sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    body = {"model": "luma/ray-2", "prompt": "Flying jellyfish", "resolution": "720p", "duration": "9"}
    status, gen = await post(http, V2, body)
    assert status == 200
    assert gen["id"].endswith(":luma/ray-2")
    assert gen["status"] == "queued"
    assert gen["video"] is None and gen["error"] is None
    assert "meta" not in gen

    clock.advance(1.5)
    status, found = await get(http, V2, generation_id=gen["id"])
    assert (status, found["status"]) == (200, "generating")

    extend = {"model": "luma/ray-flash-2", "prompt": "it swims away", "keyframes": {"frame0": {}}}
    extend["keyframes"] = {"frame0": {"type": "generation", "id": gen["id"]}}
    status, answer = await post(http, V2, extend)
    assert status == 400
    assert "completed" in answer["message"].lower()

    clock.advance(2)
    status, found = await get(http, V2, generation_id=gen["id"])
    assert found["status"] == "completed"
    assert found["video"]["url"].endswith(".mp4")
    # Ray 2's 120 000 for 5 s at 720p, for 9 s.
    assert found["meta"]["usage"] == {"credits_used": 216_000, "usd_spent": 0.108}

    status, child = await post(http, V2, extend)
    assert status == 200
    assert child["id"].endswith(":luma/ray-flash-2")
    assert sim.state.generations[child["id"]].parent_id == gen["id"]

    extend["keyframes"] = {"frame0": {"type": "generation", "id": f"{uuid.uuid4()}:luma/ray-2"}}
    status, _ = await post(http, V2, extend)
    assert status == 404

    status, _ = await get(http, V2, generation_id="nope:luma/ray-2")
    assert status == 404
    # The legacy look-up only knows legacy generations.
    status, found = await get(http, LOOKUP, ids=gen["id"])
    assert (status, found) == (200, [])
    assert sim.state.create_count == 2


@pytest.mark.parametrize(
    "body",
    [
        {"model": "luma/ray-3", "prompt": "Flying jellyfish"},
        {"prompt": "Flying jellyfish"},
        {"model": "luma/ray-2", "prompt": "no"},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "duration": 7},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "duration": True},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "resolution": "8k"},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "aspect_ratio": "5:4"},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "loop": "no"},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "keyframes": {"frame1": {"type": "generation"}}},
        {"model": "luma/ray-2", "prompt": "Flying jellyfish", "keyframes": {"frame0": {"type": "image"}}},
    ],
)
async def test_v2_validation_is_400(sim: RunningSimulator, http: aiohttp.ClientSession, body: Any) -> None:
    status, answer = await post(http, V2, body)
    assert status == 400
    assert answer["message"] == "Body validation error!"
    assert sim.state.create_count == 0


async def test_v2_failure_and_image_keyframes(
    sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    frames = {"frame0": {"type": "image", "url": "https://x.test/a.jpg"}, "frame1": {"type": "image", "url": "b"}}
    body = {"model": "luma/ray-2", "prompt": "jellyfish #fail", "keyframes": frames, "loop": True}
    status, gen = await post(http, V2, body)
    assert status == 200
    stored = sim.state.generations[gen["id"]]
    assert (stored.image_url, stored.image_end_url, stored.model) == ("https://x.test/a.jpg", "b", "luma/ray-2")
    clock.advance(10)
    _, found = await get(http, V2, generation_id=gen["id"])
    assert found["status"] == "error"
    assert found["error"]["message"] == "The generation failed (simulated)."
    assert found["video"] is None


# ---------------------------------------------------------------- retirement and billing


async def test_legacy_disabled_answers_404(
    sim: RunningSimulator, config: SimulatorConfig, http: aiohttp.ClientSession
) -> None:
    gen = await create(http)
    config.legacy_enabled = False
    for path in (CREATE, "/v1" + CREATE):
        status, body = await post(http, path, {"user_prompt": "Flying jellyfish"})
        assert status == 404
        assert_error_body(body, 404, path)
    status, _ = await get(http, LOOKUP, ids=gen["id"])
    assert status == 404
    status, _ = await post(http, V2, {"model": "luma/ray-2", "prompt": "Flying jellyfish"})
    assert status == 200
    assert sim.state.create_count == 2


async def test_balance_deducts_and_runs_out(
    sim: RunningSimulator, config: SimulatorConfig, http: aiohttp.ClientSession
) -> None:
    async with http.post("/_sim/config", json={"balance": 1_100_000}) as resp:
        assert resp.status == 200
    await create(http)  # 500 000 (the legacy price)
    status, _ = await post(http, V2, {"model": "luma/ray-2", "prompt": "Flying jellyfish"})
    assert status == 200  # 120 000 (Ray 2, 5 s at 720p): 480 000 left
    status, body = await post(http, CREATE, {"user_prompt": "Flying jellyfish"})
    assert status == 403
    assert body["message"] == "You've run out of credits"
    assert sim.state.create_count == 2
    assert sim.state.balance == 480_000

    status, balance = await get(http, "/v1/billing/balance")
    assert status == 200
    assert balance["balance"] == 480_000
    assert balance["lowBalance"] is True
    assert balance["status"] == "current"
    status, balance = await get(http, "/v2/billing")
    assert (status, balance) == (200, {"balance": 480_000, "lowBalance": True})


# ---------------------------------------------------------------- faults


async def test_queued_create_faults(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.state.create_faults.extend([429, "reset", "accept_then_500", "accept_then_reset", 503])
    body = {"user_prompt": "Flying jellyfish"}

    status, answer = await post(http, CREATE, body)
    assert (status, answer["statusCode"]) == (429, 429)
    assert sim.state.create_count == 0

    with pytest.raises(aiohttp.ClientError):
        await post(http, CREATE, body)
    assert sim.state.create_count == 0

    status, answer = await post(http, CREATE, body)
    assert status == 500
    assert sim.state.create_count == 1  # accepted although the client saw an error
    assert len(sim.state.generations) == 1

    with pytest.raises(aiohttp.ClientError):
        await post(http, f"/v1{V2}", {"model": "luma/ray-2", "prompt": "Flying jellyfish"})
    assert sim.state.create_count == 2

    status, _ = await post(http, CREATE, body)
    assert status == 503
    await create(http)
    assert sim.state.create_count == 3
    assert sim.state.balance == 1_000_000_000 - 2 * 500_000 - 120_000  # two legacy videos and a Ray 2 one
    assert sim.state.count("POST", CREATE) == 5
    assert [r.status for r in sim.state.requests] == [429, None, 500, None, 503, 200]


async def test_queued_lookup_faults(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    gen = await create(http)
    sim.state.lookup_faults.extend([502, "malformed", "reset", "reset", "slow", 504])

    status, body = await get(http, LOOKUP, ids=gen["id"])
    assert (status, body["statusCode"]) == (502, 502)

    async with http.get(LOOKUP, params={"ids": gen["id"]}) as resp:
        assert resp.status == 200
        with pytest.raises(json.JSONDecodeError):
            await resp.json()

    # aiohttp resends an idempotent request once after a dropped connection, so it takes two resets
    # for the client to see one; the simulator records both attempts.
    with pytest.raises(aiohttp.ClientError):
        await get(http, LOOKUP, ids=gen["id"])
    assert [r.status for r in sim.state.requests[-2:]] == [None, None]

    started = time.monotonic()
    status, found = await get(http, LOOKUP, ids=gen["id"])
    assert time.monotonic() - started >= 0.05
    assert (status, found[0]["id"]) == (200, gen["id"])

    # Faults are shared by both look-up endpoints.
    status, body = await get(http, V2, generation_id="whatever:luma/ray-2")
    assert (status, body["message"]) == (504, "Generation timeout")
    assert sim.state.count("GET", LOOKUP) == 5
    assert sim.state.count("GET", V2) == 1


async def test_random_lookup_faults(
    sim: RunningSimulator, config: SimulatorConfig, http: aiohttp.ClientSession
) -> None:
    gen = await create(http)
    config.lookup_fault_rate = 1.0
    config.slow_seconds = 0.01
    seen: set[int | str] = set()
    for _ in range(30):
        try:
            async with http.get(LOOKUP, params={"ids": gen["id"]}) as resp:
                try:
                    json.loads(await resp.text())
                    seen.add(resp.status)
                except ValueError:
                    seen.add("malformed")
        except aiohttp.ClientError:
            seen.add("reset")
    assert {"malformed", 429, 500, 502, 504, 200} <= seen
    lookups = [r for r in sim.state.requests if r.path == LOOKUP]
    assert None in {r.status for r in lookups}  # resets, even when aiohttp's own resend hid them
    assert len(lookups) >= 30

    config.lookup_fault_rate = 0.0
    for _ in range(10):
        assert (await lookup_one(http, gen["id"]))["id"] == gen["id"]


# ---------------------------------------------------------------- control endpoints


async def test_control_endpoints(sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    anonymous = aiohttp.ClientSession(base_url=sim.base_url)
    async with anonymous:
        async with anonymous.post("/_sim/config", json={"processing_after": 0, "complete_after": 100}) as resp:
            assert resp.status == 200
            assert (await resp.json())["complete_after"] == 100
        async with anonymous.post("/_sim/config", json={"api_key": "x", "complete_after": "soon"}) as resp:
            assert resp.status == 400
            assert len((await resp.json())["details"]) == 2

        legacy = await create(http)
        v2 = (await post(http, V2, {"model": "luma/ray-2", "prompt": "Flying jellyfish"}))[1]
        assert (await lookup_one(http, legacy["id"]))["state"] == "processing"

        async with anonymous.post(f"/_sim/generations/{legacy['id']}/complete") as resp:
            assert (resp.status, await resp.json()) == (200, {"id": legacy["id"], "state": "completed"})
        async with anonymous.post(f"/_sim/generations/{v2['id']}/fail") as resp:
            assert resp.status == 200
        async with anonymous.post("/_sim/generations/unknown/fail") as resp:
            assert resp.status == 404
        assert (await lookup_one(http, legacy["id"]))["state"] == "completed"
        assert (await get(http, V2, generation_id=v2["id"]))[1]["status"] == "error"

        async with anonymous.post("/_sim/create_faults", json={"faults": [500, "accept_then_500"]}) as resp:
            assert resp.status == 200
        async with anonymous.post("/_sim/create_faults", json={"faults": ["explode"]}) as resp:
            assert resp.status == 400
        async with anonymous.post("/_sim/lookup_faults", json={"faults": ["slow", 429]}) as resp:
            assert resp.status == 200
        async with anonymous.post("/_sim/lookup_faults", json={"faults": ["accept_then_500"]}) as resp:
            assert resp.status == 400
        assert list(sim.state.create_faults) == [500, "accept_then_500"]
        assert list(sim.state.lookup_faults) == ["slow", 429]

        async with anonymous.get("/_sim/state") as resp:
            state = await resp.json()
    assert state["create_count"] == 2
    # The failed one was given back: failures are not charged.
    assert state["balance"] == 1_000_000_000 - 500_000
    by_id = {g["id"]: g for g in state["generations"]}
    assert by_id[legacy["id"]] == {
        "id": legacy["id"],
        "state": "completed",
        "prompt": "Flying jellyfish",
        "parent_id": None,
        "kind": "legacy",
        "model": None,
        "credits": 0,
        "options": {},
    }
    assert by_id[v2["id"]]["state"] == "failed"
    assert state["request_counts"][f"POST {CREATE}"] == 1
    assert state["request_counts"][f"GET {LOOKUP}"] == 2
    assert state["endpoint_counts"][f"GET {V2}"] == 1


# ---------------------------------------------------------------- CLI


async def test_cli_starts_prints_and_stops_on_sigterm() -> None:
    if sys.platform == "win32":
        pytest.skip("SIGTERM handling is POSIX only")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.simulator",
        "--port",
        "0",
        "--api-key",
        "cli-key",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=15)).decode().strip()
        assert line.startswith("Simulator listening on http://127.0.0.1:")
        assert line.endswith("(API key: cli-key)")
        base_url = line.split()[3]
        async with (
            aiohttp.ClientSession(base_url=base_url) as session,
            session.get("/v2/billing", headers={"Authorization": "Bearer cli-key"}) as resp,
        ):
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_failed_video_given_back_pays_for_the_next_create_without_a_balance_read_between(
    sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with http.post("/_sim/config", json={"balance": 600_000}) as resp:
        assert resp.status == 200
    await create(http, "A jellyfish that will #FAIL to render")  # 500 000 charged, 100 000 left
    clock.advance(10)  # it has failed: its 500 000 are due back, though nobody read the balance since
    status, _ = await post(http, CREATE, {"user_prompt": "A second jellyfish"})
    assert status == 200
    assert sim.state.balance == 100_000
