"""A fake Discord (REST ``/api/v10`` + gateway websocket) on loopback for end-to-end tests.

The *real* discord.py client connects to it: point ``discord.http.Route.BASE`` at
``f"{fake.base_url}/api/v10"`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` at the ``url``
returned by ``GET /api/v10/gateway/bot``. Then tests drive the bot like members would
(:meth:`FakeDiscord.send_interaction` & co.), inspect what it sent (:attr:`FakeDiscord.requests`,
:meth:`FakeDiscord.messages_in`, :meth:`FakeDiscord.wait_for_message`) and inject faults
(:meth:`FakeDiscord.set_channel_fault`, :meth:`FakeDiscord.close_dms`, :meth:`FakeDiscord.rate_limit_next`,
:meth:`FakeDiscord.fail_next`, :meth:`FakeDiscord.delay_next`, :meth:`FakeDiscord.expire_interaction`).

Behaviours deliberately copied from Discord because bots get them wrong (see discord.py's ``http.py``,
``gateway.py``, ``webhook/async_.py`` and ``interactions.py``):

* JSON responses carry ``Content-Type: application/json`` exactly; discord.py only parses JSON when the
  header is exactly that (``json_or_text``), anything else becomes a ``str`` body.
* A 429 carries ``Via``: without it discord.py assumes a Cloudflare ban and raises instead of retrying.
* Interaction callbacks are only accepted within ``ack_deadline`` (3 s) of dispatch; later ones get
  ``10062 Unknown interaction``. A second callback gets ``40060``. Interaction webhooks (follow-ups,
  ``@original``) stop working when the token expires (``401 / 50027``).
* After a *deferred* (type 5) response, the first follow-up replaces the "thinking..." message instead of
  creating a new one, and inherits its ephemerality.
* Messages are checked against Discord's limits (2000 characters, 10 embeds, 6000 embed characters,
  the upload limit, no empty messages) and answer ``400 / 50035 Invalid Form Body`` like Discord.
* A message created with ``enforce_nonce`` and a nonce its author used in that channel within
  :attr:`FakeDiscord.nonce_window` seconds is not created again: the earlier message is returned (Discord's
  "a few minutes"; set the window to 0 to play a client that comes back after it).
* Gateway frames are plain TEXT JSON even though discord.py asks for ``compress=zlib-stream``:
  ``DiscordWebSocket.received_message`` only decompresses ``bytes`` frames.

Nothing here talks to anything but 127.0.0.1. The bot token is never stored in recorded requests or
printed: requests keep only whether the ``Authorization`` header matched.
"""

# The brief asks for explicit ``timeout`` parameters (wait_response(timeout), wait_for_message(..., timeout)):
# tests read better that way than wrapping every call in asyncio.timeout().
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Any, Literal, TypeAlias

from aiohttp import BodyPartReader, WSMsgType, web

from .discord_schema import RequestValidator, load_validator

__all__ = [
    "ALL_PERMISSIONS",
    "CommandSync",
    "CommandUnavailableError",
    "DefaultIds",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeOverwrite",
    "FakeRole",
    "FakeUser",
    "GatewayFrame",
    "Intents",
    "InteractionCallback",
    "InteractionHandle",
    "LateAcknowledgementError",
    "MessageKind",
    "Perm",
    "RawValue",
    "RecordedPart",
    "RecordedRequest",
    "World",
    "compute_permissions",
    "default_world",
    "run_fake_discord",
]

_log = logging.getLogger(__name__)

JSON: TypeAlias = Any
Payload: TypeAlias = dict[str, Any]

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"
UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's default attachment limit for bots since 2024 (10 MiB).


# --------------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------------


class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    SEND_MESSAGES_IN_THREADS = 1 << 38


ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CHANGE_NICKNAME
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = (
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.ADD_REACTIONS
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.SEND_MESSAGES_IN_THREADS
)
MODERATOR_PERMISSIONS = Perm.MANAGE_GUILD | Perm.MANAGE_MESSAGES | Perm.MANAGE_CHANNELS | Perm.KICK_MEMBERS
# What the bot may do in a DM (Discord sends app_permissions for DMs too).
DM_PERMISSIONS = BOT_PERMISSIONS | Perm.MENTION_EVERYONE

# Application flags: GATEWAY_PRESENCE_LIMITED, GATEWAY_GUILD_MEMBERS_LIMITED,
# GATEWAY_MESSAGE_CONTENT_LIMITED (privileged intents enabled for an unverified bot), APPLICATION_COMMAND_BADGE.
DEFAULT_APPLICATION_FLAGS = (1 << 13) | (1 << 15) | (1 << 19) | (1 << 23)


class Intents:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class ChannelType(IntEnum):
    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5


class InteractionType(IntEnum):
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(IntEnum):
    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9
    LAUNCH_ACTIVITY = 12


class OptionType(IntEnum):
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class MessageFlag:
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    IS_COMPONENTS_V2 = 1 << 15


class MessageKind(StrEnum):
    """Where a message (or a new version of one) went."""

    CHANNEL = "channel"  # bot: POST /channels/{guild channel}/messages
    DM = "dm"  # bot: POST /channels/{DM channel}/messages
    INTERACTION_RESPONSE = "interaction_response"  # callback type 4, or the "thinking" message of type 5
    FOLLOWUP = "followup"  # POST /webhooks/{app}/{token}
    ORIGINAL_EDIT = "original_edit"  # PATCH /webhooks/{app}/{token}/messages/@original (or its id)
    FOLLOWUP_EDIT = "followup_edit"  # PATCH /webhooks/{app}/{token}/messages/{id of a follow-up}
    MESSAGE_EDIT = "message_edit"  # PATCH /channels/{id}/messages/{id}
    INTERACTION_UPDATE = "interaction_update"  # callback type 7 on a component's message
    MEMBER = "member"  # a member's message injected by the test (send_member_message)


# --------------------------------------------------------------------------------------------------------
# The world: users, guilds, channels, roles
# --------------------------------------------------------------------------------------------------------


def _iso(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).isoformat()


@dataclass
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False
    bot_id: int | None = None  # the bot whose integration manages this role

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class FakeOverwrite:
    """A channel permission overwrite; ``type`` 0 = role, 1 = member."""

    id: int
    type: Literal[0, 1] = 0
    allow: int = 0
    deny: int = 0

    def payload(self) -> Payload:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class FakeChannel:
    id: int
    name: str
    type: int = ChannelType.GUILD_TEXT
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False
    overwrites: list[FakeOverwrite] = field(default_factory=list)
    guild_id: int | None = None  # filled in by FakeGuild
    recipient_ids: list[int] = field(default_factory=list)  # DM channels only

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_dm(self) -> bool:
        return self.type == ChannelType.DM


@dataclass
class FakeMember:
    user_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = "2024-01-15T12:00:00+00:00"


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    channels: list[FakeChannel] = field(default_factory=list)
    roles: list[FakeRole] = field(default_factory=list)
    members: list[FakeMember] = field(default_factory=list)
    preferred_locale: str = "en-US"
    joined_at: str = "2024-01-10T09:00:00+00:00"

    def __post_init__(self) -> None:
        for channel in self.channels:
            channel.guild_id = self.id
        # Discord always has an @everyone role whose id is the guild's id.
        if not any(role.id == self.id for role in self.roles):
            self.roles.insert(0, FakeRole(id=self.id, name="@everyone", permissions=EVERYONE_PERMISSIONS))

    @property
    def everyone(self) -> FakeRole:
        return next(role for role in self.roles if role.id == self.id)

    def channel(self, name_or_id: str | int) -> FakeChannel:
        for channel in self.channels:
            if channel.id == name_or_id or channel.name == name_or_id:
                return channel
        raise KeyError(f"guild {self.name!r} has no channel {name_or_id!r}")

    def role(self, name_or_id: str | int) -> FakeRole:
        for role in self.roles:
            if role.id == name_or_id or role.name == name_or_id:
                return role
        raise KeyError(f"guild {self.name!r} has no role {name_or_id!r}")

    def member(self, user_id: int) -> FakeMember | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def add_channel(self, channel: FakeChannel) -> FakeChannel:
        channel.guild_id = self.id
        self.channels.append(channel)
        return channel


@dataclass
class World:
    """Everything the fake knows about. Build your own or start from :func:`default_world`."""

    bot: FakeUser
    users: list[FakeUser]
    guilds: list[FakeGuild]
    application_name: str = "Luma Video Bot"
    application_id: int = 0  # 0 = same as the bot user's id, as for every application created since 2021
    app_owner_id: int | None = None
    application_flags: int = DEFAULT_APPLICATION_FLAGS
    token: str = field(default_factory=lambda: "e2e." + secrets.token_urlsafe(32), repr=False)

    def __post_init__(self) -> None:
        if not self.application_id:
            self.application_id = self.bot.id

    def user(self, ref: str | int) -> FakeUser:
        for user in [self.bot, *self.users]:
            if user.id == ref or user.username == ref:
                return user
        raise KeyError(f"no user {ref!r} in the fake world")

    def guild(self, ref: str | int) -> FakeGuild:
        for guild in self.guilds:
            if guild.id == ref or guild.name == ref:
                return guild
        raise KeyError(f"no guild {ref!r} in the fake world")

    def find_channel(self, channel_id: int) -> FakeChannel | None:
        for guild in self.guilds:
            for channel in guild.channels:
                if channel.id == channel_id:
                    return channel
        return None


# Ids of the default world: big, snowflake-shaped numbers so that int/str mix-ups show.
class DefaultIds:
    BOT = 1100000000000000001  # also the application id
    GUILD_1 = 1200000000000000001
    GUILD_2 = 1200000000000000002
    GENERAL_1 = 1300000000000000011
    VIDEOS_1 = 1300000000000000012
    GENERAL_2 = 1300000000000000021
    VIDEOS_2 = 1300000000000000022
    ADMIN_ROLE_1 = 1400000000000000011
    BOT_ROLE_1 = 1400000000000000019
    ADMIN_ROLE_2 = 1400000000000000021
    BOT_ROLE_2 = 1400000000000000029
    ALICE = 1500000000000000001
    BOB = 1500000000000000002
    MODERATOR = 1500000000000000003
    OWNER = 1500000000000000004


