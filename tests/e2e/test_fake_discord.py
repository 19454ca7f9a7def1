"""Self-test of the fake Discord: a real discord.py client (defined here, not the project's bot) against it."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .discord_schema import RequestValidator, default_spec_path, load_validator
from .fake_discord import (
    CommandUnavailableError,
    FakeDiscord,
    InteractionHandle,
    MessageKind,
    RateLimits,
    run_fake_discord,
)
from .worlds import many_servers

STEP = 5.0  # upper bound for any single step; every wait below is bounded


class AgainView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=30)

    @discord.ui.button(label="Again", custom_id="again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[AgainView]) -> None:
        await interaction.response.edit_message(content=f"again by {interaction.user.name}", view=None)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(label="Your feedback", custom_id="text")

    def __init__(self) -> None:
        super().__init__(custom_id="feedback")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks for {self.text.value!r}", ephemeral=True)


class MiniBot(discord.Client):
    """The smallest client that does what the project's bot does to reach the fake."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.members = True  # discord.py then caches every member sent in GUILD_CREATE
        # discord.py waits guild_ready_timeout (2 s) after the last GUILD_CREATE before READY.
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.release_later = asyncio.Event()
        self.later_outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.received: list[tuple[str, object]] = []
        self.seen_messages: asyncio.Queue[discord.Message] = asyncio.Queue()
        self._add_commands()

    async def on_message(self, message: discord.Message) -> None:
        await self.seen_messages.put(message)

    def _add_commands(self) -> None:
        tree = self.tree

        @tree.command(name="ping", description="Replies with pong")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send("pong")
            await interaction.followup.send("only you can see this", ephemeral=True)

        @tree.command(name="later", description="Defers, then follows up when the test says so")
        async def later(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await self.release_later.wait()
            try:
                await interaction.followup.send("too late?")
            except discord.HTTPException as exc:
                self.later_outcome.set_result(exc)
            else:
                self.later_outcome.set_result(None)

        @tree.command(name="purge", description="Moderators only")
        @app_commands.default_permissions(manage_guild=True)
        @app_commands.guild_only()
        async def purge(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("purged", ephemeral=True)

        @tree.command(name="feedback", description="Opens a form")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(FeedbackModal())

        video = app_commands.Group(name="video", description="Video commands")

        @video.command(name="generate", description="Generate a video")
        @app_commands.choices(
            aspect=[app_commands.Choice(name="16:9", value="16:9"), app_commands.Choice(name="9:16", value="9:16")]
        )
        async def generate(
            interaction: discord.Interaction,
            prompt: str,
            aspect: str,
            seconds: int,
            loop: bool,
            image: discord.Attachment | None = None,
        ) -> None:
            self.received.append(("generate", (prompt, aspect, seconds, loop, image and image.url)))
            await interaction.response.send_message(f"queued {prompt!r} {aspect}", view=AgainView())

        @generate.autocomplete("prompt")
        async def prompt_suggestions(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=f"{current} at dawn", value=f"{current} at dawn")]

        tree.add_command(video)

    async def setup_hook(self) -> None:
        # What the project's bot does after login: ask the (fake) API for the gateway URL.
        _, url, _ = await self.http.get_bot_gateway()
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        await self.tree.sync()


@contextmanager
def discord_pointed_at(fake: FakeDiscord) -> Iterator[None]:
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.api_base
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@asynccontextmanager
async def running_bot(fake: FakeDiscord) -> AsyncIterator[MiniBot]:
    with discord_pointed_at(fake):
        bot = MiniBot()
        connection: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(bot.login(fake.token), STEP)
            connection = asyncio.create_task(bot.connect(reconnect=False))
            await asyncio.wait_for(bot.wait_until_ready(), STEP)
            yield bot
        finally:
            await asyncio.wait_for(bot.close(), STEP)
            if connection is not None:
                await asyncio.wait_for(connection, STEP)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with run_fake_discord() as server:
        yield server
        assert server.internal_errors == []
        assert server.token not in repr(server.requests)


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[MiniBot]:
    async with running_bot(fake) as client:
        yield client


def bot_schema_errors(fake: FakeDiscord) -> list[tuple[str, str, str]]:
    if fake.validator is None:
        pytest.skip(f"Discord's OpenAPI description is missing: {default_spec_path()}")
    return fake.schema_errors


# ------------------------------------------------------------------------------------------------------------
# Login, gateway, cache
# ------------------------------------------------------------------------------------------------------------


async def test_login_ready_and_guild_create_fill_the_cache(fake: FakeDiscord, bot: MiniBot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    assert bot.application_id == fake.application_id
    me = fake.requests_to("/users/@me", "GET")[0]
    assert me.auth == "valid" and "Authorization" not in me.headers
    assert fake.requests_to("/oauth2/applications/@me") and fake.requests_to("/gateway/bot")

    assert {g.id for g in bot.guilds} == {fake.guild.id, fake.guild2.id}
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None and not guild.unavailable
    general = guild.get_channel(fake.general.id)
    assert isinstance(general, discord.TextChannel) and general.name == "general"
    alice = guild.get_member(fake.alice.id)
    assert alice is not None and alice.name == "alice"
    moderator = guild.get_member(fake.moderator.id)
    assert moderator is not None and moderator.guild_permissions.manage_guild
    other = bot.get_guild(fake.guild2.id)
    assert other is not None
    moderator_elsewhere = other.get_member(fake.moderator.id)
    assert moderator_elsewhere is not None and not moderator_elsewhere.guild_permissions.manage_guild
    assert guild.me.guild_permissions.send_messages and general.permissions_for(guild.me).attach_files

    frames = [(f.direction, f.op, f.t) for f in fake.gateway_log]
    assert ("sent", 10, None) in frames and ("received", 2, None) in frames
    assert ("sent", 0, "READY") in frames and ("sent", 0, "GUILD_CREATE") in frames
    # GUILD_CREATE carried every member, so discord.py considers the guild chunked; a query still asks.
    found = await asyncio.wait_for(guild.query_members("ali"), STEP)
    assert [m.id for m in found] == [fake.alice.id]
    assert ("sent", 0, "GUILD_MEMBERS_CHUNK") in [(f.direction, f.op, f.t) for f in fake.gateway_log]
    identify = next(f for f in fake.gateway_log if f.op == 2)
    assert identify.d["token"] == "<redacted>"


async def test_raw_http_contract(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        good = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{fake.api_base}/users/@me", headers=good) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
        async with session.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as response:
            assert response.status == 401
            assert await response.json() == {"message": "401: Unauthorized", "code": 0}
        async with session.get(f"{fake.api_base}/no/such/route", headers=good) as response:
            assert response.status == 404
            assert await response.json() == {"message": "404: Not Found", "code": 0}
        async with session.get(f"{fake.api_base}/gateway/bot", headers=good) as response:
            gateway = await response.json()
            assert gateway["url"] == f"ws://127.0.0.1:{fake.port}/gateway" and gateway["shards"] == 1
        fake.fail_next(1, "/users/@me", 503)
        async with session.get(f"{fake.api_base}/users/@me", headers=good) as response:
            assert response.status == 503
            assert await response.json() == {"message": "503: Service Unavailable", "code": 0}
    assert [r.auth for r in fake.requests_to("/users/@me")] == ["valid", "invalid", "valid"]
    unknown = fake.requests_to("/no/such/route")[0]
    assert unknown.status == 404 and unknown.route is None


async def test_a_wrong_token_cannot_log_in(fake: FakeDiscord) -> None:
    with discord_pointed_at(fake):
        client = discord.Client(intents=discord.Intents.none())
        try:
            with pytest.raises(discord.LoginFailure):
                await asyncio.wait_for(client.login("not-the-token"), STEP)
        finally:
            await client.close()


# ------------------------------------------------------------------------------------------------------------
# Application commands and interactions
# ------------------------------------------------------------------------------------------------------------


async def test_ping_is_synced_deferred_and_followed_up(fake: FakeDiscord, bot: MiniBot) -> None:
    sync = fake.requests_to(f"/applications/{fake.application_id}/commands", "PUT")
    assert len(sync) == 1 and fake.sync_count == 1
    assert {c["name"] for c in fake.synced_commands()} == {"ping", "later", "purge", "feedback", "video"}

    await fake.wait_until_connected(STEP)
    assert [c["name"] for c in await fake.wait_for_commands("ping", timeout=STEP)] == ["ping"]
    handle = await fake.send_interaction("ping", user=fake.alice)
    callback = await handle.wait_response(timeout=3.0)
    assert callback.type == 5 and not callback.ephemeral
    assert handle.ack_latency is not None and handle.ack_latency < 3.0

    secret = await handle.wait_followup(lambda m: m.ephemeral, timeout=STEP)
    assert secret.content == "only you can see this"
    original = handle.original
    # The first follow-up after a defer replaced the "thinking..." message.
    assert original is not None and original.content == "pong" and not original.loading
    assert [m.content for m in handle.followups] == ["pong", "only you can see this"]
    assert handle.followups[0].id == original.id and original.kind == MessageKind.FOLLOWUP
    assert all(m.channel_id == fake.general.id for m in handle.followups)
    assert bot_schema_errors(fake) == []


async def test_options_subcommands_autocomplete_and_buttons(fake: FakeDiscord, bot: MiniBot) -> None:
    image = fake.make_attachment("start.png", b"png bytes")
    handle = await fake.send_interaction(
        "video generate",
        # "4:3" is not among the declared choices: the fake sends it anyway, as a tampered client could.
        {"prompt": "jellyfish", "aspect": "4:3", "seconds": 5, "loop": True, "image": image},
        user=fake.bob,
        channel=fake.videos,
    )
    callback = await handle.wait_response()
    assert callback.type == 4 and callback.content == "queued 'jellyfish' 4:3"
    assert bot.received[-1] == ("generate", ("jellyfish", "4:3", 5, True, image.url))
    option_types = {o["name"]: o["type"] for o in handle.payload["data"]["options"][0]["options"]}
    assert option_types == {"prompt": 3, "aspect": 3, "seconds": 4, "loop": 5, "image": 11}
    async with aiohttp.ClientSession() as session, session.get(image.url) as response:
        assert await response.read() == b"png bytes"

    message = handle.original
    assert message is not None and message.channel_id == fake.videos.id and message.custom_ids == ["again"]
    click = await fake.send_component(message, "again", user=fake.alice)
    assert (await click.wait_response()).type == 7
    updated = await fake.wait_for_message(lambda m: m.kind == MessageKind.INTERACTION_UPDATE, STEP)
    assert updated.id == message.id and updated.content == "again by alice" and updated.components == []

    typing = await fake.send_autocomplete("video generate", {"prompt": "cats"}, focused="prompt")
    suggestions = await typing.wait_response()
    assert suggestions.type == 8 and suggestions.choices == [{"name": "cats at dawn", "value": "cats at dawn"}]

    raw = await fake.send_interaction(
        "video generate",
        raw_options=[
            {
                "type": 1,
                "name": "generate",
                "options": [
                    {"type": 3, "name": "prompt", "value": "x"},
                    {"type": 3, "name": "aspect", "value": "16:9"},
                    {"type": 4, "name": "seconds", "value": 1},
                    {"type": 5, "name": "loop", "value": False},
                ],
            }
        ],
    )
    assert (await raw.wait_response()).content == "queued 'x' 16:9"
    with pytest.raises(ValueError, match="missing required"):
        await fake.send_interaction("video generate", {"prompt": "x"})
    assert bot_schema_errors(fake) == []


async def test_modal_round_trip(fake: FakeDiscord, bot: MiniBot) -> None:
    opened = await fake.send_interaction("feedback", user=fake.bob)
    form = await opened.wait_response()
    assert form.type == 9 and form.data is not None and form.data["custom_id"] == "feedback"
    submitted = await fake.send_modal_submit("feedback", {"text": "lovely"}, user=fake.bob)
    answer = await submitted.wait_response()
    assert answer.type == 4 and answer.ephemeral and answer.content == "thanks for 'lovely'"
    assert bot_schema_errors(fake) == []


async def test_a_form_goes_back_only_as_discords_client_lets_a_member_fill_it_in(
    fake: FakeDiscord, bot: MiniBot
) -> None:
    opened = await fake.send_interaction("feedback", user=fake.bob)
    await opened.wait_response()
    with pytest.raises(ValueError, match="missing required input 'text'"):
        await fake.submit_form(opened, {})
    with pytest.raises(ValueError, match="no inputs"):
        await fake.submit_form(opened, {"text": "fine", "rating": "5"})
    with pytest.raises(ValueError, match="takes 0 to 4000 characters"):
        await fake.submit_form(opened, {"text": "x" * 4001})
    submitted = await fake.submit_form(opened, {"text": "lovely"})
    answer = await submitted.wait_response()
    assert answer.content == "thanks for 'lovely'" and submitted.user_id == fake.bob.id
    no_form = await fake.send_interaction("ping", user=fake.bob)
    await no_form.wait_response()
    with pytest.raises(CommandUnavailableError, match="no form was opened"):
        await fake.submit_form(no_form, {"text": "x"})
    assert bot_schema_errors(fake) == []


async def test_dm_interaction(fake: FakeDiscord, bot: MiniBot) -> None:
    handle = await fake.send_interaction("ping", user=fake.bob, dm=True)
    assert "member" not in handle.payload and handle.payload["user"]["id"] == str(fake.bob.id)
    assert handle.payload["context"] == 1 and "guild_id" not in handle.payload
    await handle.wait_response()
    await handle.wait_followup(lambda m: m.ephemeral, timeout=STEP)
    dm = fake.dm_channel_of(fake.bob)
    assert dm is not None and [m.content for m in fake.dm_messages_to(fake.bob)] == [
        "pong",
        "only you can see this",
    ]


async def test_default_member_permissions_are_enforced_per_guild(fake: FakeDiscord, bot: MiniBot) -> None:
    allowed = await fake.send_interaction("purge", user=fake.moderator, guild=fake.guild)
    assert (await allowed.wait_response()).ephemeral
    with pytest.raises(CommandUnavailableError):
        await fake.send_interaction("purge", user=fake.alice)
    with pytest.raises(CommandUnavailableError):  # moderator has Manage Server in guild 1 only
        await fake.send_interaction("purge", user=fake.moderator, guild=fake.guild2)
    with pytest.raises(CommandUnavailableError):  # guild_only: not offered in DMs
        await fake.send_interaction("purge", user=fake.moderator, dm=True)
    # A tampered client: the bot sees the request anyway and must check permissions itself.
    forced = await fake.send_interaction("purge", user=fake.alice, enforce_client_rules=False)
    assert not discord.Permissions(int(forced.payload["member"]["permissions"])).manage_guild
    await forced.wait_response()


async def test_an_expired_interaction_token_makes_follow_ups_fail(fake: FakeDiscord, bot: MiniBot) -> None:
    handle: InteractionHandle = await fake.send_interaction("later", user=fake.alice)
    await handle.wait_response()
    fake.expire_interaction(handle)
    bot.release_later.set()
    outcome = await asyncio.wait_for(bot.later_outcome, STEP)
    assert isinstance(outcome, discord.HTTPException)
    assert outcome.status == 401 and outcome.code == 50027


async def test_a_late_acknowledgement_is_refused(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.ack_deadline = 0.0  # every callback is now "late"
    handle = await fake.send_interaction("ping")
    with pytest.raises(AssertionError, match="acknowledged after"):
        await handle.wait_response()
    refused = await fake.wait_for_request(lambda r: r.path.endswith("/callback"), STEP)
    assert refused.status == 404 and handle.late_callback is not None


# ------------------------------------------------------------------------------------------------------------
# Channel messages and faults
# ------------------------------------------------------------------------------------------------------------


def text_channel(bot: MiniBot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_channel_send_with_embed_is_stored_and_valid(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = text_channel(bot, fake.general.id)
    embed = discord.Embed(title="Your video", description="Rendering...", colour=0x5865F2)
    embed.add_field(name="Prompt", value="jellyfish")
    sent = await channel.send("hello", embed=embed)
    stored = fake.messages_in(fake.general)[-1]
    assert stored.id == sent.id and stored.kind == MessageKind.CHANNEL
    assert stored.content == "hello" and stored.embeds[0]["title"] == "Your video"
    assert "jellyfish" in stored.text
    assert (await fake.wait_for_message(lambda m: m.id == sent.id, STEP)).content == "hello"

    reply = await sent.reply("a reply", file=discord.File(__file__, filename="clip.mp4"))
    stored_reply = fake.get_message(reply.id)
    assert stored_reply is not None and stored_reply.payload["message_reference"]["message_id"] == str(sent.id)
    assert fake.attachment_bytes(stored_reply.attachments[0]["id"]).startswith(b'"""Self-test')
    assert reply.attachments[0].filename == "clip.mp4"

    edited = await sent.edit(content="hello again")
    assert edited.content == "hello again" and fake.messages_in(fake.general)[0].edited
    assert bot_schema_errors(fake) == []


async def test_a_message_pings_whom_its_allowed_mentions_let_through_and_an_edit_pings_nobody(
    fake: FakeDiscord, bot: MiniBot
) -> None:
    channel = text_channel(bot, fake.general.id)
    both = f"{fake.alice.mention} and {fake.bob.mention}"
    everyone = await channel.send(both)
    nobody = await channel.send(both, allowed_mentions=discord.AllowedMentions.none())
    only_alice = await channel.send(
        both, allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=[fake.alice])
    )
    reply = await only_alice.reply("thanks", allowed_mentions=discord.AllowedMentions(users=False, replied_user=True))
    stored_versions = {message.id: fake.get_message(message.id) for message in (everyone, nobody, only_alice, reply)}
    pinged = {key: stored.pinged_user_ids for key, stored in stored_versions.items() if stored is not None}
    assert pinged[everyone.id] == (fake.alice.id, fake.bob.id) and pinged[nobody.id] == ()
    assert pinged[only_alice.id] == (fake.alice.id,)
    assert pinged[reply.id] == ()  # the replied-to author is the bot itself, never notified
    await nobody.edit(content=f"{both}!", allowed_mentions=discord.AllowedMentions.all())
    stored = fake.get_message(nobody.id)
    assert stored is not None and stored.edited and stored.pinged_user_ids == ()
    assert bot_schema_errors(fake) == []


async def test_member_messages_and_gateway_resume(fake: FakeDiscord, bot: MiniBot) -> None:
    await fake.send_member_message("hello bot", channel="general", user=fake.alice)
    seen = await asyncio.wait_for(bot.seen_messages.get(), STEP)
    # No MESSAGE_CONTENT intent: Discord blanks the content of messages that do not mention the bot.
    assert seen.author.id == fake.alice.id and seen.content == ""
    await fake.send_member_message(f"{fake.bot_user.mention} hello", channel=fake.general, user=fake.alice)
    mentioned = await asyncio.wait_for(bot.seen_messages.get(), STEP)
    assert mentioned.content.endswith("hello")

    await fake.disconnect_gateway(code=4000)
    async with asyncio.timeout(STEP):  # discord.py reconnects to resume_gateway_url and RESUMEs at once
        while not any(f.t == "RESUMED" for f in fake.gateway_log):
            await asyncio.sleep(0.02)
    assert fake.gateway_closes == [("fake", 4000)] and any(f.op == 6 for f in fake.gateway_log)
    handle = await fake.send_interaction("ping")
    assert (await handle.wait_response()).type == 5


async def test_discord_limits_are_enforced(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = text_channel(bot, fake.general.id)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.status == 400 and too_long.value.code == 50035
    assert "content" in too_long.value.text


async def test_uploads_over_the_limit_are_refused(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.upload_limit = 16
    channel = text_channel(bot, fake.videos.id)
    with pytest.raises(discord.HTTPException) as too_large:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 17), filename="video.mp4"))
    assert too_large.value.status == 413 and too_large.value.code == 40005


async def test_a_429_with_via_is_waited_out(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = text_channel(bot, fake.general.id)
    fake.rate_limit_next(1, f"/channels/{fake.general.id}/messages", retry_after=0.2)
    started = time.monotonic()
    sent = await asyncio.wait_for(channel.send("after a rate limit"), STEP)
    assert time.monotonic() - started >= 0.2
    statuses = [r.status for r in fake.requests_to(f"/channels/{fake.general.id}/messages", "POST")]
    assert statuses == [429, 200]
    assert fake.get_message(sent.id) is not None


async def test_channel_faults_surface_as_discord_errors(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = text_channel(bot, fake.videos.id)
    fake.set_channel_fault(fake.videos, 403)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("nope")
    assert forbidden.value.code == 50013
    fake.set_channel_fault(fake.videos, 404)
    with pytest.raises(discord.NotFound) as missing:
        await channel.send("nope")
    assert missing.value.code == 10003
    fake.set_channel_fault(fake.videos, None)
    await channel.send("fine again")
    assert [m.content for m in fake.messages_in(fake.videos)] == ["fine again"]


async def test_closed_dms_surface_as_forbidden_50007(fake: FakeDiscord, bot: MiniBot) -> None:
    alice = await bot.fetch_user(fake.alice.id)
    await alice.send("your video is ready")
    assert [m.content for m in fake.dm_messages_to(fake.alice)] == ["your video is ready"]
    assert fake.dm_messages_to(fake.alice)[0].kind == MessageKind.DM

    fake.close_dms(fake.bob)
    bob = await bot.fetch_user(fake.bob.id)
    with pytest.raises(discord.Forbidden) as closed:
        await bob.send("hello?")
    assert closed.value.code == 50007
    assert fake.dm_messages_to(fake.bob) == []


# ------------------------------------------------------------------------------------------------------------
# Schema validator
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> RequestValidator:
    loaded = load_validator()
    if loaded is None:
        pytest.skip(f"Discord's OpenAPI description is missing: {default_spec_path()}")
    return loaded


def test_validator_accepts_valid_bodies(validator: RequestValidator) -> None:
    assert validator.validate("POST", "/channels/1/messages", {"content": "hi", "embeds": [{"title": "t"}]}) == []
    assert validator.validate("POST", "/api/v10/interactions/1/tok/callback?with_response=1", {"type": 5}) == []
    assert validator.validate("PATCH", "/webhooks/1/tok/messages/@original", {"content": "done"}) == []
    assert validator.validate("GET", "/users/@me", None) == []
    assert validator.validate("POST", "/users/@me/channels", {"recipient_id": 5}) == []  # int snowflakes pass
    assert validator.match_path("/webhooks/1/t/messages/@original") == (
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
    )


def test_validator_reports_invalid_bodies(validator: RequestValidator) -> None:
    (wrong_type,) = validator.validate("POST", "/channels/1/messages", {"content": 5})
    assert "$.content" in wrong_type and "not of type" in wrong_type
    (unknown,) = validator.validate("POST", "/channels/1/messages", {"content": "x", "ephemral": True})
    assert "ephemral" in unknown
    (callback,) = validator.validate("POST", "/interactions/1/tok/callback", {"type": 4, "data": {"content": 5}})
    assert "$.data.content" in callback
    (bad_type,) = validator.validate("POST", "/interactions/1/tok/callback", {"type": 99})
    assert "99" in bad_type
    assert validator.validate("POST", "/no/such/thing", {}) != []
    (multipart,) = validator.validate_multipart("POST", "/channels/1/messages", {"payload_json": '{"tts": "no"}'})
    assert "$.tts" in multipart


def test_validator_handles_openapi_30_nullable() -> None:
    spec = {
        "openapi": "3.0.3",
        "paths": {
            "/things/{thing_id}": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}},
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "Thing": {"type": "object", "properties": {"name": {"type": "string", "nullable": True}}},
            }
        },
    }
    validator = RequestValidator(spec)
    assert validator.validate("POST", "/things/1", {"name": None}) == []
    assert validator.validate("POST", "/things/1", {"name": 3}) != []
    assert validator.validate("POST", "/things/1", {"other": 1}) != []


# ------------------------------------------------------------------------------------------------------------
# Clean shutdown
# ------------------------------------------------------------------------------------------------------------


async def test_the_client_session_is_closed_cleanly(fake: FakeDiscord) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with running_bot(fake) as client:
            session = client.http._HTTPClient__session  # type: ignore[attr-defined]
            assert not session.closed
        assert session.closed and client.is_closed()
        del client, session
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    await fake.wait_until_disconnected(STEP)
    # discord.py asks for 1000 but its reader task closes first with 4000 (see the report).
    assert not fake.connected and [who for who, _ in fake.gateway_closes] == ["client"]


# ------------------------------------------------------------------------------------------------------------
# Shards
# ------------------------------------------------------------------------------------------------------------


class RawShard:
    """A gateway connection that identifies on one shard and keeps every frame it gets."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def next_dispatch(self, event: str) -> dict[str, Any]:
        async with asyncio.timeout(STEP):
            while True:
                message = await self.ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"the gateway closed: {message.type} {self.ws.close_code}")
                frame = json.loads(message.data)
                self.frames.append(frame)
                if frame.get("t") == event:
                    return dict(frame["d"])


@asynccontextmanager
async def raw_shard(fake: FakeDiscord, shard: list[int]) -> AsyncIterator[RawShard]:
    async with aiohttp.ClientSession() as session, session.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive_json(timeout=STEP)
        assert hello["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}, "shard": shard}})
        yield RawShard(ws)


async def test_shards_get_the_events_of_their_own_guilds_only() -> None:
    async with run_fake_discord(world=many_servers(4), recommended_shards=2, validate_schema=False) as fake:
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bot {fake.token}"}
            async with session.get(f"{fake.api_base}/gateway/bot", headers=headers) as response:
                assert (await response.json())["shards"] == 2
            command = {"name": "ping", "description": "Replies with pong", "type": 1}
            url = f"{fake.api_base}/applications/{fake.application_id}/commands"
            async with session.put(url, headers=headers, json=[command]) as response:
                assert response.status == 200
        async with raw_shard(fake, [0, 2]) as zero, raw_shard(fake, [1, 2]) as one:
            ready = {0: await zero.next_dispatch("READY"), 1: await one.next_dispatch("READY")}
            await fake.wait_until_shards_connected([0, 1], STEP)
            by_shard = {n: {g.id for g in fake.world.guilds if fake.shard_of(g) == n} for n in (0, 1)}
            assert by_shard[0] and by_shard[1]  # the four servers are spread over both shards
            for n in (0, 1):
                assert ready[n]["shard"] == [n, 2]
                assert {int(g["id"]) for g in ready[n]["guilds"]} == by_shard[n]
            sent_guilds = {
                n: {int(f.d["id"]) for f in fake.gateway_log if f.t == "GUILD_CREATE" and f.shard == n} for n in (0, 1)
            }
            assert sent_guilds == by_shard

            on_one = next(g for g in fake.world.guilds if g.id in by_shard[1])
            handle = await fake.send_interaction("ping", user=fake.alice, guild=on_one)
            assert handle.shard == 1
            assert int((await one.next_dispatch("INTERACTION_CREATE"))["guild_id"]) == on_one.id
            dm = await fake.send_interaction("ping", user=fake.alice, dm=True)
            assert dm.shard == 0  # Discord sends DMs' events on shard 0
            assert (await zero.next_dispatch("INTERACTION_CREATE"))["id"] == str(dm.id)
            assert [f["t"] for f in zero.frames if f.get("t") == "INTERACTION_CREATE"] == ["INTERACTION_CREATE"]
            assert [f["t"] for f in one.frames if f.get("t") == "INTERACTION_CREATE"] == ["INTERACTION_CREATE"]
        assert fake.internal_errors == []


@pytest.mark.parametrize("shard", [[2, 2], [0, 0], [-1, 2], [0]])
async def test_an_invalid_shard_is_refused_with_4010(shard: list[int]) -> None:
    async with run_fake_discord(recommended_shards=2, validate_schema=False) as fake, raw_shard(fake, shard) as raw:
        closing = await raw.ws.receive(timeout=STEP)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4010


# Rate limits and token lifetime, as configured
# ------------------------------------------------------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_rate_limits_refuse_what_a_bucket_cannot_take_and_say_when_to_come_back() -> None:
    clock = ManualClock()
    limits = RateLimits(clock=clock)
    async with run_fake_discord(rate_limits=limits) as fake, aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bot {fake.token}"}
        general, videos = fake.general.id, fake.videos.id

        async def edit(channel_id: int, message_id: str) -> aiohttp.ClientResponse:
            url = f"{fake.api_base}/channels/{channel_id}/messages/{message_id}"
            async with session.patch(url, json={"content": "edited"}, headers=auth) as response:
                await response.read()
                return response

        made = {}
        for channel_id in (general, videos):
            url = f"{fake.api_base}/channels/{channel_id}/messages"
            async with session.post(url, json={"content": "to edit"}, headers=auth) as response:
                made[channel_id] = (await response.json())["id"]
        answers = [await edit(general, made[general]) for _ in range(6)]
        assert [a.status for a in answers] == [200] * 5 + [429]
        assert [a.headers["X-RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
        refused = answers[5]
        assert refused.headers["Via"] and float(refused.headers["X-RateLimit-Reset-After"]) == pytest.approx(5.0)
        assert (await edit(videos, made[videos])).status == 200  # another channel is another bucket
        clock.now += 5.0
        assert (await edit(general, made[general])).status == 200  # the window is over
    assert limits.refused("PATCH /channels/{channel_id}/messages/{message_id}") == 1
    assert (
        limits.busiest_window("PATCH /channels/{channel_id}/messages/{message_id}", f"channel_id={general}", 5.0) == 6
    )  # the refused one was counted too: what the bot asked, not what it got


async def test_an_interaction_token_is_refused_after_the_configured_lifetime() -> None:
    async with run_fake_discord(token_lifetime=0.3) as fake, running_bot(fake) as bot:
        handle = await fake.send_interaction("later", user=fake.alice)
        await handle.wait_response()
        await asyncio.sleep(0.4)  # past the lifetime (a slower machine only waits longer)
        bot.release_later.set()
        outcome = await asyncio.wait_for(bot.later_outcome, STEP)
    assert isinstance(outcome, discord.HTTPException)
    assert outcome.status == 401 and outcome.code == 50027
