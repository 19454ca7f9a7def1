"""Offline simulator of the AI/ML video API (Luma Dream Machine, legacy and v2 endpoints).

Used by the tests over loopback and by server owners who want to try the bot without spending tokens.
Self-contained on purpose (stdlib + aiohttp only) so it can run without the bot's configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import errno
import hmac
import json
import logging
import math
import os
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
RAY_32 = "luma/ray-3.2"
V2_MODELS = frozenset({"luma/ray-2", "luma/ray-flash-2", RAY_32})
V2_RESOLUTIONS = frozenset({"540p", "720p", "1080p", "4k"})
RAY_32_RESOLUTIONS = frozenset({"360p", "540p", "720p", "1080p"})
RAY_32_ASPECT_RATIOS = ASPECT_RATIOS - {"9:21"}
RAY_32_TYPES = frozenset({"video", "video_edit", "video_reframe"})
PROMPT_MIN, PROMPT_MAX = 3, 5000
MAX_LOOKUP_IDS = 100
# What a /v2 video costs (meta.usage): a model's price for 5 s at 720p, scaled by resolution, length and HDR.
V2_BASE_CREDITS = {"luma/ray-2": 120_000, "luma/ray-flash-2": 60_000, RAY_32: 200_000}
V2_RESOLUTION_FACTORS = {"360p": 0.5, "540p": 0.75, "720p": 1.0, "1080p": 2.0, "4k": 4.0}
HDR_FACTOR = 1.5
USD_PER_CREDIT = 0.06 / 120_000
FAILURE_REASON = "The generation failed (simulated)."

# Fault vocabularies: an int is an HTTP status answered with an error body.
CreateFault = int | str
LookupFault = int | str
# "accept_then_slow" accepts the generation, then holds the answer for `slow_seconds`: a create in flight whose
# outcome the client cannot know yet (end-to-end tests kill the bot in that window).
CREATE_FAULT_NAMES = frozenset({"reset", "accept_then_500", "accept_then_reset", "accept_then_slow"})
LOOKUP_FAULT_NAMES = frozenset({"slow", "reset", "malformed"})
LIST_FAULT_NAMES = frozenset({"reset"})
EXIT_CANT_LISTEN = 1
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
    # /v2 models answered 404, as if retired.
    retired_models: frozenset[str] = frozenset()
    balance: float = 1_000_000_000.0
    cost_per_video: int = 500_000
    low_balance_threshold: float = 5_000_000
    public_base_url: str | None = None
    # A round trip added to every API request, as a distant API has (the benchmark uses it to show concurrency).
    latency_seconds: float = 0.0
    # Video links that expire, as a provider's pre-signed links do: each answer gives a link valid this long from
    # then (so a later look-up gives a fresh one). 0: a link that never changes.
    link_lifetime_seconds: float = 0.0
    # The video files behind the links: their size, how long sending one takes, and the type they are served as
    # (a bot that keeps videos must cope with a big, a slow and a wrong one).
    video_bytes: int = 4096
    video_seconds: float = 0.0
    video_content_type: str = "video/mp4"


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
    # What its create took from the balance; given back when it fails (the API does not charge failures).
    charged: int = 0
    # /v2: what the answer reports it cost, and the options that set the price (and, for Ray 3.2, its task).
    credits: int = 0
    options: dict[str, Any] = field(default_factory=dict)


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
    # Faults for the account's list of generations: an HTTP status, or "reset".
    list_faults: collections.deque[LookupFault] = field(default_factory=collections.deque)
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
    return _iso_at(time.time())


def _iso_at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


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


def _video_link(request: web.Request, gen: SimGeneration) -> str:
    link = f"{_base_url(request)}/videos/{_file_stem(gen)}.mp4"
    lifetime = request.app[CONFIG_KEY].link_lifetime_seconds
    if lifetime:
        link += f"?expires={int(request.app[CLOCK_KEY]() + lifetime)}"
    return link


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
            "url": _video_link(request, gen),
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
        body["video"] = {"url": _video_link(request, gen)}
        body["meta"] = {"usage": {"credits_used": gen.credits, "usd_spent": round(gen.credits * USD_PER_CREDIT, 6)}}
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
    state = request.app[STATE_KEY]
    state.generations[gen.id] = gen
    state.create_count += 1
    gen.charged = _price(request, gen)
    # Refunds of failed generations are settled when the balance is read (_balance), not on every create.
    state.balance = _unsettled_balance(request) - gen.charged
    log.info("Accepted %s generation %s (parent %s)", gen.kind, gen.id, gen.parent_id)


def _price(request: web.Request, gen: SimGeneration) -> int:
    """A /v2 video costs what its answer reports; a legacy one the configured price."""
    return gen.credits if gen.kind == "v2" else request.app[CONFIG_KEY].cost_per_video


def _unsettled_balance(request: web.Request) -> float:
    """The balance before the refunds not yet settled: never more than the true one."""
    state = request.app[STATE_KEY]
    if state.balance is None:
        state.balance = request.app[CONFIG_KEY].balance
    return float(state.balance)


def _affordable(request: web.Request, price: int) -> bool:
    # Refunds only raise the balance: one that covers the price before them covers it after, and the look at
    # every charged generation is needed only when it does not (it costs a create O(generations) otherwise).
    return _unsettled_balance(request) >= price or _balance(request) >= price


def _balance(request: web.Request) -> float:
    state, config = request.app[STATE_KEY], request.app[CONFIG_KEY]
    if state.balance is None:
        state.balance = config.balance
    now = request.app[CLOCK_KEY]()
    for gen in state.generations.values():
        if gen.charged and _state_of(gen, config, now) == "failed":
            # Refunded when the failure shows, as the API never charges a failed generation.
            state.balance += gen.charged
            gen.charged = 0
    return state.balance


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
        created_iso=_iso_at(request.app[CLOCK_KEY]()),
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
    if not _affordable(request, _price(request, gen)):
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


async def legacy_list(request: web.Request) -> web.Response:
    """Every legacy generation of the account, oldest first, as `{"luma_generation_id", "prompt"}`."""
    state = request.app[STATE_KEY]
    if state.list_faults:
        fault = state.list_faults.popleft()
        log.info("List fault %r", fault)
        if isinstance(fault, int):
            return _error(request, fault)
        raise _abort(request)
    listed = [
        {"luma_generation_id": gen.id, "prompt": gen.prompt}
        for gen in state.generations.values()
        if gen.kind == "legacy"
    ]
    return web.json_response(listed)


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


def v2_credits(model: str, options: dict[str, Any]) -> int:
    """The simulated price of a /v2 video."""
    factor = V2_RESOLUTION_FACTORS.get(str(options.get("resolution") or "720p"), 1.0)
    factor *= int(options.get("duration") or 5) / 5
    if options.get("hdr"):
        factor *= HDR_FACTOR
    return round(V2_BASE_CREDITS.get(model, 120_000) * factor)


def _ray_32_build(request: web.Request, body: dict[str, Any]) -> BuildResult:
    """Ray 3.2's body (API.md §4): no keyframes; a `type`, plain image and video URLs, HDR under conditions."""
    details: list[str] = []
    prompt = _check_prompt(body.get("prompt"), "prompt", details)
    aspect = str(body.get("aspect_ratio") or "16:9")
    if aspect not in RAY_32_ASPECT_RATIOS:
        details.append(f"aspect_ratio must be one of {', '.join(sorted(RAY_32_ASPECT_RATIOS))}")
    task = body.get("type") or "video"
    if task not in RAY_32_TYPES:
        details.append(f"type must be one of {', '.join(sorted(RAY_32_TYPES))}")
    resolution, duration = body.get("resolution") or "720p", body.get("duration") or 5
    if resolution not in RAY_32_RESOLUTIONS:
        details.append(f"resolution must be one of {', '.join(sorted(RAY_32_RESOLUTIONS))}")
    if isinstance(duration, bool) or duration not in (5, 10):
        details.append("duration must be 5 or 10")
    if "keyframes" in body:
        details.append("keyframes is not supported by luma/ray-3.2: use image_url and last_image_url")
    if body.get("loop") is not None and (not isinstance(body["loop"], bool) or task != "video"):
        details.append("loop must be a boolean, and only for type video")
    hdr = body.get("hdr")
    if hdr is not None and not isinstance(hdr, bool):
        details.append("hdr must be a boolean")
    elif hdr and (duration != 5 or resolution not in ("720p", "1080p")):
        details.append("hdr needs duration 5 and resolution 720p or 1080p")
    if body.get("exr_export") and not hdr:
        details.append("exr_export needs hdr")
    image_url = _check_optional_str(body, "image_url", details)
    last_image_url = _check_optional_str(body, "last_image_url", details)
    video_url = _check_optional_str(body, "video_url", details)
    if task != "video" and not video_url:
        details.append(f"video_url is required for type {task}")
    if details:
        return _validation_error(request, details)
    gen = _new_generation(
        request, prompt, aspect, model=RAY_32, parent_id=None, image_url=image_url, image_end_url=last_image_url
    )
    gen.options = {"type": task, "resolution": resolution, "duration": duration, "hdr": bool(hdr)}
    if video_url:
        gen.options["video_url"] = video_url
    gen.credits = v2_credits(RAY_32, gen.options)
    return gen


