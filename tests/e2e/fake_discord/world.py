"""The model of the world: users, guilds, channels, roles, members and Discord's permission algorithm."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Literal

from .constants import (
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    DEFAULT_APPLICATION_FLAGS,
    EVERYONE_PERMISSIONS,
    MODERATOR_PERMISSIONS,
    ChannelType,
    Payload,
    Perm,
)


def iso_now(moment: dt.datetime | None = None) -> str:
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
