"""Fake Discord worlds beyond the default one."""

from __future__ import annotations

from .fake_discord import (
    BOT_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    World,
    default_world,
)

GUILD_3 = 1200000000000000003
GENERAL_3 = 1300000000000000031
BOT_ROLE_3 = 1400000000000000039


def three_servers() -> World:
    """The default world and a third server, "Third Server", with a #general that alice and bob are in."""
    world = default_world()
    owner = world.user("owner")
    third = FakeGuild(
        id=GUILD_3,
        name="Third Server",
        owner_id=owner.id,
        channels=[FakeChannel(GENERAL_3, "general", position=0)],
        roles=[
            FakeRole(GUILD_3, "@everyone", EVERYONE_PERMISSIONS, position=0),
            FakeRole(BOT_ROLE_3, world.bot.username, BOT_PERMISSIONS, position=1, managed=True, bot_id=world.bot.id),
        ],
        members=[
            FakeMember(owner.id),
            FakeMember(world.user("alice").id),
            FakeMember(world.user("bob").id),
            FakeMember(world.bot.id, [BOT_ROLE_3]),
        ],
    )
    world.guilds.append(third)
    return world


def many_servers(count: int) -> World:
    """The default world's cast in `count` servers of their own (each with a #general), whose ids are one shard apart:
    under n shards, server k gets its events on shard (k + s) % n for one s."""
    world = default_world()
    owner, alice, bob = world.user("owner"), world.user("alice"), world.user("bob")
    world.guilds = []
    for index in range(count):
        guild_id = SPREAD_GUILD_BASE + (index << 22)
        bot_role = SPREAD_ROLE_BASE + index
        world.guilds.append(
            FakeGuild(
                id=guild_id,
                name=f"Server {index + 1}",
                owner_id=owner.id,
                channels=[FakeChannel(SPREAD_CHANNEL_BASE + index, "general", position=0)],
                roles=[
                    FakeRole(guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0),
                    FakeRole(
                        bot_role, world.bot.username, BOT_PERMISSIONS, position=1, managed=True, bot_id=world.bot.id
                    ),
                ],
                members=[
                    FakeMember(owner.id),
                    FakeMember(alice.id),
                    FakeMember(bob.id),
                    FakeMember(world.bot.id, [bot_role]),
                ],
            )
        )
    return world


SPREAD_GUILD_BASE = 1210000000000000000
SPREAD_CHANNEL_BASE = 1310000000000000000
SPREAD_ROLE_BASE = 1410000000000000000


STUDIO_CHANNELS_FROM = 1300000000000000100


def studio_channels(count: int) -> World:
    """The default world with `count` more text channels in its first server ("studio-0", "studio-1", ...)."""
    world = default_world()
    guild = world.guilds[0]
    for n in range(count):
        guild.add_channel(FakeChannel(STUDIO_CHANNELS_FROM + n, f"studio-{n}", position=2 + n))
    return world