def _retired(request: web.Request, model: object) -> web.Response | None:
    if model in request.app[CONFIG_KEY].retired_models:
        return _error(request, 404, f"Model {model} is no longer available")
    return None


async def v2_create(request: web.Request) -> web.Response:
    def build(body: dict[str, Any]) -> BuildResult:
        details: list[str] = []
        model = body.get("model")
        retired = _retired(request, model)
        if retired is not None:
            return retired
        if model == RAY_32:
            return _ray_32_build(request, body)
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
        gen = _new_generation(
            request,
            prompt,
            aspect,
            model=str(model),
            parent_id=parent_id,
            image_url=frame0["url"] if frame0 and frame0["type"] == "image" else None,
            image_end_url=frame1["url"] if frame1 else None,
        )
        gen.options = {"resolution": body.get("resolution") or "720p", "duration": int(duration or 5)}
        gen.credits = v2_credits(str(model), gen.options)
        return gen

    return await _create_common(request, build)


async def v2_lookup(request: web.Request) -> web.Response:
    generation_id = request.query.get("generation_id", "").strip()
    if not generation_id:
        return _validation_error(request, ["generation_id is required"])
    fault_response = await _apply_lookup_fault(request)
    if fault_response is not None:
        return fault_response
    retired = _retired(request, generation_id.partition(":")[2])
    if retired is not None:
        return retired
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


