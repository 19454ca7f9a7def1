"""Bad input against the real bot process: each mistake answered within 3 s, privately, with its reason, and
nothing changed. One bot process serves the whole table (module-scoped), which keeps it quick."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .fake_discord import CommandUnavailableError, DefaultIds, FakeAttachment, FakeDiscord, FakeUser
from .harness import E2E, assert_private, running_e2e

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNKNOWN_ID = "a4a8f1ff-e59b-4969-abcb-98b3e16f003e"


@dataclass
class InputWorld:
    """The bot with a few generations of alice's: finished, failed, running, and one in the other server."""

    e2e: E2E
    ids: dict[str, str] = field(default_factory=dict)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InputWorld]:
    tmp_path: Path = tmp_path_factory.mktemp("input")
    async with running_e2e(tmp_path) as e2e:
        await e2e.start_bot()
        fake = e2e.fake
        ids: dict[str, str] = {}
        finished = await e2e.generate("A jellyfish glides past a reef", channel=fake.general)
        failed = await e2e.generate("A storm that never forms #fail", channel=fake.general)
        ids["finished"], ids["failed"] = finished.generation_id, failed.generation_id
        for generation_id in ids.values():
            await e2e.wait_announcement(generation_id)
        # From here on nothing finishes, so that each member's /status list stays as it is.
        e2e.sim.config.complete_after = 3600.0
        running = await e2e.generate("A glacier creeps down the valley", channel=fake.general)
        elsewhere = await e2e.generate("A secret otter council at midnight", channel=fake.general2)
        ids["running"], ids["elsewhere"] = running.generation_id, elsewhere.generation_id
        await e2e.wait_until(
            lambda: e2e.db_query("SELECT COUNT(*) FROM generations WHERE api_state = 'processing'") == [(2,)],
            "the running generations to reach their last running state",
        )
        yield InputWorld(e2e, ids)


def image(fake: FakeDiscord, content_type: str, size: int | None = None) -> FakeAttachment:
    attachment = fake.make_attachment("frame.bin", b"\x89PNG\r\n\x1a\n some bytes", content_type=content_type)
    return attachment if size is None else dataclasses.replace(attachment, size=size)


@dataclass(frozen=True)
class Case:
    command: str
    options: Callable[[InputWorld], dict[str, Any]]
    phrases: tuple[str, ...]
    dm: bool = False
    user: str = "alice"


def generate(prompt: str, **extra: Any) -> Callable[[InputWorld], dict[str, Any]]:
    return lambda _world: {"prompt": prompt, **extra}


def with_ids(**options: Any) -> Callable[[InputWorld], dict[str, Any]]:
    """Options where a value "{name}" stands for the id of the world's generation of that name."""

    def build(world: InputWorld) -> dict[str, Any]:
        return {key: value.format(**world.ids) if isinstance(value, str) else value for key, value in options.items()}

    return build


def with_image(
    content_type: str, size: int | None = None, *, option: str = "image", **options: Any
) -> Callable[[InputWorld], dict[str, Any]]:
    """Options with an uploaded file of that type (and size) as the `option` attachment."""

    def build(world: InputWorld) -> dict[str, Any]:
        built = with_ids(**options)(world)
        built[option] = image(world.e2e.fake, content_type, size)
        return built

    return build