def default_world() -> World:
    """Two guilds; alice, bob and moderator are members of both, moderator has Manage Server in guild 1 only.

    The guilds are owned by a separate ``owner`` user (an owner has every permission, which would hide
    permission checks).
    """
    ids = DefaultIds
    bot = FakeUser(ids.BOT, "Luma Video Bot", bot=True)
    alice = FakeUser(ids.ALICE, "alice", "Alice")
    bob = FakeUser(ids.BOB, "bob", "Bob")
    moderator = FakeUser(ids.MODERATOR, "moderator", "Mo the Moderator")
    owner = FakeUser(ids.OWNER, "owner", "Server Owner")

    def guild(
        guild_id: int, name: str, general: int, videos: int, admin_role: int, bot_role: int, mod_is_admin: bool
    ) -> FakeGuild:
        return FakeGuild(
            id=guild_id,
            name=name,
            owner_id=owner.id,
            channels=[FakeChannel(general, "general", position=0), FakeChannel(videos, "videos", position=1)],
            roles=[
                FakeRole(guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0),
                FakeRole(bot_role, bot.username, BOT_PERMISSIONS, position=1, managed=True, bot_id=bot.id),
                FakeRole(admin_role, "admin", MODERATOR_PERMISSIONS | EVERYONE_PERMISSIONS, position=2),
            ],
            members=[
                FakeMember(owner.id, [admin_role]),
                FakeMember(alice.id),
                FakeMember(bob.id),
                FakeMember(moderator.id, [admin_role] if mod_is_admin else []),
                FakeMember(bot.id, [bot_role]),
            ],
        )

    return World(
        bot=bot,
        users=[alice, bob, moderator, owner],
        guilds=[
            guild(ids.GUILD_1, "Video Studio", ids.GENERAL_1, ids.VIDEOS_1, ids.ADMIN_ROLE_1, ids.BOT_ROLE_1, True),
            guild(ids.GUILD_2, "Other Server", ids.GENERAL_2, ids.VIDEOS_2, ids.ADMIN_ROLE_2, ids.BOT_ROLE_2, False),
        ],
        app_owner_id=owner.id,
    )


def compute_permissions(guild: FakeGuild, user_id: int, channel: FakeChannel | None = None) -> int:
    """Discord's permission algorithm: base from roles, owner/administrator get all, then channel overwrites."""
    if user_id == guild.owner_id:
        return ALL_PERMISSIONS
    member = guild.member(user_id)
    if member is None:
        return 0
    role_ids = {guild.id, *member.role_ids}
    base = 0
    for role in guild.roles:
        if role.id in role_ids:
            base |= role.permissions
    if base & Perm.ADMINISTRATOR:
        return ALL_PERMISSIONS
    if channel is None:
        return base
    overwrites = {(o.type, o.id): o for o in channel.overwrites}
    everyone = overwrites.get((0, guild.id))
    if everyone is not None:
        base = (base & ~everyone.deny) | everyone.allow
    allow = deny = 0
    for role_id in member.role_ids:
        overwrite = overwrites.get((0, role_id))
        if overwrite is not None:
            allow |= overwrite.allow
            deny |= overwrite.deny
    base = (base & ~deny) | allow
    own = overwrites.get((1, user_id))
    if own is not None:
        base = (base & ~own.deny) | own.allow
    if not base & Perm.VIEW_CHANNEL:
        return 0
    return base


# --------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedPart:
    """One part of a multipart request (discord.py: ``payload_json`` and ``files[n]``)."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded, without the /api/v10 prefix and without the query
    query: dict[str, str]
    json: JSON  # the JSON body, or the parsed payload_json of a multipart body; None when absent
    parts: tuple[RecordedPart, ...] | None  # multipart parts, None for non-multipart requests
    headers: dict[str, str]  # every header except Authorization
    auth: Literal["valid", "invalid", "missing"]  # whether Authorization was exactly "Bot <token>"
    time: float  # time.monotonic() on arrival
    status: int = 0  # the status the fake answered
    route: str | None = None  # e.g. "POST /channels/{channel_id}/messages"; None for unknown routes

    @property
    def files(self) -> tuple[RecordedPart, ...]:
        return tuple(p for p in self.parts or () if p.name.startswith("files["))


@dataclass(frozen=True)
class GatewayFrame:
    direction: Literal["sent", "received"]
    op: int | None
    t: str | None
    s: int | None
    d: JSON = field(repr=False)  # tokens in IDENTIFY/RESUME are redacted
    time: float


@dataclass(frozen=True)
class CommandSync:
    guild_id: int | None  # None for global commands
    names: tuple[str, ...]
    time: float


@dataclass(frozen=True)
class FakeMessage:
    """One version of a message. Every create or edit appends a new version to :attr:`FakeDiscord.message_log`."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    kind: MessageKind
    payload: Payload = field(repr=False)  # the message object as Discord returned it
    seq: int = -1  # position in the message log
    time: float = 0.0  # time.monotonic() when this version was made
    interaction_id: int | None = None
    recipient_id: int | None = None  # for DM channels: the user on the other side
    deleted: bool = False

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def embeds(self) -> list[Payload]:
        return list(self.payload.get("embeds") or [])

    @property
    def components(self) -> list[Payload]:
        return list(self.payload.get("components") or [])

    @property
    def attachments(self) -> list[Payload]:
        return list(self.payload.get("attachments") or [])

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response's "thinking..." message that nothing has replaced yet."""
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None

    @property
    def edited(self) -> bool:
        return self.payload.get("edited_timestamp") is not None

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in _walk_components(self.components) if "custom_id" in c]

    @property
    def text(self) -> str:
        """Everything a reader sees: content, embed texts, text displays and button labels."""
        pieces = [self.content]
        for embed in self.embeds:
            pieces += [
                str(embed.get("title") or ""),
                str(embed.get("description") or ""),
                str((embed.get("author") or {}).get("name") or ""),
                str((embed.get("footer") or {}).get("text") or ""),
            ]
            for embed_field in embed.get("fields") or []:
                pieces += [str(embed_field.get("name") or ""), str(embed_field.get("value") or "")]
        for component in _walk_components(self.components):
            pieces += [str(component.get("content") or ""), str(component.get("label") or "")]
        return "\n".join(p for p in pieces if p)


def _walk_components(components: Iterable[Payload]) -> Iterable[Payload]:
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            yield accessory


@dataclass(frozen=True)
class FakeAttachment:
    """An attachment a member uploads with a command option (see :meth:`FakeDiscord.make_attachment`)."""

    id: int
    filename: str
    content_type: str
    size: int
    url: str
    width: int | None = None
    height: int | None = None

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "ephemeral": True,  # attachments of command options are ephemeral uploads
            "flags": 0,
        }
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        return data


@dataclass(frozen=True)
class RawValue:
    """Wraps an option value that must be sent verbatim (no resolution of users/attachments...)."""

    value: Any


