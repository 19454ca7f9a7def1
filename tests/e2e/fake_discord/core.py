"""The state every part of the fake server shares."""

# Waiting helpers take explicit ``timeout`` parameters: tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Literal

from aiohttp import web

from ..discord_schema import RequestValidator, load_validator
from .constants import API_PREFIX, DISCORD_EPOCH_MS, DM_PERMISSIONS, UPLOAD_LIMIT, ChannelType, Intents, Payload
from .interaction_handle import InteractionHandle
from .plumbing import (
    UNKNOWN_CHANNEL,
    ChannelRef,
    Delay,
    GatewayConnection,
    GatewaySession,
    GuildRef,
    HTTPError,
    Injection,
    Route,
    RouteSpec,
    UserRef,
    compile_template,
    snowflake,
)
from .ratelimits import RateLimits
from .records import CommandSync, CommandUnavailableError, FakeMessage, GatewayFrame, RecordedRequest
from .world import FakeChannel, FakeGuild, FakeMember, FakeUser, World, compute_permissions, default_world


class FakeCore:
    """State the server's parts share: settings, records, the world and how it looks as JSON.

    The parts (gateway, messages, REST routes by resource) are mixins on top of this; :class:`FakeDiscord`
    composes them.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        heartbeat_interval_ms: int = 41250,
        ack_deadline: float | None = 3.0,
        token_lifetime: float = 15 * 60.0,
        upload_limit: int = UPLOAD_LIMIT,
        validate_schema: bool = True,
        validator: RequestValidator | None = None,
        reject_invalid_bodies: bool = False,
        echo_messages: bool = True,
        allowed_privileged_intents: int = Intents.PRIVILEGED,
        recommended_shards: int = 1,
        rate_limits: RateLimits | None = None,
    ) -> None:
        """
        ack_deadline: seconds within which an interaction callback is accepted (None = never refuse).
        token_lifetime: seconds an interaction token works for follow-ups and edits.
        validate_schema: check every request body against Discord's OpenAPI description when it is present.
        reject_invalid_bodies: answer 400/50035 to bodies that fail that check (by default they are only
            recorded in :attr:`schema_errors`, in case the description and the real API disagree).
        echo_messages: dispatch MESSAGE_CREATE/MESSAGE_UPDATE for the bot's own non-ephemeral messages,
            as Discord does (subject to the GUILD_MESSAGES / DIRECT_MESSAGES intents).
        allowed_privileged_intents: privileged intents enabled for the application; asking for others
            closes the gateway with 4014, like Discord.
        recommended_shards: the shard count ``GET /gateway/bot`` recommends (settable later, as
            :attr:`recommended_shards`). Sessions that IDENTIFY with ``shard: [id, count]`` get the READY guilds,
            GUILD_CREATEs, interactions and messages of their guilds only (``(guild_id >> 22) % count``; DMs on
            shard 0).
        rate_limits: Discord's per-route and global rate limits, enforced (429 with Discord's headers) and
            recorded in :attr:`rate_limits`; None (the default) answers every request without them.
        """
        self.world = world or default_world()
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.upload_limit = upload_limit
        self.reject_invalid_bodies = reject_invalid_bodies
        self.echo_messages = echo_messages
        self.allowed_privileged_intents = allowed_privileged_intents
        self.recommended_shards = recommended_shards
        self.rate_limits = rate_limits
        self.validator: RequestValidator | None = validator
        if self.validator is None and validate_schema:
            self.validator = load_validator()

        # Public records.
        self.requests: list[RecordedRequest] = []
        self.schema_errors: list[tuple[str, str, str]] = []
        self.gateway_log: list[GatewayFrame] = []
        self.message_log: list[FakeMessage] = []
        self.command_syncs: list[CommandSync] = []
        self.interactions: dict[int, InteractionHandle] = {}
        self.presence_updates: list[Payload] = []
        # One (who closed first, close code) per ended websocket.
        self.gateway_closes: list[tuple[Literal["client", "fake"], int | None]] = []
        self.internal_errors: list[str] = []  # bugs in the fake itself; a fixture should assert it is empty

        # State.
        self._next_snowflake = 0
        self._global_commands: dict[int, Payload] = {}
        self._guild_commands: dict[int, dict[int, Payload]] = {}
        self._messages: dict[int, FakeMessage] = {}  # latest version of every message by id
        self._dm_channels: dict[int, FakeChannel] = {}  # by recipient user id
        self._interactions_by_token: dict[str, InteractionHandle] = {}
        self._attachment_blobs: dict[int, tuple[str, str, bytes]] = {}
        self._channel_faults: dict[int, int] = {}
        self._closed_dms: set[int] = set()
        self._injections: list[Injection] = []
        self._delays: list[Delay] = []
        # (channel id, author id, nonce) -> (message id, when) for enforce_nonce de-duplication.
        self._nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        self.nonce_window = 300.0
        self._stopping = asyncio.Event()  # releases answers held by delay_next() when the fake stops
        self.held_answers = 0  # answers currently held back by delay_next()
        self._connections: list[GatewayConnection] = []
        self._sessions: dict[str, GatewaySession] = {}
        self._message_waiters: list[tuple[Callable[[FakeMessage], bool], asyncio.Future[FakeMessage]]] = []
        self._request_waiters: list[tuple[Callable[[RecordedRequest], bool], asyncio.Future[RecordedRequest]]] = []
        self._state_changed = asyncio.Event()

        self._routes = self._build_routes()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Addresses

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # The default world's cast (KeyError when a custom world lacks them)

    @property
    def token(self) -> str:
        return self.world.token

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user(self) -> FakeUser:
        return self.world.bot

    @property
    def alice(self) -> FakeUser:
        return self.world.user("alice")

    @property
    def bob(self) -> FakeUser:
        return self.world.user("bob")

    @property
    def moderator(self) -> FakeUser:
        return self.world.user("moderator")

    @property
    def owner(self) -> FakeUser:
        return self.world.user("owner")

    @property
    def guild(self) -> FakeGuild:
        return self.world.guilds[0]

    @property
    def guild2(self) -> FakeGuild:
        return self.world.guilds[1]

    @property
    def general(self) -> FakeChannel:
        return self.guild.channel("general")

    @property
    def videos(self) -> FakeChannel:
        return self.guild.channel("videos")

    @property
    def general2(self) -> FakeChannel:
        return self.guild2.channel("general")

    @property
    def videos2(self) -> FakeChannel:
        return self.guild2.channel("videos")

    # Helpers

    def expire_interaction(self, interaction: InteractionHandle | int) -> None:
        """Expire an interaction token now: follow-ups and edits answer 401 / 50027."""
        handle = self.interactions[interaction if isinstance(interaction, int) else interaction.id]
        handle.expired = True

    def describe_requests(self, last: int = 20) -> str:
        return ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-last:]) or "(none)"

    def new_snowflake(self) -> int:
        """A fresh, increasing snowflake whose timestamp is now (discord.utils.snowflake_time works)."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._next_snowflake = max(candidate, self._next_snowflake + 1)
        return self._next_snowflake

    def _user(self, ref: UserRef) -> FakeUser:
        return ref if isinstance(ref, FakeUser) else self.world.user(ref)

    def _guild(self, ref: GuildRef) -> FakeGuild:
        return ref if isinstance(ref, FakeGuild) else self.world.guild(ref)

    def _default_user(self) -> FakeUser:
        return self.world.users[0]

    def _resolve_channel(self, ref: ChannelRef, guild: FakeGuild | None) -> FakeChannel:
        if isinstance(ref, FakeChannel):
            return ref
        if isinstance(ref, str):
            return (guild or self.world.guilds[0]).channel(ref)
        return self._channel_by_id(ref)

    def _channel_by_id(self, channel_id: int) -> FakeChannel:
        channel = self.world.find_channel(channel_id)
        if channel is None:
            channel = next((c for c in self._dm_channels.values() if c.id == channel_id), None)
        if channel is None:
            raise KeyError(f"no channel {channel_id}")
        return channel

    def _channel_for(self, params: Mapping[str, str]) -> FakeChannel:
        try:
            return self._channel_by_id(snowflake(params["channel_id"]))
        except KeyError:
            raise HTTPError(*UNKNOWN_CHANNEL) from None

    def _dm_channel(self, user: FakeUser) -> FakeChannel:
        channel = self._dm_channels.get(user.id)
        if channel is None:
            channel = FakeChannel(self.new_snowflake(), "", type=ChannelType.DM, recipient_ids=[user.id])
            self._dm_channels[user.id] = channel
        return channel

    def _place(
        self, user: FakeUser, guild: GuildRef | None, channel: ChannelRef | None, dm: bool
    ) -> tuple[FakeGuild | None, FakeChannel]:
        if dm:
            return None, self._dm_channel(user)
        if isinstance(channel, FakeChannel) and channel.guild_id is not None:
            target_guild = self.world.guild(channel.guild_id)
        elif isinstance(channel, int) and guild is None:
            found = self.world.find_channel(channel)
            if found is None or found.guild_id is None:
                raise KeyError(f"no guild channel {channel}")
            target_guild = self.world.guild(found.guild_id)
        else:
            target_guild = self._guild(guild) if guild is not None else self.world.guilds[0]
        if channel is None:
            target_channel = next(c for c in target_guild.channels if c.type == ChannelType.GUILD_TEXT)
        else:
            target_channel = self._resolve_channel(channel, target_guild)
        if target_guild.member(user.id) is None:
            raise CommandUnavailableError(f"{user.username} is not a member of {target_guild.name}")
        return target_guild, target_channel

    def _shares_guild(self, user_id: int) -> bool:
        return any(g.member(user_id) is not None for g in self.world.guilds)

    def _bot_permissions_in(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DM_PERMISSIONS
        return compute_permissions(self.world.guild(channel.guild_id), self.world.bot.id, channel)

    def _attachment_url(self, attachment_id: int, filename: str) -> str:
        # Shaped like Discord's signed CDN links (ex/is/hm), which expire: bots must not keep them forever.
        expires = int(time.time()) + 24 * 3600
        return (
            f"{self.base_url}/attachments/{attachment_id}/{filename}"
            f"?ex={expires:x}&is={int(time.time()):x}&hm={secrets.token_hex(16)}&"
        )

    async def _wait_state(self, done: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{why()} within {timeout}s; requests: {self.describe_requests(last=10)}")
            self._state_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), remaining)

    def _notify_state(self) -> None:
        self._state_changed.set()

    # Routes

    def _route_table(self) -> list[RouteSpec]:
        """Every REST route as (method, template, handler, whether the bot token is required).

        The composed server lists its route groups here; literal routes (``/users/@me``) come before templated
        ones of the same shape.
        """
        return []

    def _build_routes(self) -> list[Route]:
        return [
            Route(method, template, compile_template(template), handler, auth)
            for method, template, handler, auth in self._route_table()
        ]

    # Payloads

    def _member_payload(self, guild: FakeGuild, member: FakeMember, *, with_user: bool = True) -> Payload:
        data: Payload = {
            "roles": [str(r) for r in member.role_ids],
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "joined_at": member.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if with_user:
            data["user"] = self.world.user(member.user_id).payload()
        return data

    def _channel_payload(self, channel: FakeChannel, *, for_user: int | None = None) -> Payload:
        if channel.is_dm:
            return {
                "id": str(channel.id),
                "type": ChannelType.DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.world.user(uid).payload() for uid in channel.recipient_ids],
            }
        data: Payload = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [o.payload() for o in channel.overwrites],
            "parent_id": None if channel.parent_id is None else str(channel.parent_id),
            "topic": channel.topic,
            "nsfw": channel.nsfw,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if for_user is not None and channel.guild_id is not None:
            guild = self.world.guild(channel.guild_id)
            data["permissions"] = str(compute_permissions(guild, for_user, channel))
        return data

    def _guild_payload(self, guild: FakeGuild, *, full: bool) -> Payload:
        data: Payload = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "system_channel_id": str(guild.channels[0].id) if guild.channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "preferred_locale": guild.preferred_locale,
            "features": [],
            "roles": [r.payload() for r in guild.roles],
            "emojis": [],
            "stickers": [],
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "application_id": None,
            "widget_enabled": False,
            "widget_channel_id": None,
            "incidents_data": None,
        }
        if full:
            # GUILD_CREATE extras (discord.py fills its cache from these).
            data.update(
                {
                    "joined_at": guild.joined_at,
                    "large": False,
                    "unavailable": False,
                    "member_count": len(guild.members),
                    "channels": [self._channel_payload(c) for c in guild.channels],
                    "threads": [],
                    "members": [self._member_payload(guild, m) for m in guild.members],
                    "presences": [],
                    "voice_states": [],
                    "stage_instances": [],
                    "guild_scheduled_events": [],
                    "soundboard_sounds": [],
                    "lazy": True,
                }
            )
        else:
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return data

    def _application_payload(self) -> Payload:
        owner = self.world.user(self.world.app_owner_id) if self.world.app_owner_id else self.world.bot
        return {
            "id": str(self.application_id),
            "name": self.world.application_name,
            "icon": None,
            "description": "A fake application for end-to-end tests.",
            "summary": "",
            "type": None,
            "bot": self.world.bot.payload(),
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": owner.payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.world.application_flags,
            "hook": True,
            "is_monetized": False,
            "is_verified": False,
            "is_discoverable": False,
            "interactions_endpoint_url": None,  # set, it would make discord.py warn: no gateway interactions
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": len(self.world.guilds),
            "integration_types_config": {"0": {}, "1": {}},
        }