ADMIN_ROLE = DefaultIds.ADMIN_ROLE_1
CASES: list[Any] = [
    # Prompts: empty, short, long.
    pytest.param(Case("generate", generate(""), ("prompt is empty",)), id="empty-prompt"),
    pytest.param(Case("generate", generate("   \n\t  "), ("prompt is empty",)), id="whitespace-prompt"),
    pytest.param(Case("generate", generate("ab"), ("too short", "at least 3")), id="too-short"),
    pytest.param(Case("generate", generate("x" * 2049), ("too long", "2049 characters", "2048")), id="2049-chars"),
    pytest.param(Case("generate", generate("y" * 5000), ("too long", "5000 characters")), id="5000-chars"),
    pytest.param(Case("generate", generate("word " * 500), ("too long", "limit is 2048")), id="long-after-folding"),
    # Mentions and markup.
    pytest.param(Case("generate", generate("@everyone look at this"), ("@everyone or @here",)), id="everyone"),
    pytest.param(Case("generate", generate("@here comes a jellyfish"), ("@everyone or @here",)), id="here"),
    pytest.param(Case("generate", generate(f"<@&{ADMIN_ROLE}> dances"), ("role mentions",)), id="role-mention"),
    pytest.param(Case("generate", generate(f"<@{DefaultIds.BOB}> dances"), ("user mentions",)), id="user-mention"),
    pytest.param(Case("generate", generate(f"<@!{DefaultIds.BOB}> sings"), ("user mentions",)), id="nick-mention"),
    pytest.param(
        Case("generate", generate(f"<#{DefaultIds.GENERAL_1}> glows"), ("channel mentions",)), id="channel-mention"
    ),
    pytest.param(Case("generate", generate("```py\nprint(1)\n```"), ("code blocks",)), id="code-block"),
    pytest.param(Case("generate", generate("a `jellyfish` swims"), ("backticks",)), id="backticks"),
    pytest.param(
        Case("generate", generate("[free nitro](https://example.com) here"), ("masked links",)), id="masked-link"
    ),
    pytest.param(Case("generate", generate("||secret|| jellyfish"), ("spoiler",)), id="spoiler"),
    pytest.param(Case("generate", generate("<:blob:123456789012345678> dancing"), ("emoji",)), id="custom-emoji"),
    pytest.param(Case("generate", generate("<t:1700000000:R> sunrise"), ("timestamps",)), id="timestamp"),
    # Invisible, direction and control characters.
    pytest.param(Case("generate", generate("jelly\u200bfish swims"), ("invisible",)), id="zero-width-space"),
    pytest.param(Case("generate", generate("\ufeffjellyfish swims"), ("invisible",)), id="byte-order-mark"),
    pytest.param(Case("generate", generate("\u202ehsifyllej a"), ("right-to-left",)), id="rtl-override"),
    pytest.param(Case("generate", generate("\u2067jellyfish\u2069 swims"), ("text-direction",)), id="rtl-isolate"),
    pytest.param(Case("generate", generate("jelly\x07fish swims"), ("control characters",)), id="bell"),
    pytest.param(Case("generate", generate("jelly\x00fish swims"), ("control characters",)), id="nul"),
    pytest.param(Case("generate", generate("\x1b[31mred jellyfish"), ("control characters",)), id="escape"),
    pytest.param(
        Case("generate", generate("jelly\x9bfish swims"), ("control characters",), user="bob"),
        id="c1-control",
    ),
    pytest.param(
        Case("generate", generate("\u061cjellyfish swims"), ("text-direction",), user="bob"),
        id="arabic-letter-mark",
    ),
    pytest.param(
        Case("generate", generate("jellyfish swims\U000e0069\U000e0067\U000e006e"), ("invisible",), user="bob"),
        id="tag-characters",
    ),
    pytest.param(
        Case("extend", with_ids(generation_id="{finished}", prompt="@everyone watch"), ("@everyone or @here",)),
        id="extend-mention",
    ),
    # Ids: SQL-looking, malformed, unknown, other server's.
    pytest.param(
        Case("status", with_ids(generation_id="1; DROP TABLE generations; --"), ("is not a generation id",)),
        id="sql-id",
    ),
    pytest.param(Case("status", with_ids(generation_id="' OR '1'='1"), ("is not a generation id",)), id="sql-or"),
    pytest.param(
        Case("status", with_ids(generation_id="{finished}' OR 1=1 --"), ("is not a generation id",)),
        id="sql-suffix",
    ),
    pytest.param(Case("status", with_ids(generation_id="not-an-id"), ("is not a generation id",)), id="malformed"),
    pytest.param(
        Case("status", with_ids(generation_id=UNKNOWN_ID), ("no generation", "found in this server")), id="unknown"
    ),
    pytest.param(
        Case("status", with_ids(generation_id="{elsewhere}"), ("no generation", "found in this server")),
        id="other-server",
    ),
    pytest.param(
        Case("extend", with_ids(generation_id=UNKNOWN_ID, prompt="More of it"), ("no generation",)),
        id="extend-unknown",
    ),
    pytest.param(
        Case("extend", with_ids(generation_id="12345", prompt="More of it"), ("is not a generation id",)),
        id="extend-malformed",
    ),
    pytest.param(
        Case("extend", with_ids(generation_id="{elsewhere}", prompt="More otters"), ("no generation",)),
        id="extend-other-server",
    ),
    pytest.param(
        Case("extend", with_ids(generation_id="{running}", prompt="It melts"), ("not finished yet",)),
        id="extend-unfinished",
    ),
    pytest.param(
        Case("extend", with_ids(generation_id="{failed}", prompt="It forms"), ("failed", "only finished videos")),
        id="extend-failed",
    ),
    # Raw option values outside the choices, as a tampered client sends them.
    pytest.param(
        Case("generate", generate("A wide jellyfish", aspect_ratio="2:1"), ("aspect ratio must be one of",)),
        id="aspect-2:1",
    ),
    pytest.param(
        Case(
            "extend",
            with_ids(generation_id="{finished}", prompt="Wider", aspect_ratio="2:1"),
            ("aspect ratio must be one of",),
        ),
        id="extend-aspect-2:1",
    ),
    pytest.param(
        Case("generate", generate("A sharp jellyfish", resolution="1080p"), ("Dream Machine has one resolution",)),
        id="resolution-on-legacy",
    ),
    pytest.param(
        Case("generate", generate("A long jellyfish", duration=7), ("Dream Machine has one length",)), id="duration-7"
    ),
    pytest.param(Case("generate", generate("A looping jellyfish", loop=True), ("loop",)), id="loop-on-legacy"),
    # Commands in a DM: Discord offers none there; a client with an old copy of the commands is still refused.
    pytest.param(Case("generate", generate("A jellyfish in private"), ("direct messages",), dm=True), id="dm"),
    pytest.param(Case("status", with_ids(generation_id="{finished}"), ("direct messages",), dm=True), id="dm-status"),
    # Images.
    pytest.param(
        Case("generate", with_image("text/plain", prompt="Notes come alive"), ("PNG, JPEG or WebP",)),
        id="image-not-an-image",
    ),
    pytest.param(
        Case("generate", with_image("image/png", 11 * 1024 * 1024, prompt="A huge frame"), ("at most 10 MiB",)),
        id="image-too-big",
    ),
    pytest.param(
        Case("generate", with_image("image/gif", option="end_image", prompt="It ends"), ("`end_image` must be",)),
        id="end-image-gif",
    ),
    pytest.param(
        Case("generate", with_image("image/png", prompt="Two starts", last_frame_of="{finished}"), ("either",)),
        id="image-and-last-frame",
    ),
    pytest.param(
        Case("generate", with_ids(prompt="From the end", last_frame_of=UNKNOWN_ID), ("no generation",)),
        id="last-frame-unknown",
    ),
    pytest.param(
        Case("generate", with_ids(prompt="From the end", last_frame_of="{running}"), ("not a finished video",)),
        id="last-frame-unfinished",
    ),
]


