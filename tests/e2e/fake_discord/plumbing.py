"""HTTP and gateway plumbing shared by the server's parts: Discord-shaped errors, parsed requests, routes,
injected faults, gateway connections and sessions."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web

from .constants import JSON, Payload
from .records import FakeMessage, RecordedPart
from .world import FakeChannel, FakeGuild, FakeUser


class HTTPError(Exception):
    """Raised inside handlers to answer with a Discord-shaped error."""

    def __init__(self, status: int, message: str, code: int, errors: Payload | None = None) -> None:
        super().__init__(f"{status} {message} ({code})")
        self.status = status
        self.body: Payload = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def form_error(field_path: str, code: str, message: str) -> HTTPError:
    """A 50035 Invalid Form Body error with Discord's nested ``errors`` shape."""
    errors: Payload = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return HTTPError(400, "Invalid Form Body", 50035, errors)


UNKNOWN_CHANNEL = (404, "Unknown Channel", 10003)
UNKNOWN_GUILD = (404, "Unknown Guild", 10004)
UNKNOWN_MEMBER = (404, "Unknown Member", 10007)
UNKNOWN_MESSAGE = (404, "Unknown Message", 10008)
UNKNOWN_USER = (404, "Unknown User", 10013)
UNKNOWN_WEBHOOK = (404, "Unknown Webhook", 10015)
UNKNOWN_INTERACTION = (404, "Unknown interaction", 10062)
UNKNOWN_COMMAND = (404, "Unknown application command", 10063)
MISSING_ACCESS = (403, "Missing Access", 50001)
MISSING_PERMISSIONS = (403, "Missing Permissions", 50013)
CANNOT_DM = (403, "Cannot send messages to this user", 50007)
CANNOT_EDIT_OTHERS = (403, "Cannot edit a message authored by another user", 50005)
INVALID_WEBHOOK_TOKEN = (401, "Invalid Webhook Token", 50027)
ALREADY_ACKNOWLEDGED = (400, "Interaction has already been acknowledged.", 40060)
EMPTY_MESSAGE = (400, "Cannot send an empty message", 50006)
TOO_LARGE = (413, "Request entity too large", 40005)

SERVER_ERROR_MESSAGES = {500: "500: Internal Server Error", 502: "502: Bad Gateway", 503: "503: Service Unavailable"}


@dataclass
class GatewayConnection:
    ws: web.WebSocketResponse
    query: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: GatewaySession | None = None
    closed_by_fake: int | None = None  # the close code the fake sent, when it closed first


@dataclass
class GatewaySession:
    session_id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    connection: GatewayConnection | None = None
    ready: bool = False
    buffered: list[Payload] = field(default_factory=list)  # events while disconnected, replayed on RESUME

    @property
    def shard_id(self) -> int | None:
        return None if self.shard is None else self.shard[0]

    def serves(self, guild_id: int | None) -> bool:
        """Whether this session gets the events of a guild (None: of DMs), as Discord routes them to shards."""
        if self.shard is None:
            return True
        shard_id, shard_count = self.shard
        return shard_id == (0 if guild_id is None else shard_for(guild_id, shard_count))


def shard_for(guild_id: int, shard_count: int) -> int:
    """The shard that gets a guild's events (Discord's formula); DMs go to shard 0."""
    return (guild_id >> 22) % shard_count


def valid_shard(shard: Any) -> bool:
    """IDENTIFY's ``shard``: ``[shard_id, shard_count]`` with ``0 <= shard_id < shard_count``."""
    return (
        isinstance(shard, list)
        and len(shard) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
        and 0 <= shard[0] < shard[1]
    )


@dataclass
class Injection:
    remaining: int
    route_substring: str
    method: str | None
    status: int
    body: Payload | None
    retry_after: float = 0.0
    is_global: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.route_substring in path
            and (self.method is None or self.method.upper() == method.upper())
        )


@dataclass
class Delay:
    """Hold back the answers of the next ``remaining`` matching requests (see :meth:`FakeDiscord.delay_next`)."""

    remaining: int
    route_substring: str
    method: str | None
    seconds: float

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.route_substring in path
            and (self.method is None or self.method.upper() == method.upper())
        )


@dataclass
class Incoming:
    request: web.Request
    method: str
    path: str
    query: dict[str, str]
    json: JSON
    parts: tuple[RecordedPart, ...] | None

    @property
    def files(self) -> list[RecordedPart]:
        return [p for p in self.parts or () if p.name.startswith("files[")]

    def body(self) -> Payload:
        if isinstance(self.json, dict):
            return self.json
        if self.json is None:
            return {}
        raise form_error("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")


Handler: TypeAlias = Callable[[Incoming, dict[str, str]], Awaitable[web.StreamResponse]]
# (method, path template, handler, whether the bot token is required)
RouteSpec: TypeAlias = tuple[str, str, Handler, bool]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool  # interaction callbacks and webhooks authenticate with the token in the URL instead


def compile_template(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{regex}$")


def json_response(data: JSON, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json", no charset: discord.py's json_or_text compares the header verbatim.
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(status=status, body=json.dumps(data).encode("utf-8"), headers=all_headers)


def no_content() -> web.Response:
    return web.Response(status=204)


def snowflake(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise form_error("id", "NUMBER_TYPE_COERCE", f"Value {value!r} is not snowflake.") from None


UserRef: TypeAlias = FakeUser | int | str
GuildRef: TypeAlias = FakeGuild | int | str
ChannelRef: TypeAlias = FakeChannel | int | str
MessageRef: TypeAlias = FakeMessage | int