def mp4_body(size: int) -> bytes:
    """An MP4 file of `size` bytes (at least its 24-byte header): an `ftyp` box, then a `free` box of padding."""
    padding = max(0, size - len(_MP4_BYTES))
    if 0 < padding < 8:
        padding = 8  # a box needs its own 8-byte header
    free = struct.pack(">I4s", padding, b"free") + bytes(max(0, padding - 8)) if padding else b""
    return _MP4_BYTES + free


async def serve_video_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name.endswith(".mp4"):
        return await _send_video(request)
    if name.endswith((".jpg", ".jpeg")):
        return web.Response(body=_JPEG_BYTES, content_type="image/jpeg")
    return _error(request, 404)


async def _send_video(request: web.Request) -> web.StreamResponse:
    """The video in eight pieces spread over `video_seconds`, with its length announced, as a CDN sends it."""
    config = request.app[CONFIG_KEY]
    body = mp4_body(config.video_bytes)
    response = web.StreamResponse(headers={"Content-Type": config.video_content_type})
    response.content_length = len(body)
    await response.prepare(request)
    pieces = 8
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        if config.video_seconds > 0:
            await asyncio.sleep(config.video_seconds / pieces)
        await response.write(body[start : start + step])
    await response.write_eof()
    return response


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
    "video_bytes": int,
    "video_seconds": float,
    "video_content_type": str,
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
            "credits": g.credits,
            "options": g.options,
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


async def sim_list_faults(request: web.Request) -> web.Response:
    return await _queue_faults(request, request.app[STATE_KEY].list_faults, LIST_FAULT_NAMES)


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
    clock: Callable[[], float] = time.time,
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
        ("GET", "/luma-ai/generations", legacy_list),
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
    app.router.add_post("/_sim/list_faults", sim_list_faults)
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
    clock: Callable[[], float] = time.time,
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


