"""Offline simulator of the AI/ML video API (Luma Dream Machine, legacy and v2 endpoints).

Used by the tests over loopback and by server owners who want to try the bot without spending tokens.
Self-contained on purpose (stdlib + aiohttp only) so it can run without the bot's configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hmac
import json
import logging
import math
import random
import signal
import socket
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

ASPECT_RATIOS = frozenset({"1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21"})
V2_MODELS = frozenset({"luma/ray-2", "luma/ray-flash-2"})
V2_RESOLUTIONS = frozenset({"540p", "720p", "1080p", "4k"})
PROMPT_MIN, PROMPT_MAX = 3, 5000
MAX_LOOKUP_IDS = 100
V2_CREDITS_USED = 120_000
FAILURE_REASON = "The generation failed (simulated)."

# Fault vocabularies: an int is an HTTP status answered with an error body.
CreateFault = int | str
LookupFault = int | str
# "accept_then_slow" accepts the generation, then holds the answer for `slow_seconds`: a create in flight whose
# outcome the client cannot know yet (end-to-end tests kill the bot in that window).
CREATE_FAULT_NAMES = frozenset({"reset", "accept_then_500", "accept_then_reset", "accept_then_slow"})
LOOKUP_FAULT_NAMES = frozenset({"slow", "reset", "malformed"})
RANDOM_LOOKUP_FAULTS: tuple[LookupFault, ...] = (429, 500, 502, 504, "slow", "reset", "malformed")

_STATUS_MESSAGES = {
    401: "Unauthorized: missing or invalid API key",
    403: "You've run out of credits",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Generation timeout",
}
_V2_STATUS = {"pending": "queued", "processing": "generating", "completed": "completed", "failed": "error"}
# Tiny but recognisable file headers, so a client that sniffs content sees the right kind of file.
_MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


@dataclass
class SimulatorConfig:
    api_key: str = "sim-key"
    processing_after: float = 1.0
    complete_after: float = 3.0
    fail_marker: str = "#fail"
    lookup_fault_rate: float = 0.0
    slow_seconds: float = 30.0
    seed: int | None = None
    legacy_enabled: bool = True
    balance: float = 1_000_000_000.0
    cost_per_video: int = 500_000
    low_balance_threshold: float = 5_000_000
    public_base_url: str | None = None
    # A round trip added to every API request, as a distant API has (the benchmark uses it to show concurrency).
    latency_seconds: float = 0.0


@dataclass
class SimGeneration:
    id: str
    prompt: str
    aspect_ratio: str
    created_at: float
    kind: str
    model: str | None = None
    parent_id: str | None = None
    image_url: str | None = None
    image_end_url: str | None = None
    fail: bool = False
    forced_state: str | None = None
    created_iso: str = ""


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any | None
    # Route pattern without the /v1 prefix, e.g. "POST /luma-ai/generations/{id}/extend".
    endpoint: str = ""
    # None when the simulator aborted the connection instead of answering.
    status: int | None = None
    # time.monotonic() when the request arrived and when its answer left (None until then), whatever the clock.
    received_at: float = 0.0
    answered_at: float | None = None


@dataclass
class SimulatorState:
    generations: dict[str, SimGeneration] = field(default_factory=dict)
    create_count: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    create_faults: collections.deque[CreateFault] = field(default_factory=collections.deque)
    lookup_faults: collections.deque[LookupFault] = field(default_factory=collections.deque)
    # None until create_app fills it from the config, so a caller-provided state keeps its own value.
    balance: float | None = None
    rng: random.Random = field(default_factory=random.Random)

    def count(self, method: str, endpoint: str) -> int:
        """Requests made to one route, e.g. count("GET", "/luma-ai/generation"), both prefixes included."""
        key = f"{method.upper()} {endpoint}"
        return sum(1 for r in self.requests if r.endpoint == key)


# A body validator answers either the error to send or the generation to accept.
BuildResult = web.Response | SimGeneration

STATE_KEY = web.AppKey("simulator_state", SimulatorState)
CONFIG_KEY = web.AppKey("simulator_config", SimulatorConfig)
CLOCK_KEY: web.AppKey[Callable[[], float]] = web.AppKey("simulator_clock")


class _Aborted(Exception):
    """Raised after the transport was aborted so the middleware records that nothing was answered."""


# ---------------------------------------------------------------- helpers


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _error(request: web.Request, status: int, message: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {
        "message": message or _STATUS_MESSAGES.get(status) or HTTPStatus(status).phrase,
        "path": request.path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": _iso_now(),
    }
    body.update(extra)
    return web.json_response(body, status=status)


def _validation_error(request: web.Request, details: list[str]) -> web.Response:
    return _error(request, 400, "Body validation error!", details=details)


def _abort(request: web.Request) -> _Aborted:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0 turns the close into a TCP RST: the client sees a genuine reset, not a clean EOF.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return _Aborted()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _read_json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _check_prompt(value: Any, name: str, details: list[str]) -> str:
    if not isinstance(value, str):
        details.append(f"{name} is required and must be a string")
        return ""
    stripped = value.strip()
    if not PROMPT_MIN <= len(stripped) <= PROMPT_MAX:
        details.append(f"{name} must be between {PROMPT_MIN} and {PROMPT_MAX} characters")
    return stripped


def _check_aspect_ratio(value: Any, default: str, details: list[str]) -> str:
    if value is None:
        return default
    if value not in ASPECT_RATIOS:
        details.append(f"aspect_ratio must be one of {', '.join(sorted(ASPECT_RATIOS))}")
        return default
    return str(value)


def _check_optional_str(body: dict[str, Any], name: str, details: list[str]) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        details.append(f"{name} must be a non-empty string")
        return None
    return value


def _state_of(gen: SimGeneration, config: SimulatorConfig, now: float) -> str:
    if gen.forced_state is not None:
        return gen.forced_state
    elapsed = now - gen.created_at
    if elapsed < config.processing_after:
        return "pending"
    if elapsed < config.complete_after:
        return "processing"
    return "failed" if gen.fail else "completed"


def _base_url(request: web.Request) -> str:
    configured = request.app[CONFIG_KEY].public_base_url
    return (configured or f"{request.scheme}://{request.host}").rstrip("/")


def _file_stem(gen: SimGeneration) -> str:
    # v2 ids carry a ":model" suffix with a slash in it, which does not belong in a file name.
    return gen.id.split(":", 1)[0]


def _legacy_json(request: web.Request, gen: SimGeneration) -> dict[str, Any]:
    config = request.app[CONFIG_KEY]
    now = request.app[CLOCK_KEY]()
    state = _state_of(gen, config, now)
    body: dict[str, Any] = {
        "id": gen.id,
        "prompt": gen.prompt,
        "state": state,
        "created_at": gen.created_iso,
        "estimate_wait_seconds": None,
        "liked": None,
        "video": None,
    }
    if state in ("pending", "processing"):
        body["estimate_wait_seconds"] = max(0, math.ceil(config.complete_after - (now - gen.created_at)))
    elif state == "completed":
        base, stem = _base_url(request), _file_stem(gen)
        body["video"] = {
            "url": f"{base}/videos/{stem}.mp4",
            "width": 1360,
            "height": 752,
            "thumbnail": f"{base}/videos/{stem}.jpg",
        }
        body["last_frame"] = {"url": f"{base}/videos/{stem}-last.jpg"}
    else:
        body["failure_reason"] = FAILURE_REASON
    return body


def _v2_json(request: web.Request, gen: SimGeneration) -> dict[str, Any]:
    state = _state_of(gen, request.app[CONFIG_KEY], request.app[CLOCK_KEY]())
    body: dict[str, Any] = {"id": gen.id, "status": _V2_STATUS[state], "video": None, "error": None}
    if state == "completed":
        body["video"] = {"url": f"{_base_url(request)}/videos/{_file_stem(gen)}.mp4"}
        body["meta"] = {"usage": {"credits_used": V2_CREDITS_USED}}
    elif state == "failed":
        body["error"] = {"name": "GenerationError", "message": FAILURE_REASON}
    return body


# ---------------------------------------------------------------- middleware


def _endpoint_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else request.path
    if pattern.startswith("/v1/") and not pattern.startswith("/v1/billing"):
        pattern = pattern[3:]
    return f"{request.method} {pattern}"


def _is_legacy_path(path: str) -> bool:
    return path.startswith(("/luma-ai/", "/v1/luma-ai/")) or path in ("/luma-ai", "/v1/luma-ai")


@web.middleware
async def _simulator_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state, config = request.app[STATE_KEY], request.app[CONFIG_KEY]
    body: Any | None = None
    if request.can_read_body:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = json.loads(await request.read())
    record = RecordedRequest(
        request.method, request.path, dict(request.query), body, _endpoint_of(request), received_at=time.monotonic()
    )
    state.requests.append(record)
    if config.latency_seconds > 0 and not request.path.startswith("/_sim/"):
        await asyncio.sleep(config.latency_seconds)
    response = await _dispatch(request, handler, config)
    record.status = response.status if response is not None else None
    record.answered_at = time.monotonic()
    # aiohttp still wants a response object; it cannot be delivered over an aborted transport.
    return response if response is not None else web.Response(status=500)


async def _dispatch(request: web.Request, handler: Handler, config: SimulatorConfig) -> web.StreamResponse | None:
    path = request.path
    if not path.startswith(("/_sim/", "/videos/")):
        header = request.headers.get("Authorization", "")
        expected = f"Bearer {config.api_key}"
        if not hmac.compare_digest(header.encode(), expected.encode()):
            log.info("Rejected %s %s: missing or invalid API key", request.method, path)
            return _error(request, 401)
        if not config.legacy_enabled and _is_legacy_path(path):
            return _error(request, 404, f"Cannot {request.method} {path}")
    try:
        return await handler(request)
    except _Aborted:
        return None
    except web.HTTPException as exc:
        # Router 404/405 and friends get the same error body as the real gateway.
        return _error(request, exc.status, exc.reason)


# ---------------------------------------------------------------- faults


def _next_create_fault(request: web.Request) -> CreateFault | None:
    faults = request.app[STATE_KEY].create_faults
    return faults.popleft() if faults else None


async def _apply_lookup_fault(request: web.Request) -> web.Response | None:
    """Answer with a fault, or None to answer normally (possibly after a slow delay)."""
    state, config = request.app[STATE_KEY], request.app[CONFIG_KEY]
    fault: LookupFault | None = None
    if state.lookup_faults:
        fault = state.lookup_faults.popleft()
    elif config.lookup_fault_rate > 0 and state.rng.random() < config.lookup_fault_rate:
        fault = state.rng.choice(RANDOM_LOOKUP_FAULTS)
    if fault is None:
        return None
    log.info("Look-up fault %r on %s", fault, request.path_qs)
    if isinstance(fault, int):
        return _error(request, fault)
    if fault == "reset":
        raise _abort(request)
    if fault == "malformed":
        return web.Response(status=200, body=b'[{"id": "', content_type="application/json")
    await asyncio.sleep(config.slow_seconds)
    return None


# ---------------------------------------------------------------- API handlers


def _accept(request: web.Request, gen: SimGeneration) -> None:
    state, config = request.app[STATE_KEY], request.app[CONFIG_KEY]
    state.generations[gen.id] = gen
    state.create_count += 1
    state.balance = _balance(request) - config.cost_per_video
    log.info("Accepted %s generation %s (parent %s)", gen.kind, gen.id, gen.parent_id)


def _balance(request: web.Request) -> float:
    balance = request.app[STATE_KEY].balance
    return request.app[CONFIG_KEY].balance if balance is None else balance


def _new_generation(
    request: web.Request,
    prompt: str,
    aspect_ratio: str,
    *,
    model: str | None,
    parent_id: str | None,
    image_url: str | None,
    image_end_url: str | None,
) -> SimGeneration:
    marker = request.app[CONFIG_KEY].fail_marker
    return SimGeneration(
        id=str(uuid.uuid4()) if model is None else f"{uuid.uuid4()}:{model}",
        prompt=prompt,
        aspect_ratio=aspect_ratio,
        created_at=request.app[CLOCK_KEY](),
        kind="legacy" if model is None else "v2",
        model=model,
        parent_id=parent_id,
        image_url=image_url,
        image_end_url=image_end_url,
        fail=bool(marker) and marker.lower() in prompt.lower(),
        created_iso=_iso_now(),
    )


async def _create_common(request: web.Request, build: Callable[[dict[str, Any]], BuildResult]) -> web.Response:
    """Shared create/extend flow: queued fault, validation, credits, then the answer.

    The queued fault is taken first so that it hits the next create/extend request whatever its body.
    """
    fault = _next_create_fault(request)
    if fault is not None:
        log.info("Create fault %r on %s", fault, request.path)
    if isinstance(fault, int):
        return _error(request, fault)
    if fault == "reset":
        raise _abort(request)
    body = await _read_json_object(request)
    if body is None:
        return _validation_error(request, ["request body must be a JSON object"])
    gen = build(body)
    if isinstance(gen, web.Response):
        return gen
    if _balance(request) < request.app[CONFIG_KEY].cost_per_video:
        return _error(request, 403)
    _accept(request, gen)
    if fault == "accept_then_500":
        return _error(request, 500)
    if fault == "accept_then_reset":
        raise _abort(request)
    if fault == "accept_then_slow":
        await asyncio.sleep(request.app[CONFIG_KEY].slow_seconds)
    return web.json_response(_legacy_json(request, gen) if gen.kind == "legacy" else _v2_json(request, gen))


def _completed_parent(request: web.Request, parent_id: str) -> SimGeneration | web.Response:
    parent = request.app[STATE_KEY].generations.get(parent_id)
    if parent is None:
        return _error(request, 404, f"Generation {parent_id} not found")
    if _state_of(parent, request.app[CONFIG_KEY], request.app[CLOCK_KEY]()) != "completed":
        return _error(request, 400, "Only completed generations can be extended")
    return parent


def _legacy_build(request: web.Request, parent_id: str | None) -> Callable[[dict[str, Any]], BuildResult]:
    def build(body: dict[str, Any]) -> BuildResult:
        parent = None
        if parent_id is not None:
            found = _completed_parent(request, parent_id)
            if isinstance(found, web.Response):
                return found
            parent = found
        details: list[str] = []
        prompt = _check_prompt(body.get("user_prompt"), "user_prompt", details)
        aspect = _check_aspect_ratio(body.get("aspect_ratio"), parent.aspect_ratio if parent else "16:9", details)
        if "expand_prompt" in body and not isinstance(body["expand_prompt"], bool):
            details.append("expand_prompt must be a boolean")
        image_url = _check_optional_str(body, "image_url", details)
        image_end_url = _check_optional_str(body, "image_end_url", details)
        if details:
            return _validation_error(request, details)
        return _new_generation(
            request,
            prompt,
            aspect,
            model=None,
            parent_id=parent.id if parent else None,
            image_url=image_url,
            image_end_url=image_end_url,
        )

    return build


async def legacy_create(request: web.Request) -> web.Response:
    return await _create_common(request, _legacy_build(request, None))


async def legacy_extend(request: web.Request) -> web.Response:
    return await _create_common(request, _legacy_build(request, request.match_info["id"]))


def _parse_ids(request: web.Request) -> list[str]:
    ids: list[str] = []
    for key, value in request.query.items():
        if key == "ids" or (key.startswith("ids[") and key.endswith("]")):
            ids.extend(part.strip() for part in value.split(","))
    return list(dict.fromkeys(i for i in ids if i))


async def legacy_lookup(request: web.Request) -> web.Response:
    ids = _parse_ids(request)
    if not ids:
        return _validation_error(request, ["ids must contain at least one id"])
    if len(ids) > MAX_LOOKUP_IDS:
        return _validation_error(request, [f"ids must contain at most {MAX_LOOKUP_IDS} ids"])
    fault_response = await _apply_lookup_fault(request)
    if fault_response is not None:
        return fault_response
    generations = request.app[STATE_KEY].generations
    found = [_legacy_json(request, generations[i]) for i in ids if i in generations and generations[i].kind == "legacy"]
    # Shuffled on purpose: the client must match by id, never by position.
    request.app[STATE_KEY].rng.shuffle(found)
    return web.json_response(found)


def _check_frame(frame: Any, name: str, allow_generation: bool, details: list[str]) -> dict[str, str] | None:
    if frame is None:
        return None
    kinds = ("generation", "image") if allow_generation else ("image",)
    if not isinstance(frame, dict) or frame.get("type") not in kinds:
        details.append(f"keyframes.{name}.type must be one of {', '.join(kinds)}")
        return None
    key = "id" if frame["type"] == "generation" else "url"
    if not isinstance(frame.get(key), str) or not frame[key]:
        details.append(f"keyframes.{name}.{key} must be a non-empty string")
        return None
    return {"type": frame["type"], key: frame[key]}


async def v2_create(request: web.Request) -> web.Response:
    def build(body: dict[str, Any]) -> BuildResult:
        details: list[str] = []
        model = body.get("model")
        if model not in V2_MODELS:
            details.append(f"model must be one of {', '.join(sorted(V2_MODELS))}")
        prompt = _check_prompt(body.get("prompt"), "prompt", details)
        aspect = _check_aspect_ratio(body.get("aspect_ratio"), "16:9", details)
        if body.get("resolution") is not None and body["resolution"] not in V2_RESOLUTIONS:
            details.append(f"resolution must be one of {', '.join(sorted(V2_RESOLUTIONS))}")
        duration = body.get("duration")
        if duration is not None and (isinstance(duration, bool) or duration not in (5, 9, "5", "9")):
            details.append("duration must be 5 or 9")
        if body.get("loop") is not None and not isinstance(body["loop"], bool):
            details.append("loop must be a boolean")
        keyframes = body.get("keyframes") or {}
        frame0 = frame1 = None
        if not isinstance(keyframes, dict) or set(keyframes) - {"frame0", "frame1"}:
            details.append("keyframes may only contain frame0 and frame1")
        else:
            frame0 = _check_frame(keyframes.get("frame0"), "frame0", True, details)
            frame1 = _check_frame(keyframes.get("frame1"), "frame1", False, details)
        if details:
            return _validation_error(request, details)
        parent_id = None
        if frame0 is not None and frame0["type"] == "generation":
            parent = _completed_parent(request, frame0["id"])
            if isinstance(parent, web.Response):
                return parent
            parent_id = parent.id
        return _new_generation(
            request,
            prompt,
            aspect,
            model=str(model),
            parent_id=parent_id,
            image_url=frame0["url"] if frame0 and frame0["type"] == "image" else None,
            image_end_url=frame1["url"] if frame1 else None,
        )

    return await _create_common(request, build)


async def v2_lookup(request: web.Request) -> web.Response:
    generation_id = request.query.get("generation_id", "").strip()
    if not generation_id:
        return _validation_error(request, ["generation_id is required"])
    fault_response = await _apply_lookup_fault(request)
    if fault_response is not None:
        return fault_response
    gen = request.app[STATE_KEY].generations.get(generation_id)
    if gen is None or gen.kind != "v2":
        return _error(request, 404, f"Generation {generation_id} not found")
    return web.json_response(_v2_json(request, gen))


async def billing_balance(request: web.Request) -> web.Response:
    balance = _balance(request)
    return web.json_response(
        {
            "balance": balance,
            "lowBalance": balance < request.app[CONFIG_KEY].low_balance_threshold,
            "autoDebitStatus": "disabled",
            "status": "current",
            "statusExplanation": "Balance is current and up to date",
        }
    )


async def billing_v2(request: web.Request) -> web.Response:
    balance = _balance(request)
    return web.json_response(
        {"balance": balance, "lowBalance": balance < request.app[CONFIG_KEY].low_balance_threshold}
    )


async def serve_video_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name.endswith(".mp4"):
        return web.Response(body=_MP4_BYTES, content_type="video/mp4")
    if name.endswith((".jpg", ".jpeg")):
        return web.Response(body=_JPEG_BYTES, content_type="image/jpeg")
    return _error(request, 404)


# ---------------------------------------------------------------- control endpoints (/_sim)

_LIVE_CONFIG_FIELDS: dict[str, type] = {
    "processing_after": float,
    "complete_after": float,
    "lookup_fault_rate": float,
    "slow_seconds": float,
    "latency_seconds": float,
    "balance": float,
    "low_balance_threshold": float,
    "cost_per_video": int,
    "legacy_enabled": bool,
    "fail_marker": str,
}


async def sim_state(request: web.Request) -> web.Response:
    state, config, now = request.app[STATE_KEY], request.app[CONFIG_KEY], request.app[CLOCK_KEY]()
    request_counts = collections.Counter(f"{r.method} {r.path}" for r in state.requests)
    endpoint_counts = collections.Counter(r.endpoint for r in state.requests)
    generations = [
        {
            "id": g.id,
            "state": _state_of(g, config, now),
            "prompt": g.prompt,
            "parent_id": g.parent_id,
            "kind": g.kind,
            "model": g.model,
        }
        for g in state.generations.values()
    ]
    return web.json_response(
        {
            "create_count": state.create_count,
            "balance": _balance(request),
            "generations": generations,
            "request_counts": dict(request_counts),
            "endpoint_counts": dict(endpoint_counts),
        }
    )


async def sim_config(request: web.Request) -> web.Response:
    body = await _read_json_object(request)
    if body is None:
        return _validation_error(request, ["request body must be a JSON object"])
    details: list[str] = []
    for key, value in body.items():
        expected = _LIVE_CONFIG_FIELDS.get(key)
        if expected is None:
            details.append(f"{key} cannot be changed live")
        elif (expected is bool or expected is str) and not isinstance(value, expected):
            details.append(f"{key} must be a {expected.__name__}")
        elif expected in (int, float) and not _is_number(value):
            details.append(f"{key} must be a number")
    if details:
        return _validation_error(request, details)
    config, state = request.app[CONFIG_KEY], request.app[STATE_KEY]
    for key, value in body.items():
        setattr(config, key, int(value) if _LIVE_CONFIG_FIELDS[key] is int else value)
    if "balance" in body:
        state.balance = float(body["balance"])
    log.info("Simulator config updated: %s", body)
    return web.json_response({k: getattr(config, k) for k in _LIVE_CONFIG_FIELDS})


def _valid_fault(fault: Any, names: frozenset[str]) -> bool:
    if isinstance(fault, int) and not isinstance(fault, bool):
        return 400 <= fault <= 599
    return isinstance(fault, str) and fault in names


async def _queue_faults(
    request: web.Request, queue: collections.deque[CreateFault], names: frozenset[str]
) -> web.Response:
    body = await _read_json_object(request)
    faults = body.get("faults") if body is not None else None
    if not isinstance(faults, list) or not all(_valid_fault(f, names) for f in faults):
        allowed = ", ".join(sorted(names))
        detail = f"faults must be a list of status codes (400-599) or of: {allowed}"
        return _validation_error(request, [detail])
    queue.extend(faults)
    return web.json_response({"queued": list(queue)})


async def sim_create_faults(request: web.Request) -> web.Response:
    return await _queue_faults(request, request.app[STATE_KEY].create_faults, CREATE_FAULT_NAMES)


async def sim_lookup_faults(request: web.Request) -> web.Response:
    return await _queue_faults(request, request.app[STATE_KEY].lookup_faults, LOOKUP_FAULT_NAMES)


async def sim_force_state(request: web.Request) -> web.Response:
    gen = request.app[STATE_KEY].generations.get(request.match_info["id"])
    if gen is None:
        return _error(request, 404, f"Generation {request.match_info['id']} not found")
    gen.forced_state = "completed" if request.match_info["action"] == "complete" else "failed"
    return web.json_response({"id": gen.id, "state": gen.forced_state})


# ---------------------------------------------------------------- app, runner, CLI


def create_app(
    config: SimulatorConfig,
    state: SimulatorState | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    if state is None:
        state = SimulatorState()
    if state.balance is None:
        state.balance = config.balance
    if config.seed is not None:
        state.rng.seed(config.seed)
    app = web.Application(middlewares=[_simulator_middleware])
    app[STATE_KEY] = state
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    api_routes: list[tuple[str, str, Handler]] = [
        ("POST", "/luma-ai/generations", legacy_create),
        ("GET", "/luma-ai/generation", legacy_lookup),
        ("POST", "/luma-ai/generations/{id}/extend", legacy_extend),
        ("POST", "/v2/video/generations", v2_create),
        ("GET", "/v2/video/generations", v2_lookup),
        ("GET", "/v2/billing", billing_v2),
    ]
    for method, path, handler in api_routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v1" + path, handler)
    app.router.add_get("/v1/billing/balance", billing_balance)
    app.router.add_get("/billing/balance", billing_balance)
    app.router.add_get("/videos/{name}", serve_video_file)
    app.router.add_get("/_sim/state", sim_state)
    app.router.add_post("/_sim/config", sim_config)
    app.router.add_post("/_sim/create_faults", sim_create_faults)
    app.router.add_post("/_sim/lookup_faults", sim_lookup_faults)
    # v2 ids contain "/" (":luma/ray-2"), hence the greedy pattern.
    app.router.add_post(r"/_sim/generations/{id:.+}/{action:complete|fail}", sim_force_state)
    return app


@dataclass
class RunningSimulator:
    base_url: str
    state: SimulatorState
    config: SimulatorConfig
    app: web.Application


@contextlib.asynccontextmanager
async def run_simulator(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[RunningSimulator]:
    app = create_app(config, clock=clock)
    # A short shutdown timeout so a request stuck in a "slow" fault cannot hold up the exit.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        yield RunningSimulator(f"http://{shown_host}:{bound_port}", app[STATE_KEY], config, app)
    finally:
        await runner.cleanup()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.simulator", description="Offline simulator of the AI/ML video API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--api-key", default="sim-key")
    parser.add_argument("--processing-after", type=float, default=5.0)
    parser.add_argument("--complete-after", type=float, default=20.0)
    parser.add_argument("--lookup-fault-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--legacy-disabled", action="store_true")
    parser.add_argument("--public-base-url", default=None)
    return parser.parse_args(argv)


async def _serve(config: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows; Ctrl-C then surfaces as KeyboardInterrupt, handled in main().
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with run_simulator(config, host=host, port=port) as sim:
        print(f"Simulator listening on {sim.base_url} (API key: {config.api_key})", flush=True)
        await stop.wait()
    log.info("Simulator stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulatorConfig(
        api_key=args.api_key,
        processing_after=args.processing_after,
        complete_after=args.complete_after,
        lookup_fault_rate=args.lookup_fault_rate,
        latency_seconds=args.latency,
        seed=args.seed,
        legacy_enabled=not args.legacy_disabled,
        public_base_url=args.public_base_url,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