def user_of(fake: FakeDiscord, name: str) -> FakeUser:
    return fake.world.user(name)


async def status_list(e2e: E2E, user: FakeUser) -> str:
    return (await e2e.ask("status", user=user, channel=e2e.fake.general)).text


@pytest.mark.parametrize("case", CASES)
async def test_bad_input_is_refused_privately_and_changes_nothing(world: InputWorld, case: Case) -> None:
    e2e = world.e2e
    user = user_of(e2e.fake, case.user)
    creates_before = e2e.creates()
    listed_before = await status_list(e2e, user)

    stale_client = {"enforce_client_rules": False} if case.dm else {}
    handle = await e2e.command(case.command, case.options(world), user=user, dm=case.dm, **stale_client)
    answer = await e2e.private_answer(handle)
    assert handle.ack_latency is not None and handle.ack_latency < 3
    assert_private(answer, *case.phrases)
    assert "went wrong" not in answer.text

    assert e2e.creates() == creates_before
    assert await status_list(e2e, user) == listed_before
    e2e.assert_schema_clean()


async def test_no_command_is_offered_in_direct_messages(world: InputWorld) -> None:
    e2e = world.e2e
    for name, options in (("generate", {"prompt": "A jellyfish in private"}), ("history", {}), ("help", {})):
        with pytest.raises(CommandUnavailableError, match="not available in DMs"):
            await e2e.command(name, options, dm=True)


async def test_the_input_run_leaked_no_secret(world: InputWorld) -> None:
    world.e2e.assert_no_secrets()
    assert world.e2e.bot.running and world.e2e.fake.internal_errors == []