_CONTROLS_HELP = """\
controls (no API key needed):
  GET  /_sim/state                       generations, balance and request counts as JSON
  POST /_sim/config                      change settings live, e.g. {"complete_after": 5, "balance": 0}
  POST /_sim/create_faults               queue faults for the next creates: {"faults": [500, "reset"]}
  POST /_sim/lookup_faults               queue faults for the next look-ups: {"faults": [429, "slow"]}
  POST /_sim/list_faults                 queue faults for the next reads of the list: {"faults": ["reset"]}
  POST /_sim/generations/<id>/complete   finish a generation now (or .../fail to fail it)

Video links point at this simulator (http://HOST:PORT/videos/...): Discord cannot fetch them from
127.0.0.1, so announced links do not play in Discord unless --public-base-url names an address
Discord can reach. Failed generations are not charged, as with the real API.
"""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.simulator",
        description="Offline simulator of the AI/ML video API (Luma legacy and /v2 endpoints, billing). "
        "Point the bot at it with AIML_API_BASE_URL=http://127.0.0.1:8787 and AIML_API_KEY=sim-key.",
        epilog=_CONTROLS_HELP,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: reachable from containers)")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on")
    parser.add_argument("--api-key", default="sim-key", help="the API key requests must carry (Bearer)")
    parser.add_argument(
        "--processing-after", type=float, default=5.0, help="seconds after a create until it reports 'processing'"
    )
    parser.add_argument(
        "--complete-after", type=float, default=20.0, help="seconds after a create until it is completed (or failed)"
    )
    parser.add_argument(
        "--fail-marker", default="#fail", help="a prompt containing this text fails instead of completing"
    )
    parser.add_argument(
        "--lookup-fault-rate",
        type=float,
        default=0.0,
        help="share of look-ups (0 to 1) answered with a random fault: 429, 5xx, a slow answer, a reset, bad JSON",
    )
    parser.add_argument("--slow-seconds", type=float, default=30.0, help="how long a 'slow' fault holds its answer")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every API request, like a real round trip"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random faults, to repeat a run (default: new each run)",
    )
    parser.add_argument("--balance", type=float, default=1_000_000_000.0, help="the account's starting balance")
    parser.add_argument(
        "--cost-per-video", type=int, default=500_000, help="tokens each accepted create takes from the balance"
    )
    parser.add_argument(
        "--legacy-disabled", action="store_true", help="answer 404 on the legacy /luma-ai endpoints, as if retired"
    )
    parser.add_argument(
        "--retired-model",
        action="append",
        default=[],
        metavar="MODEL",
        help="answer 404 to creates and look-ups of this /v2 model, as if retired (repeatable; default: none)",
    )
    parser.add_argument("--video-bytes", type=int, default=4096, help="size of the MP4 file served at each video link")
    parser.add_argument(
        "--video-seconds", type=float, default=0.0, help="how long sending one video file takes (a slow provider)"
    )
    parser.add_argument(
        "--video-content-type", default="video/mp4", help="the Content-Type video files are served with"
    )
    parser.add_argument(
        "--public-base-url",
        default=None,
        help="base of the video links in answers, e.g. https://sim.example.org, when Discord must fetch them "
        "(default: the address the request came to)",
    )
    return parser.parse_args(argv)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option (unless it says its own or has none), and the controls list kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default:" in text:
            return text
        return super()._get_help_string(action)


async def _serve(config: SimulatorConfig, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows; Ctrl-C then surfaces as KeyboardInterrupt, handled in main().
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        async with run_simulator(config, host=host, port=port) as sim:
            print(f"Simulator listening on {sim.base_url} (API key: {config.api_key})", flush=True)
            await stop.wait()
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            reason = "is already in use (another simulator?); choose another with --port"
        else:
            reason = f"can't be used: {os.strerror(error.errno or 0)}"
        print(f"Simulator not started: port {port} on {host} {reason}", file=sys.stderr)
        return EXIT_CANT_LISTEN
    log.info("Simulator stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulatorConfig(
        api_key=args.api_key,
        processing_after=args.processing_after,
        complete_after=args.complete_after,
        fail_marker=args.fail_marker,
        lookup_fault_rate=args.lookup_fault_rate,
        latency_seconds=args.latency,
        slow_seconds=args.slow_seconds,
        seed=args.seed,
        legacy_enabled=not args.legacy_disabled,
        retired_models=frozenset(args.retired_model),
        balance=args.balance,
        cost_per_video=args.cost_per_video,
        public_base_url=args.public_base_url,
        video_bytes=args.video_bytes,
        video_seconds=args.video_seconds,
        video_content_type=args.video_content_type,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