@dataclass(frozen=True)
class InteractionCallback:
    type: int
    data: Payload | None
    time: float
    latency: float  # seconds between dispatching INTERACTION_CREATE and the callback's arrival
    files: tuple[RecordedPart, ...] = ()

    @property
    def flags(self) -> int:
        return int((self.data or {}).get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def content(self) -> str | None:
        return None if self.data is None else self.data.get("content")

    @property
    def choices(self) -> list[Payload]:
        """Autocomplete results (type 8)."""
        return list((self.data or {}).get("choices") or [])


class CommandUnavailableError(Exception):
    """The member could not have invoked this command in Discord's client (context or permissions)."""


class LateAcknowledgementError(AssertionError):
    """The bot answered an interaction after Discord's acknowledgement deadline."""


class _HTTPError(Exception):
    """Raised inside handlers to answer with a Discord-shaped error."""

    def __init__(self, status: int, message: str, code: int, errors: Payload | None = None) -> None:
        super().__init__(f"{status} {message} ({code})")
        self.status = status
        self.body: Payload = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def _form_error(field_path: str, code: str, message: str) -> _HTTPError:
    """A 50035 Invalid Form Body error with Discord's nested ``errors`` shape."""
    errors: Payload = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return _HTTPError(400, "Invalid Form Body", 50035, errors)


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

_SERVER_ERROR_MESSAGES = {500: "500: Internal Server Error", 502: "502: Bad Gateway", 503: "503: Service Unavailable"}


# --------------------------------------------------------------------------------------------------------
# Interaction handle
# --------------------------------------------------------------------------------------------------------


class InteractionHandle:
    """What a test holds after dispatching an interaction: the callback, follow-ups and edits it caused."""

    def __init__(
        self,
        fake: FakeDiscord,
        *,
        interaction_id: int,
        token: str,
        interaction_type: int,
        payload: Payload,
        command_name: str | None,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        component_message_id: int | None = None,
    ) -> None:
        self._fake = fake
        self.id = interaction_id
        self.token = token
        self.type = interaction_type
        self.payload = payload  # the INTERACTION_CREATE data as dispatched
        self.command_name = command_name
        self.user_id = user_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.component_message_id = component_message_id
        self.dispatched_at: float = 0.0
        self.callback: InteractionCallback | None = None
        self.late_callback: InteractionCallback | None = None  # a callback refused for arriving too late
        self.expired = False
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []
        self._callback_future: asyncio.Future[InteractionCallback] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        callback = None if self.callback is None else self.callback.type
        return f"<InteractionHandle id={self.id} type={self.type} command={self.command_name!r} callback={callback}>"

    # -- the callback -----------------------------------------------------------------------------------

    async def wait_response(self, timeout: float = 3.0) -> InteractionCallback:
        """The interaction callback (its ``type`` and ``data``) once the bot sends it.

        Raises ``TimeoutError`` when nothing arrives in time and :class:`LateAcknowledgementError` when the
        callback came after the acknowledgement deadline (Discord refused it).
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._callback_future), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no interaction callback for {self!r} within {timeout}s; requests so far: "
                f"{self._fake.describe_requests(last=10)}"
            ) from None

    @property
    def ack_latency(self) -> float | None:
        """Seconds between dispatch and the accepted callback (None before it arrives)."""
        return None if self.callback is None else self.callback.latency

    @property
    def responded(self) -> bool:
        return self.callback is not None

    # -- messages -----------------------------------------------------------------------------------------

    @property
    def original(self) -> FakeMessage | None:
        """The current version of ``@original`` (the response message), if any."""
        if self.original_message_id is None:
            return None
        return self._fake.get_message(self.original_message_id)

    @property
    def followups(self) -> list[FakeMessage]:
        """Current versions of the messages sent with ``POST /webhooks/{app}/{token}``.

        After a deferred response the first follow-up *is* ``@original`` (Discord replaces the
        "thinking..." message), so it appears both here and as :attr:`original`.
        """
        found = (self._fake.get_message(mid) for mid in self.followup_ids)
        return [m for m in found if m is not None]

    @property
    def original_edits(self) -> list[FakeMessage]:
        """Every version produced by PATCHing ``@original``, oldest first."""
        return [
            m for m in self._fake.message_log if m.interaction_id == self.id and m.kind == MessageKind.ORIGINAL_EDIT
        ]

    @property
    def messages(self) -> list[FakeMessage]:
        """Every message version this interaction's callback and token produced, oldest first."""
        return [m for m in self._fake.message_log if m.interaction_id == self.id]

    async def wait_followup(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        return await self._fake.wait_for_message(
            lambda m: (
                m.interaction_id == self.id and m.kind == MessageKind.FOLLOWUP and (predicate is None or predicate(m))
            ),
            timeout,
        )

    async def wait_original(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        """The first version of ``@original`` matching ``predicate`` (default: no longer "thinking...")."""

        def matches(message: FakeMessage) -> bool:
            if message.interaction_id != self.id or message.id != self.original_message_id:
                return False
            return (not message.loading) if predicate is None else predicate(message)

        return await self._fake.wait_for_message(matches, timeout)

    async def wait_message(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        """Any message version made through this interaction (response, follow-up or edit)."""
        return await self._fake.wait_for_message(
            lambda m: m.interaction_id == self.id and (predicate is None or predicate(m)), timeout
        )

    def expire(self) -> None:
        """Make the token invalid now, as Discord does 15 minutes after the interaction."""
        self._fake.expire_interaction(self)


# --------------------------------------------------------------------------------------------------------
# Gateway bookkeeping
# --------------------------------------------------------------------------------------------------------


@dataclass
class _GatewayConnection:
    ws: web.WebSocketResponse
    query: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _GatewaySession | None = None
    closed_by_fake: int | None = None  # the close code the fake sent, when it closed first


@dataclass
class _GatewaySession:
    session_id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    connection: _GatewayConnection | None = None
    ready: bool = False
    buffered: list[Payload] = field(default_factory=list)  # events while disconnected, replayed on RESUME


@dataclass
class _Injection:
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
class _Delay:
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
class _Incoming:
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
        raise _form_error("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")


_Handler: TypeAlias = Callable[[_Incoming, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: _Handler
    auth: bool  # interaction callbacks and webhooks authenticate with the token in the URL instead


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{regex}$")


def _json_response(data: JSON, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json", no charset: discord.py's json_or_text compares the header verbatim.
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(status=status, body=json.dumps(data).encode("utf-8"), headers=all_headers)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _snowflake_str(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _form_error("id", "NUMBER_TYPE_COERCE", f"Value {value!r} is not snowflake.") from None


# --------------------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------------------

UserRef: TypeAlias = FakeUser | int | str
GuildRef: TypeAlias = FakeGuild | int | str
ChannelRef: TypeAlias = FakeChannel | int | str
MessageRef: TypeAlias = FakeMessage | int


class FakeDiscord:
    """The fake server. Create it with :func:`run_fake_discord`."""

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
        """
        self.world = world or default_world()
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.upload_limit = upload_limit
        self.reject_invalid_bodies = reject_invalid_bodies
        self.echo_messages = echo_messages
        self.allowed_privileged_intents = allowed_privileged_intents
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
        self._injections: list[_Injection] = []
        self._delays: list[_Delay] = []
        # (channel id, author id, nonce) -> (message id, when) for enforce_nonce de-duplication.
        self._nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        self.nonce_window = 300.0
        self._stopping = asyncio.Event()  # releases answers held by delay_next() when the fake stops
        self.held_answers = 0  # answers currently held back by delay_next()
        self._connections: list[_GatewayConnection] = []
        self._sessions: dict[str, _GatewaySession] = {}
        self._message_waiters: list[tuple[Callable[[FakeMessage], bool], asyncio.Future[FakeMessage]]] = []
        self._request_waiters: list[tuple[Callable[[RecordedRequest], bool], asyncio.Future[RecordedRequest]]] = []
        self._state_changed = asyncio.Event()

        self._routes = self._build_routes()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"<FakeDiscord {self.base_url} requests={len(self.requests)} messages={len(self.message_log)}>"

    # ------------------------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        # Uploads (videos) are bigger than aiohttp's 1 MiB default; keep room above the upload limit so
        # that the fake, not aiohttp, answers oversized uploads with Discord's 413.
        app = web.Application(client_max_size=self.upload_limit * 4 + 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_entry)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment_entry)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest_entry)
        app.router.add_route("*", "/{tail:.*}", self._rest_entry)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        self._stopping.set()
        for connection in list(self._connections):
            with contextlib.suppress(Exception):
                await self._close(connection, 1001, "fake Discord shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for _, future in self._message_waiters:
            future.cancel()
        for _, request_future in self._request_waiters:
            request_future.cancel()
        for handle in self.interactions.values():
            handle._callback_future.cancel()

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

    # ------------------------------------------------------------------------------------------------------
    # The default world's cast (KeyError when a custom world lacks them)
    # ------------------------------------------------------------------------------------------------------

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

    # ------------------------------------------------------------------------------------------------------
    # Fault injection
    # ------------------------------------------------------------------------------------------------------

    def set_channel_fault(self, channel_id: int | FakeChannel, status: int | None) -> None:
        """Make creating messages in a channel fail: 403 Missing Permissions, 404 Unknown Channel, 5xx.

        ``None`` removes the fault.
        """
        cid = channel_id.id if isinstance(channel_id, FakeChannel) else channel_id
        if status is None:
            self._channel_faults.pop(cid, None)
        elif status in (403, 404) or status >= 500:
            self._channel_faults[cid] = status
        else:
            raise ValueError(f"unsupported channel fault status {status}")

    def close_dms(self, user: UserRef) -> None:
        """The member closed their DMs: messages to them answer 403 / 50007."""
        self._closed_dms.add(self._user(user).id)

    def open_dms(self, user: UserRef) -> None:
        self._closed_dms.discard(self._user(user).id)

    def rate_limit_next(
        self,
        n: int,
        route_substring: str,
        retry_after: float = 0.2,
        *,
        method: str | None = None,
        is_global: bool = False,
    ) -> None:
        """The next ``n`` requests whose path contains ``route_substring`` answer 429, then pass."""
        body: Payload = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        self._injections.append(
            _Injection(n, route_substring, method, 429, body, retry_after=retry_after, is_global=is_global)
        )

    def fail_next(
        self,
        n: int,
        route_substring: str,
        status: int = 500,
        *,
        method: str | None = None,
        body: Payload | None = None,
    ) -> None:
        """The next ``n`` matching requests answer ``status`` with ``body`` (default: Discord's for it)."""
        self._injections.append(_Injection(n, route_substring, method, status, body))

    def delay_next(self, n: int, route_substring: str, seconds: float, *, method: str | None = None) -> None:
        """The next ``n`` matching requests are handled and recorded as usual (a message is created), but their
        answer is held back for ``seconds`` (or until the fake stops): Discord did the work and the answer is
        late or lost, e.g. to kill a bot while it waits for it. :attr:`held_answers` counts answers on hold."""
        self._delays.append(_Delay(n, route_substring, method, seconds))

    def _take_delay(self, method: str, path: str) -> float | None:
        for delay in self._delays:
            if delay.matches(method, path):
                delay.remaining -= 1
                return delay.seconds
        return None

    def expire_interaction(self, interaction: InteractionHandle | int) -> None:
        """Expire an interaction token now: follow-ups and edits answer 401 / 50027."""
        handle = self.interactions[interaction if isinstance(interaction, int) else interaction.id]
        handle.expired = True

    # ------------------------------------------------------------------------------------------------------
    # Inspection
    # ------------------------------------------------------------------------------------------------------

    def get_message(self, message_id: int) -> FakeMessage | None:
        """The latest version of a message (deleted ones too, with ``deleted=True``)."""
        return self._messages.get(message_id)

    def messages_in(
        self, channel: int | FakeChannel, *, include_ephemeral: bool = True, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """Latest versions of the messages in a channel, oldest first."""
        cid = channel.id if isinstance(channel, FakeChannel) else channel
        return [
            m
            for m in self._messages.values()
            if m.channel_id == cid and (include_ephemeral or not m.ephemeral) and (include_deleted or not m.deleted)
        ]

    def dm_channel_of(self, user: UserRef) -> FakeChannel | None:
        return self._dm_channels.get(self._user(user).id)

    def dm_messages_to(self, user: UserRef) -> list[FakeMessage]:
        """Latest versions of the messages in the bot's DM channel with ``user``, oldest first."""
        channel = self.dm_channel_of(user)
        return [] if channel is None else self.messages_in(channel)

    def message_mark(self) -> int:
        """A position in :attr:`message_log`, for ``wait_for_message(since=...)``."""
        return len(self.message_log)

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> FakeMessage:
        """The first message version (create or edit, any kind) from ``since`` on that matches.

        Versions already logged are checked first, so a message that arrived before the call is found.
        """
        check = predicate or (lambda _m: True)
        for message in self.message_log[since:]:
            if check(message):
                return message
        future: asyncio.Future[FakeMessage] = asyncio.get_running_loop().create_future()
        entry = (check, future)
        self._message_waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            recent = "\n  ".join(f"{m.kind} in {m.channel_id}: {m.text[:80]!r}" for m in self.message_log[since:][-10:])
            raise TimeoutError(
                f"no matching message within {timeout}s; latest messages:\n  {recent or '(none)'}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._message_waiters.remove(entry)

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 5.0, *, since: int = 0
    ) -> RecordedRequest:
        for request in self.requests[since:]:
            if predicate(request):
                return request
        future: asyncio.Future[RecordedRequest] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._request_waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no matching request within {timeout}s; latest: {self.describe_requests(last=10)}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._request_waiters.remove(entry)

    def requests_to(self, route_substring: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in self.requests if route_substring in r.path and (method is None or r.method == method.upper())
        ]

    def describe_requests(self, last: int = 20) -> str:
        return ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-last:]) or "(none)"

    def attachment_bytes(self, attachment_id: int | str) -> bytes:
        """The content of an attachment the bot uploaded (or one made with :meth:`make_attachment`)."""
        return self._attachment_blobs[int(attachment_id)][2]

    # -- commands --------------------------------------------------------------------------------------------

    @property
    def sync_count(self) -> int:
        return len(self.command_syncs)

    def synced_commands(self, guild: GuildRef | None = None) -> list[Payload]:
        """The commands as stored after the bot's last sync (global, or of one guild)."""
        if guild is None:
            return list(self._global_commands.values())
        return list(self._guild_commands.get(self._guild(guild).id, {}).values())

    def command(self, name: str, guild: GuildRef | None = None) -> Payload:
        """A synced chat-input command by name: the guild's own first, then the global one."""
        scopes: list[dict[int, Payload]] = []
        if guild is not None:
            scopes.append(self._guild_commands.get(self._guild(guild).id, {}))
        scopes.append(self._global_commands)
        for scope in scopes:
            for command in scope.values():
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        known = sorted({c["name"] for scope in scopes for c in scope.values()})
        raise LookupError(f"/{name} has not been synced (synced: {known or 'nothing'})")

    async def wait_for_commands(
        self, *names: str, guild: GuildRef | None = None, timeout: float = 10.0
    ) -> list[Payload]:
        """Wait until the bot has synced commands with these names (globally, or to ``guild``)."""

        def done() -> bool:
            try:
                for name in names:
                    self.command(name, guild)
            except LookupError:
                return False
            return True

        await self._wait_state(done, timeout, lambda: f"commands {names} were not synced")
        return [self.command(name, guild) for name in names]

    # -- gateway -------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A client identified (READY + GUILD_CREATEs sent) and its websocket is open."""
        return any(s.ready and s.connection is not None and not s.connection.ws.closed for s in self._sessions.values())

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

    async def dispatch_event(self, event: str, data: Payload) -> None:
        """Send any gateway DISPATCH to every identified session (e.g. GUILD_MEMBER_ADD)."""
        sessions = [s for s in self._sessions.values() if s.ready]
        if not sessions:
            raise RuntimeError("the bot is not connected to the fake gateway")
        for session in sessions:
            await self._dispatch(session, event, data)

    # ------------------------------------------------------------------------------------------------------
    # Driving the bot like members would
    # ------------------------------------------------------------------------------------------------------

    def make_attachment(
        self,
        filename: str = "frame.png",
        content: bytes = b"\x89PNG\r\n\x1a\n fake image",
        *,
        content_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> FakeAttachment:
        """An uploaded file for an attachment option; its URL serves ``content`` from the fake."""
        attachment_id = self.new_snowflake()
        ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self._attachment_blobs[attachment_id] = (filename, ctype, content)
        if width is None and ctype.startswith("image/"):
            width, height = 1024, 768
        return FakeAttachment(
            id=attachment_id,
            filename=filename,
            content_type=ctype,
            size=len(content),
            url=self._attachment_url(attachment_id, filename),
            width=width,
            height=height,
        )

    async def send_interaction(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        channel: ChannelRef | None = None,
        dm: bool = False,
        raw_options: list[Payload] | None = None,
        locale: str = "en-US",
        enforce_client_rules: bool = True,
    ) -> InteractionHandle:
        """Dispatch an application command (type 2) as ``user`` would invoke it.

        command: the command's name, with subcommands separated by spaces ("video generate").
        options: leaf option values by name; their types come from the synced command (string, integer,
            number and boolean values are sent exactly as given, so values outside the declared choices or
            bounds can be sent; users/channels/roles may be given as objects or ids, attachments as
            :class:`FakeAttachment` from :meth:`make_attachment`; wrap a value in :class:`RawValue` to send
            it unresolved).
        raw_options: replaces ``data.options`` entirely (nothing is resolved).
        dm: invoke in the bot's DM with ``user`` (no guild, ``user`` instead of ``member``, context 1).
        enforce_client_rules: refuse (CommandUnavailableError / ValueError) what Discord's client would not
            let a member send: commands not available in that context, missing default_member_permissions,
            missing required options.
        """
        return await self._send_command(
            InteractionType.APPLICATION_COMMAND,
            command,
            options or {},
            user=user,
            guild=guild,
            channel=channel,
            dm=dm,
            raw_options=raw_options,
            locale=locale,
            enforce_client_rules=enforce_client_rules,
            focused=None,
        )

    async def send_autocomplete(
        self,
        command: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        channel: ChannelRef | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Dispatch an autocomplete interaction (type 4) while the member types into option ``focused``."""
        return await self._send_command(
            InteractionType.AUTOCOMPLETE,
            command,
            options,
            user=user,
            guild=guild,
            channel=channel,
            dm=dm,
            raw_options=None,
            locale=locale,
            enforce_client_rules=False,  # partially filled forms are the point of autocomplete
            focused=focused,
        )

    async def send_component(
        self,
        message: MessageRef,
        custom_id: str,
        *,
        user: UserRef | None = None,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
        enforce_client_rules: bool = True,
    ) -> InteractionHandle:
        """Dispatch a component interaction (type 3): ``user`` clicks button ``custom_id`` on ``message``.

        With ``enforce_client_rules`` the component must exist on the message and not be disabled.
        """
        target = message if isinstance(message, FakeMessage) else self.get_message(message)
        if target is None:
            raise LookupError(f"no message {message!r}")
        target = self.get_message(target.id) or target
        if enforce_client_rules:
            found = [c for c in _walk_components(target.components) if c.get("custom_id") == custom_id]
            if not found:
                raise CommandUnavailableError(f"message {target.id} has no component {custom_id!r}")
            if found[0].get("disabled"):
                raise CommandUnavailableError(f"component {custom_id!r} is disabled")
        member_user = self._user(user) if user is not None else self._default_user()
        channel = self._channel_by_id(target.channel_id)
        guild = None if channel.guild_id is None else self.world.guild(channel.guild_id)
        data: Payload = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        payload, handle = self._interaction_envelope(
            InteractionType.MESSAGE_COMPONENT,
            member_user,
            guild,
            channel,
            locale,
            command_name=None,
            component_message_id=target.id,
        )
        payload["data"] = data
        payload["message"] = dict(target.payload)
        return await self._dispatch_interaction(payload, handle)

    async def send_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        channel: ChannelRef | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Dispatch a modal submission (type 5) with text inputs ``values`` (custom_id -> value)."""
        member_user = self._user(user) if user is not None else self._default_user()
        target_guild, target_channel = self._place(member_user, guild, channel, dm)
        payload, handle = self._interaction_envelope(
            InteractionType.MODAL_SUBMIT, member_user, target_guild, target_channel, locale, command_name=None
        )
        payload["data"] = {
            "custom_id": custom_id,
            "components": [
                {"type": 1, "id": index + 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
                for index, (key, value) in enumerate(values.items())
            ],
        }
        return await self._dispatch_interaction(payload, handle)

    async def send_member_message(
        self,
        content: str,
        *,
        channel: ChannelRef | None = None,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        dm: bool = False,
    ) -> FakeMessage:
        """``user`` posts a message in ``channel`` (or, with ``dm``, in their DM with the bot): MESSAGE_CREATE.

        Without the MESSAGE_CONTENT intent the bot gets an empty ``content`` unless it is mentioned or it is a
        DM, as in Discord.
        """
        author = self._user(user) if user is not None else self._default_user()
        _, target = self._place(author, guild, channel, dm)
        payload = self._message_payload(target, author, {"content": content}, [], mtype=0)
        message = self._emit_new(payload, target, MessageKind.MEMBER, author_id=author.id)
        for session in [s for s in self._sessions.values() if s.ready]:
            event = self._gateway_message(message, session.intents, own=False)
            if event is not None:
                await self._dispatch(session, "MESSAGE_CREATE", event)
        return message

    # ------------------------------------------------------------------------------------------------------
    # Internals: helpers
    # ------------------------------------------------------------------------------------------------------

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

    # ------------------------------------------------------------------------------------------------------
    # Internals: payloads
    # ------------------------------------------------------------------------------------------------------

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

    # ------------------------------------------------------------------------------------------------------
    # HTTP plumbing
    # ------------------------------------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, _Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._open_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/applications/{application_id}/commands", self._list_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/commands", self._upsert_command, True),
            ("GET", "/applications/{application_id}/commands/{command_id}", self._get_command, True),
            ("PATCH", "/applications/{application_id}/commands/{command_id}", self._patch_command, True),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self._delete_command, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._list_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._upsert_command, True),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._get_command,
                True,
            ),
            (
                "PATCH",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._patch_command,
                True,
            ),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._delete_command,
                True,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self._webhook_execute, False),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_get, False),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_edit, False),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_delete, False),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/channels/{channel_id}/messages", self._list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._add_reaction,
                True,
            ),
            ("GET", "/guilds/{guild_id}", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, True),
            ("GET", "/guilds/{guild_id}/members", self._list_members, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
        ]
        return [
            _Route(method, template, _compile(template), handler, auth) for method, template, handler, auth in table
        ]

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        # Literal routes (e.g. /users/@me) are listed before templated ones with the same shape.
        for route in self._routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None

    async def _read(self, request: web.Request, path: str) -> _Incoming:
        query = {k: v for k, v in request.query.items()}
        body: JSON = None
        parts: tuple[RecordedPart, ...] | None = None
        if request.content_type.startswith("multipart/"):
            collected: list[RecordedPart] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: discord.py never sends it
                    continue
                data = await part.read(decode=False)
                collected.append(
                    RecordedPart(
                        name=part.name or "",
                        filename=part.filename,
                        content_type=part.headers.get("Content-Type"),
                        data=bytes(data),
                    )
                )
            parts = tuple(collected)
            payload = next((p for p in parts if p.name == "payload_json"), None)
            if payload is not None:
                try:
                    body = json.loads(payload.data)
                except ValueError:
                    body = None
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", errors="replace")
        return _Incoming(request, request.method, path, query, body, parts)

    def _auth_state(self, request: web.Request) -> Literal["valid", "invalid", "missing"]:
        header = request.headers.get("Authorization")
        if header is None:
            return "missing"
        expected = f"Bot {self.world.token}"
        return "valid" if hmac.compare_digest(header.encode(), expected.encode()) else "invalid"

    async def _rest_entry(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw_path = request.path
        on_api = raw_path.startswith(API_PREFIX + "/")
        path = raw_path[len(API_PREFIX) :] if on_api else raw_path
        incoming = await self._read(request, path)
        auth = self._auth_state(request)
        matched = self._match(request.method, path) if on_api else None
        route = matched[0] if matched else None
        try:
            response = await self._handle(incoming, matched, auth)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it visible
            _log.exception("fake Discord failed on %s %s", request.method, path)
            self.internal_errors.append(f"{request.method} {path}: {exc!r}")
            response = _json_response({"message": "500: Internal Server Error", "code": 0}, 500)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=incoming.query,
            json=incoming.json,
            parts=incoming.parts,
            headers=headers,
            auth=auth,
            time=arrived,
            status=response.status,
            route=None if route is None else f"{route.method} {route.template}",
        )
        self.requests.append(record)
        for predicate, future in list(self._request_waiters):
            if not future.done():
                try:
                    if predicate(record):
                        future.set_result(record)
                except Exception as exc:
                    future.set_exception(exc)
        held = self._take_delay(request.method, path) if route is not None else None
        if held is not None:
            self.held_answers += 1
            self._notify_state()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), held)
            finally:
                self.held_answers -= 1
        return response

    async def _handle(
        self,
        incoming: _Incoming,
        matched: tuple[_Route, dict[str, str]] | None,
        auth: Literal["valid", "invalid", "missing"],
    ) -> web.StreamResponse:
        if matched is None:
            self._check_schema(incoming)
            return _json_response({"message": "404: Not Found", "code": 0}, 404)
        route, params = matched
        if route.auth and auth != "valid":
            return _json_response({"message": "401: Unauthorized", "code": 0}, 401)
        errors = self._check_schema(incoming)
        injected = self._injected_response(incoming.method, incoming.path)
        if injected is not None:
            return injected
        if errors and self.reject_invalid_bodies:
            return _json_response({"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400)
        try:
            return await route.handler(incoming, params)
        except _HTTPError as error:
            return _json_response(error.body, error.status)

    def _check_schema(self, incoming: _Incoming) -> list[str]:
        if self.validator is None:
            return []
        if incoming.parts is not None:
            fields: dict[str, str | bytes] = {p.name: p.data for p in incoming.parts}
            errors = self.validator.validate_multipart(incoming.method, incoming.path, fields)
        else:
            errors = self.validator.validate(incoming.method, incoming.path, incoming.json)
        for error in errors:
            self.schema_errors.append((incoming.method, incoming.path, error))
        return errors

    def _injected_response(self, method: str, path: str) -> web.Response | None:
        for injection in self._injections:
            if not injection.matches(method, path):
                continue
            injection.remaining -= 1
            if injection.status == 429:
                retry = injection.retry_after
                headers = {
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                    "X-RateLimit-Reset-After": f"{retry:.3f}",
                    "X-RateLimit-Bucket": "fake" + secrets.token_hex(8),
                    "X-RateLimit-Scope": "global" if injection.is_global else "user",
                    "Retry-After": str(max(1, int(retry + 0.999))),
                    # Without Via discord.py takes a 429 for a Cloudflare ban and raises instead of retrying.
                    "Via": "1.1 google",
                }
                if injection.is_global:
                    headers["X-RateLimit-Global"] = "true"
                return _json_response(injection.body, 429, headers)
            body = injection.body or {
                "message": _SERVER_ERROR_MESSAGES.get(injection.status, f"{injection.status}: Injected failure"),
                "code": 0,
            }
            return _json_response(body, injection.status)
        return None

    async def _attachment_entry(self, request: web.Request) -> web.StreamResponse:
        try:
            _filename, content_type, data = self._attachment_blobs[int(request.match_info["attachment_id"])]
        except (KeyError, ValueError):
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, headers={"Content-Type": content_type})

    # ------------------------------------------------------------------------------------------------------
    # REST: users, application, gateway
    # ------------------------------------------------------------------------------------------------------

    async def _get_me(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        data = self.world.bot.payload()
        data.update({"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})
        return _json_response(data)

    async def _get_user(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        try:
            return _json_response(self.world.user(_snowflake_str(params["user_id"])).payload())
        except KeyError:
            raise _HTTPError(*UNKNOWN_USER) from None

    async def _open_dm(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        body = incoming.body()
        try:
            user = self.world.user(_snowflake_str(body.get("recipient_id")))
        except KeyError:
            raise _HTTPError(400, "Invalid Recipient(s)", 50033) from None
        return _json_response(self._channel_payload(self._dm_channel(user)))

    async def _get_application(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response(self._application_payload())

    async def _get_gateway(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
            }
        )

    # ------------------------------------------------------------------------------------------------------
    # REST: application commands
    # ------------------------------------------------------------------------------------------------------

    def _command_scope(self, params: Mapping[str, str]) -> tuple[int | None, dict[int, Payload]]:
        if _snowflake_str(params["application_id"]) != self.application_id:
            raise _HTTPError(*MISSING_ACCESS)
        if "guild_id" not in params:
            return None, self._global_commands
        guild_id = _snowflake_str(params["guild_id"])
        try:
            self.world.guild(guild_id)
        except KeyError:
            raise _HTTPError(*MISSING_ACCESS) from None
        return guild_id, self._guild_commands.setdefault(guild_id, {})

    def _store_command(self, guild_id: int | None, scope: Mapping[int, Payload], body: Payload) -> Payload:
        name = body.get("name")
        ctype = int(body.get("type") or 1)
        if not isinstance(name, str) or not name:
            raise _form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
        # Discord keeps a command's id when an overwrite names an existing command.
        existing = next((c for c in scope.values() if c["name"] == name and c.get("type", 1) == ctype), None)
        command: Payload = {
            "id": existing["id"] if existing else str(self.new_snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.new_snowflake()),
            "default_member_permissions": None,
            "type": ctype,
            "name": name,
            "name_localizations": None,
            "description": body.get("description", ""),
            "description_localizations": None,
            "dm_permission": True,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
        }
        command.update({k: v for k, v in body.items() if k not in ("id", "application_id", "version")})
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
            command.pop("dm_permission", None)
        return command

    async def _list_commands(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        _, scope = self._command_scope(params)
        return _json_response(list(scope.values()))

    async def _put_commands(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild_id, scope = self._command_scope(params)
        body = incoming.json if incoming.json is not None else []
        if not isinstance(body, list):
            raise _form_error("_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        stored = [self._store_command(guild_id, scope, item) for item in body]
        scope.clear()
        for command in stored:
            scope[int(command["id"])] = command
        self.command_syncs.append(CommandSync(guild_id, tuple(c["name"] for c in stored), time.monotonic()))
        self._notify_state()
        return _json_response(stored)

    async def _upsert_command(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild_id, scope = self._command_scope(params)
        command = self._store_command(guild_id, scope, incoming.body())
        created = int(command["id"]) not in scope
        scope[int(command["id"])] = command
        self._notify_state()
        return _json_response(command, 201 if created else 200)

    def _find_command(self, params: Mapping[str, str]) -> tuple[dict[int, Payload], int]:
        _, scope = self._command_scope(params)
        command_id = _snowflake_str(params["command_id"])
        if command_id not in scope:
            raise _HTTPError(*UNKNOWN_COMMAND)
        return scope, command_id

    async def _get_command(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        scope, command_id = self._find_command(params)
        return _json_response(scope[command_id])

    async def _patch_command(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        scope, command_id = self._find_command(params)
        scope[command_id] = {**scope[command_id], **incoming.body(), "version": str(self.new_snowflake())}
        self._notify_state()
        return _json_response(scope[command_id])

    async def _delete_command(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        scope, command_id = self._find_command(params)
        del scope[command_id]
        self._notify_state()
        return _no_content()

    # ------------------------------------------------------------------------------------------------------
    # REST: guilds, channels
    # ------------------------------------------------------------------------------------------------------

    def _guild_for(self, params: Mapping[str, str]) -> FakeGuild:
        try:
            return self.world.guild(_snowflake_str(params["guild_id"]))
        except KeyError:
            raise _HTTPError(*UNKNOWN_GUILD) from None

    async def _get_guild(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response(self._guild_payload(self._guild_for(params), full=False))

    async def _get_guild_channels(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response([self._channel_payload(c) for c in self._guild_for(params).channels])

    async def _get_guild_roles(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response([r.payload() for r in self._guild_for(params).roles])

    async def _list_members(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild = self._guild_for(params)
        limit = int(incoming.query.get("limit", "1"))
        after = int(incoming.query.get("after", "0"))
        members = sorted((m for m in guild.members if m.user_id > after), key=lambda m: m.user_id)[:limit]
        return _json_response([self._member_payload(guild, m) for m in members])

    async def _get_member(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild = self._guild_for(params)
        member = guild.member(_snowflake_str(params["user_id"]))
        if member is None:
            raise _HTTPError(*UNKNOWN_MEMBER)
        return _json_response(self._member_payload(guild, member))

    def _channel_for(self, params: Mapping[str, str]) -> FakeChannel:
        try:
            return self._channel_by_id(_snowflake_str(params["channel_id"]))
        except KeyError:
            raise _HTTPError(*UNKNOWN_CHANNEL) from None

    async def _get_channel(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        return _json_response(self._channel_payload(self._channel_for(params)))

    async def _typing(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        self._channel_for(params)
        return _no_content()

    async def _add_reaction(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        self._message_in(self._channel_for(params), params["message_id"])
        return _no_content()

    def _message_in(self, channel: FakeChannel, message_id: str) -> FakeMessage:
        message = self._messages.get(_snowflake_str(message_id))
        if message is None or message.deleted or message.channel_id != channel.id:
            raise _HTTPError(*UNKNOWN_MESSAGE)
        return message

    def _bot_permissions_in(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DM_PERMISSIONS
        return compute_permissions(self.world.guild(channel.guild_id), self.world.bot.id, channel)

    async def _list_messages(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        channel = self._channel_for(params)
        if not self._bot_permissions_in(channel) & Perm.READ_MESSAGE_HISTORY:
            raise _HTTPError(*MISSING_ACCESS)
        limit = min(int(incoming.query.get("limit", "50")), 100)
        before = int(incoming.query.get("before", "0")) or None
        after = int(incoming.query.get("after", "0")) or None
        found = [
            m
            for m in self.messages_in(channel, include_ephemeral=False)
            if (before is None or m.id < before) and (after is None or m.id > after)
        ]
        if after is not None and before is None:
            # Discord answers the `limit` messages right after `after` (a client pages forward from there),
            # not the newest ones; either way the array is newest first.
            chosen = sorted(found, key=lambda m: m.id)[:limit]
        else:
            chosen = sorted(found, key=lambda m: m.id, reverse=True)[:limit]
        newest_first = sorted(chosen, key=lambda m: m.id, reverse=True)
        return _json_response([m.payload for m in newest_first])

    async def _get_channel_message(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        message = self._message_in(self._channel_for(params), params["message_id"])
        if message.ephemeral:
            raise _HTTPError(*UNKNOWN_MESSAGE)
        return _json_response(message.payload)

    async def _create_message(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        channel = self._channel_for(params)
        fault = self._channel_faults.get(channel.id)
        if fault == 403:
            raise _HTTPError(*MISSING_PERMISSIONS)
        if fault == 404:
            raise _HTTPError(*UNKNOWN_CHANNEL)
        if fault is not None:
            raise _HTTPError(fault, _SERVER_ERROR_MESSAGES.get(fault, f"{fault}: Server Error"), 0)
        recipient_id = channel.recipient_ids[0] if channel.is_dm else None
        if recipient_id is not None and (recipient_id in self._closed_dms or not self._shares_guild(recipient_id)):
            raise _HTTPError(*CANNOT_DM)
        permissions = self._bot_permissions_in(channel)
        if not permissions & Perm.VIEW_CHANNEL:
            raise _HTTPError(*MISSING_ACCESS)
        if not permissions & Perm.SEND_MESSAGES or (incoming.files and not permissions & Perm.ATTACH_FILES):
            raise _HTTPError(*MISSING_PERMISSIONS)
        body = incoming.body()
        self._check_message_limits(body, incoming.files, creating=True)
        nonce_key = None
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            nonce_key = (channel.id, self.world.bot.id, str(body["nonce"]))
            earlier = self._nonces.get(nonce_key)
            if earlier is not None and time.monotonic() - earlier[1] <= self.nonce_window:
                existing = self._messages.get(earlier[0])
                if existing is not None and not existing.deleted:
                    return _json_response(existing.payload)
        attachments = self._make_attachments(body, incoming.files, existing=[], ephemeral=False)
        payload = self._message_payload(channel, self.world.bot, body, attachments, mtype=0)
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            payload.update(self._reference_fields(channel, reference))
            payload["type"] = 19  # REPLY
        kind = MessageKind.DM if channel.is_dm else MessageKind.CHANNEL
        message = self._emit_new(payload, channel, kind, author_id=self.world.bot.id)
        if nonce_key is not None:
            self._nonces[nonce_key] = (message.id, time.monotonic())
        await self._echo(message, "MESSAGE_CREATE")
        return _json_response(message.payload)

    async def _edit_channel_message(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        channel = self._channel_for(params)
        message = self._message_in(channel, params["message_id"])
        if message.author_id != self.world.bot.id:
            raise _HTTPError(*CANNOT_EDIT_OTHERS)
        edited = self._edit(message, incoming, MessageKind.MESSAGE_EDIT)
        await self._echo(edited, "MESSAGE_UPDATE")
        return _json_response(edited.payload)

    async def _delete_channel_message(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        message = self._message_in(self._channel_for(params), params["message_id"])
        self._mark_deleted(message)
        return _no_content()

    def _shares_guild(self, user_id: int) -> bool:
        return any(g.member(user_id) is not None for g in self.world.guilds)

    def _reference_fields(self, channel: FakeChannel, reference: Payload) -> Payload:
        referenced = self._messages.get(_snowflake_str(reference["message_id"]))
        if referenced is None or referenced.deleted:
            if reference.get("fail_if_not_exists", True):
                raise _form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            return {}
        return {
            "message_reference": {
                "type": 0,
                "message_id": str(referenced.id),
                "channel_id": str(referenced.channel_id),
                "guild_id": None if referenced.guild_id is None else str(referenced.guild_id),
            },
            "referenced_message": referenced.payload,
        }

    # ------------------------------------------------------------------------------------------------------
    # Messages: building, limits, storage
    # ------------------------------------------------------------------------------------------------------

    def _check_message_limits(self, body: Payload, files: Sequence[RecordedPart], *, creating: bool) -> None:
        """Discord's documented limits, answered the way Discord answers them."""
        if sum(f.size for f in files) > self.upload_limit:
            raise _HTTPError(*TOO_LARGE)
        content = body.get("content")
        if isinstance(content, str) and len(content) > 2000:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if isinstance(embeds, list):
            if len(embeds) > 10:
                raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
            total = 0
            for index, embed in enumerate(embeds):
                if not isinstance(embed, dict):
                    continue
                for key, limit in (("title", 256), ("description", 4096)):
                    value = embed.get(key)
                    if isinstance(value, str) and len(value) > limit:
                        raise _form_error(
                            f"embeds.{index}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                        )
                    total += len(value) if isinstance(value, str) else 0
                fields = embed.get("fields") or []
                if len(fields) > 25:
                    raise _form_error(
                        f"embeds.{index}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                    )
                for field_index, embed_field in enumerate(fields):
                    for key, limit in (("name", 256), ("value", 1024)):
                        value = embed_field.get(key)
                        if not isinstance(value, str) or not value:
                            raise _form_error(
                                f"embeds.{index}.fields.{field_index}.{key}",
                                "BASE_TYPE_REQUIRED",
                                "This field is required",
                            )
                        if len(value) > limit:
                            raise _form_error(
                                f"embeds.{index}.fields.{field_index}.{key}",
                                "BASE_TYPE_MAX_LENGTH",
                                f"Must be {limit} or fewer in length.",
                            )
                        total += len(value)
                total += len(str((embed.get("footer") or {}).get("text") or ""))
                total += len(str((embed.get("author") or {}).get("name") or ""))
            if total > 6000:
                raise _form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        if creating and not (
            content
            or embeds
            or files
            or body.get("components")
            or body.get("sticker_ids")
            or body.get("poll")
            or body.get("attachments")
        ):
            raise _HTTPError(*EMPTY_MESSAGE)

    def _make_attachments(
        self, body: Payload, files: Sequence[RecordedPart], *, existing: Sequence[Payload], ephemeral: bool
    ) -> list[Payload]:
        """Attachments of a new version: kept ones listed in ``attachments`` plus the uploaded ``files[n]``."""
        uploads = {p.name: p for p in files}
        listed = body.get("attachments")
        result: list[Payload] = []
        used: set[str] = set()
        if isinstance(listed, list):
            by_id = {a["id"]: a for a in existing}
            for entry in listed:
                if not isinstance(entry, dict):
                    continue
                key = str(entry.get("id"))
                if key in by_id:
                    result.append(by_id[key])
                elif f"files[{key}]" in uploads:
                    used.add(f"files[{key}]")
                    result.append(self._store_upload(uploads[f"files[{key}]"], entry, ephemeral))
        else:
            result.extend(existing)
        for name, part in uploads.items():
            if name not in used:
                result.append(self._store_upload(part, {}, ephemeral))
        return result

    def _store_upload(self, part: RecordedPart, entry: Mapping[str, Any], ephemeral: bool) -> Payload:
        attachment_id = self.new_snowflake()
        filename = str(entry.get("filename") or part.filename or "file")
        content_type = mimetypes.guess_type(filename)[0] or part.content_type or "application/octet-stream"
        self._attachment_blobs[attachment_id] = (filename, content_type, part.data)
        data: Payload = {
            "id": str(attachment_id),
            "filename": filename,
            "size": part.size,
            "url": self._attachment_url(attachment_id, filename),
            "proxy_url": self._attachment_url(attachment_id, filename),
            "content_type": content_type,
            "flags": 0,
        }
        if entry.get("description"):
            data["description"] = entry["description"]
        if ephemeral:
            data["ephemeral"] = True
        return data

    def _mentions(self, content: str) -> tuple[list[Payload], list[str]]:
        users: list[Payload] = []
        for user_id in dict.fromkeys(int(x) for x in re.findall(r"<@!?(\d+)>", content)):
            with contextlib.suppress(KeyError):
                users.append(self.world.user(user_id).payload())
        roles = list(dict.fromkeys(re.findall(r"<@&(\d+)>", content)))
        return users, roles

    def _message_payload(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: Payload,
        attachments: list[Payload],
        *,
        mtype: int,
        flags: int | None = None,
        webhook_id: int | None = None,
    ) -> Payload:
        content = body.get("content")
        content = content if isinstance(content, str) else ""
        mentions, mention_roles = self._mentions(content)
        embeds = [{"type": "rich", **e} if isinstance(e, dict) else e for e in body.get("embeds") or []]
        payload: Payload = {
            "id": str(self.new_snowflake()),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": mentions,
            "mention_roles": mention_roles,
            "attachments": attachments,
            "embeds": embeds,
            "components": list(body.get("components") or []),
            "reactions": [],
            "pinned": False,
            "type": mtype,
            "flags": int(body.get("flags") or 0) if flags is None else flags,
        }
        if body.get("nonce") is not None:
            payload["nonce"] = body["nonce"]
        if webhook_id is not None:
            payload["webhook_id"] = str(webhook_id)
            payload["application_id"] = str(self.application_id)
        return payload

    def _emit(self, message: FakeMessage) -> FakeMessage:
        message = replace(message, seq=len(self.message_log), time=time.monotonic())
        self.message_log.append(message)
        self._messages[message.id] = message
        for predicate, future in list(self._message_waiters):
            if future.done():
                continue
            try:
                if predicate(message):
                    future.set_result(message)
            except Exception as exc:  # surface predicate bugs in the waiting test
                future.set_exception(exc)
        return message

    def _emit_new(
        self,
        payload: Payload,
        channel: FakeChannel,
        kind: MessageKind,
        *,
        author_id: int,
        interaction_id: int | None = None,
    ) -> FakeMessage:
        return self._emit(
            FakeMessage(
                id=int(payload["id"]),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author_id=author_id,
                kind=kind,
                payload=payload,
                interaction_id=interaction_id,
                recipient_id=channel.recipient_ids[0] if channel.is_dm else None,
            )
        )

    def _edit(
        self,
        message: FakeMessage,
        incoming: _Incoming,
        kind: MessageKind,
        *,
        interaction_id: int | None = None,
        clear_loading: bool = False,
    ) -> FakeMessage:
        body = incoming.body()
        self._check_message_limits(body, incoming.files, creating=False)
        payload = dict(message.payload)
        for key in ("content", "embeds", "components", "tts"):
            if key in body:
                value = body[key]
                if key == "embeds":
                    value = [{"type": "rich", **e} if isinstance(e, dict) else e for e in value or []]
                payload[key] = value if value is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS and IS_COMPONENTS_V2 may change on edit; EPHEMERAL/LOADING stay.
            keep = message.flags & (MessageFlag.EPHEMERAL | MessageFlag.LOADING)
            payload["flags"] = keep | (
                int(body["flags"]) & (MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2)
            )
        if clear_loading:
            payload["flags"] = int(payload.get("flags") or 0) & ~MessageFlag.LOADING
        if "attachments" in body or incoming.files:
            payload["attachments"] = self._make_attachments(
                body, incoming.files, existing=message.attachments, ephemeral=message.ephemeral
            )
        mentions, mention_roles = self._mentions(str(payload.get("content") or ""))
        payload["mentions"], payload["mention_roles"] = mentions, mention_roles
        payload["edited_timestamp"] = _iso()
        return self._emit(
            replace(message, payload=payload, kind=kind, interaction_id=interaction_id or message.interaction_id)
        )

    def _mark_deleted(self, message: FakeMessage) -> None:
        self._messages[message.id] = replace(message, deleted=True)

    def _gateway_message(self, message: FakeMessage, intents: int, *, own: bool) -> Payload | None:
        """The MESSAGE_CREATE/UPDATE payload a session with ``intents`` gets, or None if it gets none."""
        needed = Intents.DIRECT_MESSAGES if message.is_dm else Intents.GUILD_MESSAGES
        if message.ephemeral or not intents & needed:
            return None
        data = dict(message.payload)
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            member = self.world.guild(message.guild_id).member(message.author_id)
            if member is not None:
                data["member"] = self._member_payload(self.world.guild(message.guild_id), member, with_user=False)
        mentioned = any(int(u["id"]) == self.world.bot.id for u in data.get("mentions", []))
        if not own and not message.is_dm and not mentioned and not intents & Intents.MESSAGE_CONTENT:
            data.update({"content": "", "embeds": [], "attachments": [], "components": []})
        return data

    async def _echo(self, message: FakeMessage, event: str) -> None:
        if not self.echo_messages:
            return
        for session in [s for s in self._sessions.values() if s.ready]:
            data = self._gateway_message(message, session.intents, own=True)
            if data is not None:
                await self._dispatch(session, event, data)

    # ------------------------------------------------------------------------------------------------------
    # Interactions
    # ------------------------------------------------------------------------------------------------------

    def _interaction_envelope(
        self,
        interaction_type: int,
        user: FakeUser,
        guild: FakeGuild | None,
        channel: FakeChannel,
        locale: str,
        *,
        command_name: str | None,
        component_message_id: int | None = None,
    ) -> tuple[Payload, InteractionHandle]:
        interaction_id = self.new_snowflake()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: Payload = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.upload_limit,
            "app_permissions": str(self._bot_permissions_in(channel)),
            "channel_id": str(channel.id),
            "channel": self._channel_payload(channel, for_user=None),
        }
        if guild is not None:
            member = guild.member(user.id)
            if member is None:
                raise CommandUnavailableError(f"{user.username} is not a member of {guild.name}")
            member_payload = self._member_payload(guild, member)
            member_payload["permissions"] = str(compute_permissions(guild, user.id, channel))
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild_locale": guild.preferred_locale,
                    "guild": {"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                    "member": member_payload,
                    "authorizing_integration_owners": {"0": str(guild.id)},
                    "context": 0,
                }
            )
            payload["channel"]["permissions"] = str(compute_permissions(guild, user.id, channel))
        else:
            payload.update(
                {
                    "user": user.payload(),
                    # A bot DM is reachable through the guild install too; Discord reports the user install.
                    "authorizing_integration_owners": {"1": str(user.id)},
                    "context": 1,
                }
            )
        handle = InteractionHandle(
            self,
            interaction_id=interaction_id,
            token=token,
            interaction_type=interaction_type,
            payload=payload,
            command_name=command_name,
            user_id=user.id,
            guild_id=None if guild is None else guild.id,
            channel_id=channel.id,
            component_message_id=component_message_id,
        )
        return payload, handle

    async def _dispatch_interaction(self, payload: Payload, handle: InteractionHandle) -> InteractionHandle:
        session = self._ready_session()
        if session is None:
            raise RuntimeError("the bot is not connected to the fake gateway (use wait_until_connected())")
        # Registered before sending: the bot may answer before the send below returns.
        self.interactions[handle.id] = handle
        self._interactions_by_token[handle.token] = handle
        handle.dispatched_at = time.monotonic()
        await self._dispatch(session, "INTERACTION_CREATE", payload)
        return handle

    async def _send_command(
        self,
        interaction_type: int,
        command: str,
        options: Mapping[str, Any],
        *,
        user: UserRef | None,
        guild: GuildRef | None,
        channel: ChannelRef | None,
        dm: bool,
        raw_options: list[Payload] | None,
        locale: str,
        enforce_client_rules: bool,
        focused: str | None,
    ) -> InteractionHandle:
        member_user = self._user(user) if user is not None else self._default_user()
        target_guild, target_channel = self._place(member_user, guild, channel, dm)
        path = command.split()
        if not path:
            raise ValueError("empty command name")
        definition = self.command(path[0], target_guild) if target_guild else self.command(path[0])
        if target_guild is None and definition.get("guild_id"):
            raise CommandUnavailableError(f"/{path[0]} is a guild command; it cannot be used in DMs")
        if enforce_client_rules:
            self._check_visibility(definition, member_user, target_guild, target_channel)
        payload, handle = self._interaction_envelope(
            interaction_type, member_user, target_guild, target_channel, locale, command_name=command
        )
        resolved: Payload = {}
        if raw_options is not None:
            data_options: list[Payload] = raw_options
        else:
            declared, wrap = self._descend(definition, path)
            leaf = self._build_options(
                declared,
                options,
                resolved,
                target_guild,
                target_channel,
                focused=focused,
                require_all=enforce_client_rules,
            )
            data_options = wrap(leaf)
        data: Payload = {"id": str(definition["id"]), "name": definition["name"], "type": 1}
        if data_options:
            data["options"] = data_options
        if resolved:
            data["resolved"] = resolved
        if definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        payload["data"] = data
        return await self._dispatch_interaction(payload, handle)

    def _check_visibility(
        self, definition: Payload, user: FakeUser, guild: FakeGuild | None, channel: FakeChannel
    ) -> None:
        name = definition["name"]
        contexts = definition.get("contexts")
        if guild is None:
            if (contexts is not None and 1 not in contexts) or definition.get("dm_permission") is False:
                raise CommandUnavailableError(f"/{name} is not available in DMs")
            return
        if contexts is not None and 0 not in contexts:
            raise CommandUnavailableError(f"/{name} is not available in servers")
        required = definition.get("default_member_permissions")
        if required is not None:
            needed = int(required)
            have = compute_permissions(guild, user.id, channel)
            # "0" means administrators only; otherwise every listed bit is needed.
            if (needed == 0 and have != ALL_PERMISSIONS) or (have & needed) != needed:
                raise CommandUnavailableError(
                    f"{user.username} lacks default_member_permissions={needed} for /{name} in {guild.name}"
                )

    @staticmethod
    def _descend(
        definition: Payload, path: Sequence[str]
    ) -> tuple[list[Payload], Callable[[list[Payload]], list[Payload]]]:
        """The declared leaf options for ``path`` and a function wrapping leaf values in subcommand layers."""
        declared: list[Payload] = list(definition.get("options") or [])
        layers: list[tuple[int, str]] = []
        for name in path[1:]:
            found = next((o for o in declared if o.get("name") == name and o.get("type") in (1, 2)), None)
            if found is None:
                raise LookupError(f"/{definition['name']} has no subcommand {name!r}")
            layers.append((int(found["type"]), name))
            declared = list(found.get("options") or [])
        if any(o.get("type") in (1, 2) for o in declared):
            names = [o["name"] for o in declared if o.get("type") in (1, 2)]
            raise ValueError(f"/{' '.join(path)} needs a subcommand: one of {names}")

        def wrap(leaf: list[Payload]) -> list[Payload]:
            result = leaf
            for option_type, name in reversed(layers):
                layer: Payload = {"type": option_type, "name": name}
                if result or option_type == 1:
                    layer["options"] = result
                result = [layer]
            return result

        return declared, wrap

    def _build_options(
        self,
        declared: Sequence[Payload],
        values: Mapping[str, Any],
        resolved: Payload,
        guild: FakeGuild | None,
        channel: FakeChannel,
        *,
        focused: str | None,
        require_all: bool,
    ) -> list[Payload]:
        by_name = {o["name"]: o for o in declared}
        if require_all:
            missing = [o["name"] for o in declared if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"missing required options {missing} (pass enforce_client_rules=False to send anyway)")
        result: list[Payload] = []
        for name, value in values.items():
            option = by_name.get(name)
            if option is None:
                raise LookupError(f"no option {name!r}; declared: {sorted(by_name)} (use raw_options for anything)")
            option_type = int(option["type"])
            entry: Payload = {"name": name, "type": option_type}
            entry["value"] = self._option_value(option_type, value, resolved, guild, channel)
            if name == focused:
                entry["focused"] = True
            result.append(entry)
        return result

    def _option_value(
        self, option_type: int, value: Any, resolved: Payload, guild: FakeGuild | None, channel: FakeChannel
    ) -> Any:
        if isinstance(value, RawValue):
            return value.value
        if option_type in (OptionType.USER, OptionType.MENTIONABLE) and isinstance(value, FakeUser | int | str):
            if option_type == OptionType.MENTIONABLE and isinstance(value, int) and guild is not None:
                with contextlib.suppress(KeyError):
                    return self._option_value(OptionType.ROLE, guild.role(value), resolved, guild, channel)
            user = self._user(value)
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            member = guild.member(user.id) if guild is not None else None
            if guild is not None and member is not None:
                member_data = self._member_payload(guild, member, with_user=False)
                member_data["permissions"] = str(compute_permissions(guild, user.id, channel))
                resolved.setdefault("members", {})[str(user.id)] = member_data
            return str(user.id)
        if option_type in (OptionType.ROLE, OptionType.MENTIONABLE) and isinstance(value, FakeRole | int | str):
            if guild is None:
                raise ValueError("roles only exist in guilds")
            role = value if isinstance(value, FakeRole) else guild.role(value)
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return str(role.id)
        if option_type == OptionType.CHANNEL and isinstance(value, FakeChannel | int | str):
            target = self._resolve_channel(value, guild)
            data = self._channel_payload(target)
            data["permissions"] = str(self._bot_permissions_in(target))
            resolved.setdefault("channels", {})[str(target.id)] = data
            return str(target.id)
        if option_type == OptionType.ATTACHMENT:
            if isinstance(value, FakeAttachment):
                resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
                return str(value.id)
            if isinstance(value, dict):
                resolved.setdefault("attachments", {})[str(value["id"])] = value
                return str(value["id"])
        return value

    def _ready_session(self) -> _GatewaySession | None:
        """The session to dispatch to: a live one, else one that may still RESUME (events are buffered)."""
        ready = [s for s in self._sessions.values() if s.ready]
        live = [s for s in ready if s.connection is not None and not s.connection.ws.closed]
        return (live or ready)[-1] if ready else None

    def _interaction_for_webhook(self, params: Mapping[str, str]) -> InteractionHandle:
        if _snowflake_str(params["application_id"]) != self.application_id:
            raise _HTTPError(*UNKNOWN_WEBHOOK)
        handle = self._interactions_by_token.get(params["token"])
        if handle is None or handle.expired or time.monotonic() - handle.dispatched_at > self.token_lifetime:
            raise _HTTPError(*INVALID_WEBHOOK_TOKEN)
        if handle.callback is None:
            # Follow-ups need an acknowledged interaction; Discord has no webhook message to attach them to.
            raise _HTTPError(*UNKNOWN_WEBHOOK)
        return handle

    async def _interaction_callback(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        arrived = time.monotonic()
        handle = self.interactions.get(_snowflake_str(params["interaction_id"]))
        if handle is None or not hmac.compare_digest(handle.token.encode(), params["token"].encode()):
            raise _HTTPError(*UNKNOWN_INTERACTION)
        body = incoming.body()
        callback_type = body.get("type")
        data = body.get("data")
        callback = InteractionCallback(
            type=int(callback_type) if isinstance(callback_type, int) else -1,
            data=data if isinstance(data, dict) else None,
            time=arrived,
            latency=arrived - handle.dispatched_at,
            files=tuple(incoming.files),
        )
        if handle.expired or (self.ack_deadline is not None and callback.latency > self.ack_deadline):
            handle.late_callback = callback
            if not handle._callback_future.done():
                handle._callback_future.set_exception(
                    LateAcknowledgementError(
                        f"interaction {handle.id} was acknowledged after {callback.latency:.2f}s "
                        f"(deadline {self.ack_deadline}s); Discord answered 10062 Unknown interaction"
                    )
                )
                # Raised again by wait_response(); don't let asyncio log it as never retrieved meanwhile.
                handle._callback_future.exception()
            raise _HTTPError(*UNKNOWN_INTERACTION)
        if handle.callback is not None:
            raise _HTTPError(*ALREADY_ACKNOWLEDGED)
        allowed = self._allowed_callbacks(handle.type)
        if callback.type not in allowed:
            raise _form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", f"Value must be one of {sorted(allowed)}.")
        message_body = callback.data or {}
        if callback.type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            self._check_message_limits(message_body, incoming.files, creating=True)
        elif callback.type == CallbackType.UPDATE_MESSAGE:
            self._check_message_limits(message_body, incoming.files, creating=False)

        handle.callback = callback
        if not handle._callback_future.done():
            handle._callback_future.set_result(callback)
        message = await self._apply_callback(handle, callback, incoming)

        if incoming.query.get("with_response", "").lower() not in ("1", "true"):
            return _no_content()
        interaction_info: Payload = {"id": str(handle.id), "type": handle.type}
        response: Payload = {"interaction": interaction_info}
        if message is not None:
            interaction_info.update(
                {
                    "response_message_id": str(message.id),
                    "response_message_loading": message.loading,
                    "response_message_ephemeral": message.ephemeral,
                }
            )
            response["resource"] = {"type": callback.type, "message": message.payload}
        else:
            response["resource"] = {"type": callback.type}
        return _json_response(response)

    @staticmethod
    def _allowed_callbacks(interaction_type: int) -> set[int]:
        if interaction_type == InteractionType.AUTOCOMPLETE:
            return {CallbackType.AUTOCOMPLETE_RESULT}
        if interaction_type == InteractionType.PING:
            return {CallbackType.PONG}
        allowed: set[int] = {
            CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.MODAL,
            CallbackType.LAUNCH_ACTIVITY,
        }
        if interaction_type in (InteractionType.MESSAGE_COMPONENT, InteractionType.MODAL_SUBMIT):
            allowed |= {CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE}
        if interaction_type == InteractionType.MODAL_SUBMIT:
            allowed.discard(CallbackType.MODAL)
        return allowed

    async def _apply_callback(
        self, handle: InteractionHandle, callback: InteractionCallback, incoming: _Incoming
    ) -> FakeMessage | None:
        channel = self._channel_by_id(handle.channel_id)
        body = callback.data or {}
        if callback.type in (
            CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
        ):
            requested = int(body.get("flags") or 0)
            if callback.type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
                # The "<bot> is thinking..." placeholder; only the ephemeral choice counts here.
                flags = MessageFlag.LOADING | (requested & MessageFlag.EPHEMERAL)
                content_body: Payload = {}
                files: list[RecordedPart] = []
            else:
                flags = requested
                content_body, files = body, list(incoming.files)
            ephemeral = bool(flags & MessageFlag.EPHEMERAL)
            attachments = self._make_attachments(content_body, files, existing=[], ephemeral=ephemeral)
            payload = self._message_payload(
                channel,
                self.world.bot,
                content_body,
                attachments,
                mtype=20,  # CHAT_INPUT_COMMAND
                flags=flags,
                webhook_id=self.application_id,
            )
            payload["interaction_metadata"] = self._interaction_metadata(handle)
            message = self._emit_new(
                payload,
                channel,
                MessageKind.INTERACTION_RESPONSE,
                author_id=self.world.bot.id,
                interaction_id=handle.id,
            )
            handle.original_message_id = message.id
            await self._echo(message, "MESSAGE_CREATE")
            return message
        if callback.type in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            # For components, @original is the message the component is on.
            handle.original_message_id = handle.component_message_id
            target = self.get_message(handle.component_message_id) if handle.component_message_id else None
            if callback.type == CallbackType.UPDATE_MESSAGE and target is not None:
                edited = self._edit(
                    target,
                    replace(incoming, json=body),
                    MessageKind.INTERACTION_UPDATE,
                    interaction_id=handle.id,
                )
                await self._echo(edited, "MESSAGE_UPDATE")
                return edited
            return target
        return None

    def _interaction_metadata(self, handle: InteractionHandle) -> Payload:
        return {
            "id": str(handle.id),
            "type": handle.type,
            "user": self.world.user(handle.user_id).payload(),
            "authorizing_integration_owners": handle.payload.get("authorizing_integration_owners", {}),
            "name": handle.command_name,
        }

    async def _webhook_execute(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        channel = self._channel_by_id(handle.channel_id)
        body = incoming.body()
        original = handle.original
        if original is not None and original.loading and not original.deleted:
            # Discord: after a deferred response, the first follow-up replaces the "thinking..." message
            # (and keeps the ephemerality chosen when deferring).
            message = self._edit(original, incoming, MessageKind.FOLLOWUP, interaction_id=handle.id, clear_loading=True)
            await self._echo(message, "MESSAGE_UPDATE")
        else:
            self._check_message_limits(body, incoming.files, creating=True)
            flags = int(body.get("flags") or 0)
            attachments = self._make_attachments(
                body, incoming.files, existing=[], ephemeral=bool(flags & MessageFlag.EPHEMERAL)
            )
            payload = self._message_payload(
                channel, self.world.bot, body, attachments, mtype=0, flags=flags, webhook_id=self.application_id
            )
            payload["interaction_metadata"] = self._interaction_metadata(handle)
            message = self._emit_new(
                payload, channel, MessageKind.FOLLOWUP, author_id=self.world.bot.id, interaction_id=handle.id
            )
            await self._echo(message, "MESSAGE_CREATE")
        if message.id not in handle.followup_ids:
            handle.followup_ids.append(message.id)
        if incoming.query.get("wait", "").lower() in ("1", "true"):
            return _json_response(message.payload)
        return _no_content()

    def _webhook_message(self, handle: InteractionHandle, message_id: str) -> FakeMessage:
        if message_id == "@original":
            target = handle.original
        else:
            target = self.get_message(_snowflake_str(message_id))
            if target is not None and target.id != handle.original_message_id and target.id not in handle.followup_ids:
                target = None
        if target is None or target.deleted:
            raise _HTTPError(*UNKNOWN_MESSAGE)
        return target

    async def _webhook_get(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        return _json_response(self._webhook_message(handle, params["message_id"]).payload)

    async def _webhook_edit(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        target = self._webhook_message(handle, params["message_id"])
        kind = MessageKind.ORIGINAL_EDIT if target.id == handle.original_message_id else MessageKind.FOLLOWUP_EDIT
        edited = self._edit(target, incoming, kind, interaction_id=handle.id, clear_loading=True)
        await self._echo(edited, "MESSAGE_UPDATE")
        return _json_response(edited.payload)

    async def _webhook_delete(self, incoming: _Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        self._mark_deleted(self._webhook_message(handle, params["message_id"]))
        return _no_content()

    # ------------------------------------------------------------------------------------------------------
    # Gateway
    # ------------------------------------------------------------------------------------------------------

    async def _gateway_entry(self, request: web.Request) -> web.StreamResponse:
        # timeout: how long close() waits for the client's close frame (a frozen bot must not hang stop()).
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        connection = _GatewayConnection(ws=ws, query=dict(request.query))
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

    async def _close(self, connection: _GatewayConnection, code: int, reason: str) -> None:
        connection.closed_by_fake = code
        await connection.ws.close(code=code, message=reason.encode())

    async def _send(self, connection: _GatewayConnection, frame: Payload) -> None:
        frame = {"op": frame["op"], "d": frame.get("d"), "s": frame.get("s"), "t": frame.get("t")}
        self.gateway_log.append(GatewayFrame("sent", frame["op"], frame["t"], frame["s"], frame["d"], time.monotonic()))
        async with connection.lock:
            if not connection.ws.closed:
                await connection.ws.send_str(json.dumps(frame))

    async def _dispatch(self, session: _GatewaySession, event: str, data: Payload) -> None:
        session.seq += 1
        frame: Payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        connection = session.connection
        if connection is None or connection.ws.closed:
            session.buffered.append(frame)  # replayed after a RESUME, like Discord
            return
        await self._send(connection, frame)

    async def _on_gateway_frame(self, connection: _GatewayConnection, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame.get("op")
        except (ValueError, AttributeError):
            await self._close(connection, 4002, "Error while decoding payload.")
            return
        data = frame.get("d")
        redacted = {**data, "token": "<redacted>"} if isinstance(data, dict) and "token" in data else data
        self.gateway_log.append(GatewayFrame("received", op, None, frame.get("s"), redacted, time.monotonic()))
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

    async def _identify(self, connection: _GatewayConnection, data: Payload) -> None:
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
        session = _GatewaySession(
            session_id=secrets.token_hex(16),
            intents=intents,
            shard=shard if isinstance(shard, list) else None,
            connection=connection,
        )
        connection.session = session
        self._sessions[session.session_id] = session
        ready: Payload = {
            "v": 10,
            "user": {**self.world.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self.world.guilds],
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
        for guild in self.world.guilds:
            await self._dispatch(session, "GUILD_CREATE", self._guild_payload(guild, full=True))
        session.ready = True
        self._notify_state()

    async def _resume(self, connection: _GatewayConnection, data: Payload) -> None:
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

    async def _request_members(self, connection: _GatewayConnection, data: Payload) -> None:
        session = connection.session
        if session is None:
            await self._close(connection, 4003, "Not authenticated.")
            return
        guild_ids = data.get("guild_id")
        for raw_id in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            try:
                guild = self.world.guild(_snowflake_str(raw_id))
            except (KeyError, _HTTPError):
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


@asynccontextmanager
async def run_fake_discord(**options: Any) -> AsyncIterator[FakeDiscord]:
    """Start a :class:`FakeDiscord` on a free loopback port; stop it (and its sockets) on exit.

    ``options`` are :class:`FakeDiscord`'s keyword arguments (``world=``, ``ack_deadline=``...).
    """
    fake = FakeDiscord(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
