"""The gateway: websocket sessions, IDENTIFY/RESUME, dispatching events; ``GET /gateway[/bot]``."""

# Waiting helpers take explicit ``timeout`` parameters: tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import WSMsgType, web

from .constants import Intents, Payload
from .core import FakeCore
from .plumbing import (
    GatewayConnection,
    GatewaySession,
    GuildRef,
    HTTPError,
    Incoming,
    RouteSpec,
    json_response,
    shard_for,
    snowflake,
    valid_shard,
)
from .records import GatewayFrame

_log = logging.getLogger(__name__)


class GatewayServer(FakeCore):
    """The gateway websocket and its sessions."""

    @property
    def connected(self) -> bool:
        """A client identified (READY + GUILD_CREATEs sent) and its websocket is open."""
        return any(self._live(s) for s in self._sessions.values())

    async def wait_until_connected(self, timeout: float = 10.0) -> None:
        """Wait until a client identified and got READY plus every GUILD_CREATE."""
        await self._wait_state(lambda: self.connected, timeout, lambda: "the bot never identified on the gateway")

    async def wait_until_disconnected(self, timeout: float = 10.0) -> None:
        """Wait until no gateway connection is open (see :attr:`gateway_closes` for how they ended)."""
        await self._wait_state(lambda: not self._connections, timeout, lambda: "the bot is still connected")

    async def disconnect_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway connection; discord.py reconnects and RESUMEs (for resilience tests)."""
        for connection in list(self._connections):
            await self._close(connection, code, "closed by the test")

    @property
    def connected_shards(self) -> set[int]:
        """The shard ids of the identified sessions whose websocket is open (sharded sessions only)."""
        return {s.shard[0] for s in self._sessions.values() if s.shard is not None and self._live(s)}

    async def wait_until_shards_connected(self, shard_ids: Iterable[int], timeout: float = 20.0) -> None:
        """Wait until a session identified (READY + its GUILD_CREATEs) on each of these shards."""
        wanted = set(shard_ids)
        await self._wait_state(
            lambda: wanted <= self.connected_shards,
            timeout,
            lambda: f"shards {sorted(wanted - self.connected_shards)} never identified on the gateway",
        )

    def shard_of(self, guild: GuildRef | None, shard_count: int | None = None) -> int:
        """The shard that gets a guild's events (DMs: shard 0), by default under the recommended shard count."""
        if guild is None:
            return 0
        return shard_for(self._guild(guild).id, shard_count or self.recommended_shards)

    async def dispatch_event(self, event: str, data: Payload) -> None:
        """Send any gateway DISPATCH to every identified session (e.g. GUILD_MEMBER_ADD); an event with a
        ``guild_id`` goes to the sessions of that guild's shard only."""
        guild_id = data.get("guild_id")
        target = None if guild_id is None else int(guild_id)
        sessions = [s for s in self._sessions.values() if s.ready and (target is None or s.serves(target))]
        if not sessions:
            raise RuntimeError("the bot is not connected to the fake gateway")
        for session in sessions:
            await self._dispatch(session, event, data)

    @staticmethod
    def _live(session: GatewaySession) -> bool:
        return session.ready and session.connection is not None and not session.connection.ws.closed

    def _sessions_for(self, guild_id: int | None) -> list[GatewaySession]:
        """Identified sessions that get a guild's events (None: DMs'), oldest first."""
        return [s for s in self._sessions.values() if s.ready and s.serves(guild_id)]

    def _ready_session(self, guild_id: int | None = None) -> GatewaySession | None:
        """The session to dispatch a guild's (or a DM's) event to: a live one of its shard, else one that may still
        RESUME (events are buffered)."""
        ready = self._sessions_for(guild_id)
        live = [s for s in ready if self._live(s)]
        return (live or ready)[-1] if ready else None

    # REST: where the gateway is

    def _gateway_routes(self) -> list[RouteSpec]:
        return [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
        ]

    async def _get_gateway(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
            }
        )

    # The websocket

    async def _gateway_entry(self, request: web.Request) -> web.StreamResponse:
        # timeout: how long close() waits for the client's close frame (a frozen bot must not hang stop()).
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        connection = GatewayConnection(ws=ws, query=dict(request.query))
        self._connections.append(connection)
        try:
            await self._send(connection, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await self._on_gateway_frame(connection, frame.data)
                elif frame.type == WSMsgType.BINARY:
                    # discord.py never sends binary frames; Discord closes with "decode error".
                    await self._close(connection, 4002, "Error while decoding payload.")
        except Exception as exc:  # a bug in the fake: close like Discord's "unknown error" and keep it visible
            _log.exception("fake Discord gateway failed")
            self.internal_errors.append(f"gateway: {exc!r}")
            await self._close(connection, 4000, "Unknown error.")
        finally:
            self._connections.remove(connection)
            if connection.closed_by_fake is not None:
                self.gateway_closes.append(("fake", connection.closed_by_fake))
            else:
                # The code in the client's close frame (aiohttp keeps the peer's code).
                self.gateway_closes.append(("client", ws.close_code))
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
            self._notify_state()
        return ws

    async def _close(self, connection: GatewayConnection, code: int, reason: str) -> None:
        connection.closed_by_fake = code
        await connection.ws.close(code=code, message=reason.encode())

    async def _send(self, connection: GatewayConnection, frame: Payload) -> None:
        frame = {"op": frame["op"], "d": frame.get("d"), "s": frame.get("s"), "t": frame.get("t")}
        shard = None if connection.session is None else connection.session.shard_id
        self.gateway_log.append(
            GatewayFrame("sent", frame["op"], frame["t"], frame["s"], frame["d"], time.monotonic(), shard)
        )
        async with connection.lock:
            if not connection.ws.closed:
                await connection.ws.send_str(json.dumps(frame))

    async def _dispatch(self, session: GatewaySession, event: str, data: Payload) -> None:
        session.seq += 1
        frame: Payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        connection = session.connection
        if connection is None or connection.ws.closed:
            session.buffered.append(frame)  # replayed after a RESUME, like Discord
            return
        await self._send(connection, frame)

    async def _on_gateway_frame(self, connection: GatewayConnection, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame.get("op")
        except (ValueError, AttributeError):
            await self._close(connection, 4002, "Error while decoding payload.")
            return
        data = frame.get("d")
        redacted = {**data, "token": "<redacted>"} if isinstance(data, dict) and "token" in data else data
        shard = None if connection.session is None else connection.session.shard_id
        self.gateway_log.append(GatewayFrame("received", op, None, frame.get("s"), redacted, time.monotonic(), shard))
        if op == 1:  # HEARTBEAT
            await self._send(connection, {"op": 11})
        elif op == 2:  # IDENTIFY
            await self._identify(connection, data if isinstance(data, dict) else {})
        elif op == 3:  # PRESENCE_UPDATE
            self.presence_updates.append(data if isinstance(data, dict) else {})
        elif op == 6:  # RESUME
            await self._resume(connection, data if isinstance(data, dict) else {})
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            await self._request_members(connection, data if isinstance(data, dict) else {})
        elif op == 4:  # VOICE_STATE_UPDATE: no voice here
            pass
        else:
            await self._close(connection, 4001, "Unknown opcode.")

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.world.token.encode())

    async def _identify(self, connection: GatewayConnection, data: Payload) -> None:
        if connection.session is not None:
            await self._close(connection, 4005, "Already authenticated.")
            return
        if not self._token_ok(data.get("token")):
            await self._close(connection, 4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await self._close(connection, 4013, "Invalid intent(s).")
            return
        if intents & Intents.PRIVILEGED & ~self.allowed_privileged_intents:
            await self._close(connection, 4014, "Disallowed intent(s).")
            return
        shard = data.get("shard")
        if shard is not None and not valid_shard(shard):
            await self._close(connection, 4010, "Invalid shard.")
            return
        session = GatewaySession(session_id=secrets.token_hex(16), intents=intents, shard=shard, connection=connection)
        guilds = [g for g in self.world.guilds if session.serves(g.id)]
        connection.session = session
        self._sessions[session.session_id] = session
        ready: Payload = {
            "v": 10,
            "user": {**self.world.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self.world.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": ["local"],
            "_trace": ['["fake-discord-gateway",{"micros":0}]'],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch(session, "READY", ready)
        for guild in guilds:
            await self._dispatch(session, "GUILD_CREATE", self._guild_payload(guild, full=True))
        session.ready = True
        self._notify_state()

    async def _resume(self, connection: GatewayConnection, data: Payload) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not self._token_ok(data.get("token")):
            await self._send(connection, {"op": 9, "d": False})  # not resumable: identify again
            return
        if session.connection is not None and session.connection is not connection:
            with contextlib.suppress(Exception):
                await self._close(session.connection, 4000, "session resumed elsewhere")
        session.connection = connection
        connection.session = session
        missed, session.buffered = session.buffered, []
        for frame in missed:
            await self._send(connection, frame)
        await self._dispatch(session, "RESUMED", {})
        self._notify_state()

    async def _request_members(self, connection: GatewayConnection, data: Payload) -> None:
        session = connection.session
        if session is None:
            await self._close(connection, 4003, "Not authenticated.")
            return
        guild_ids = data.get("guild_id")
        for raw_id in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            try:
                guild = self.world.guild(snowflake(raw_id))
            except (KeyError, HTTPError):
                continue
            query = str(data.get("query") or "").lower()
            user_ids = {int(u) for u in data.get("user_ids") or []}
            limit = int(data.get("limit") or 0) or len(guild.members)
            members = [
                m
                for m in guild.members
                if (not user_ids or m.user_id in user_ids)
                and self.world.user(m.user_id).username.lower().startswith(query)
            ][:limit]
            chunk: Payload = {
                "guild_id": str(guild.id),
                "members": [self._member_payload(guild, m) for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("presences"):
                chunk["presences"] = []
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            await self._dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)
