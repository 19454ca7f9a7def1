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


STUDIO_CHANNELS_FROM = 1300000000000000100


def studio_channels(count: int) -> World:
    """The default world with `count` more text channels in its first server ("studio-0", "studio-1", ...)."""
    world = default_world()
    guild = world.guilds[0]
    for n in range(count):
        guild.add_channel(FakeChannel(STUDIO_CHANNELS_FROM + n, f"studio-{n}", position=2 + n))
    return world
