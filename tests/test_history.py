"""/history: pages of ten, newest first, by keyset; who may see whose videos; short ids; the buttons' custom ids."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.history import Direction, HistoryPage, HistoryQuery, HistoryService, Scope, scope_for
from bot.messages import history_page_embed, short_id
from bot.models import ApiGeneration, Generation, GenerationOptions, Kind, State
from bot.moderation import ModerationService
from bot.quota import ServerLimits
from bot.storage import GenerationStore, HistorySlice, SqliteStore
from bot.storage.sqlite import history_query
from cogs.history import ExpiredHistoryButton, HistoryButton, history_custom_id, history_view, query_of
from tests.postgres import fresh_database
from tests.test_messages import assert_whole, assert_within_discord_limits

GUILD, OTHER_GUILD = 1, 2
ALICE, BOB, MODERATOR = 100, 200, 300
OPEN_CHANNEL, STAFF_CHANNEL = 11, 12
ALICE_HERE = Origin(guild_id=GUILD, channel_id=OPEN_CHANNEL, user_id=ALICE)
BOB_HERE = Origin(guild_id=GUILD, channel_id=OPEN_CHANNEL, user_id=BOB)
MODERATOR_HERE = Origin(guild_id=GUILD, channel_id=OPEN_CHANNEL, user_id=MODERATOR, is_moderator=True)


async def add(
    store: GenerationStore, user: int, *, guild: int = GUILD, channel: int = OPEN_CHANNEL, api_id: str | None = None
) -> Generation:
    count = len(await store.history_page(HistorySlice(guild_id=guild, limit=10_000)))
    row = await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=guild,
        channel_id=channel,
        requester_id=user,
        options=GenerationOptions(f"video {count} of {user} in {channel}"),
        parent_api_id=None,
        now=1_800_000_000.0 + count,
    )
    if api_id is None:
        return row
    await store.mark_submitted(row.id, ApiGeneration(id=api_id, state="pending"), 1_800_000_100.0)
    return await store.apply_api_update(
        row.id, ApiGeneration(id=api_id, state="completed", video_url=f"https://cdn.example/{api_id}.mp4"), 1.9e9
    )


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """Every test here runs on each backend."""
    return any_store


@pytest.fixture
def moderation(store: GenerationStore) -> ModerationService:
    return ModerationService(store, ServerLimits(), global_daily=0)


@pytest.fixture
def history(store: GenerationStore, moderation: ModerationService) -> HistoryService:
    return HistoryService(store, moderation.rules)


def ids(page: HistoryPage) -> list[int]:
    return [generation.id for generation in page.generations]


async def test_pages_of_ten_newest_first_that_keep_their_place(store: GenerationStore, history: HistoryService) -> None:
    alice = []
    for _ in range(25):
        alice.append((await add(store, ALICE)).id)
        await add(store, BOB)
        await add(store, ALICE, guild=OTHER_GUILD)
    newest_first = alice[::-1]
    first = await history.page(ALICE_HERE, HistoryQuery(), None)
    assert ids(first) == newest_first[:10] and (first.page, first.has_newer, first.has_older) == (1, False, True)
    second = await history.page(ALICE_HERE, first.older(), None)
    assert ids(second) == newest_first[10:20] and (second.page, second.has_newer, second.has_older) == (2, True, True)
    # Videos made meanwhile appear on the first page; the pages already reached do not shift.
    made_since = [(await add(store, ALICE)).id for _ in range(3)]
    third = await history.page(ALICE_HERE, second.older(), None)
    assert ids(third) == newest_first[20:] and (third.page, third.has_older) == (3, False)
    back = await history.page(ALICE_HERE, third.newer(), None)
    assert ids(back) == ids(second) and back.page == 2
    front = await history.page(ALICE_HERE, back.newer(), None)
    assert ids(front) == ids(first) and front.page == 1 and front.has_newer  # three newer ones wait above it
    newest = await history.page(ALICE_HERE, front.newer(), None)
    assert ids(newest) == made_since[::-1] and newest.page == 1 and not newest.has_newer and newest.has_older
    assert first.first_number == 1 and second.first_number == 11


async def test_a_page_past_the_end_leads_back_to_the_last_one(store: GenerationStore, history: HistoryService) -> None:
    made = [(await add(store, ALICE)).id for _ in range(3)]
    empty = await history.page(ALICE_HERE, HistoryQuery(direction=Direction.OLDER, cursor=made[0], page=2), None)
    assert empty.generations == [] and empty.has_newer and not empty.has_older
    embed = history_page_embed(empty)
    assert "No older videos" in (embed.description or "")
    last = await history.page(ALICE_HERE, empty.newer(), None)
    assert ids(last) == made[::-1] and last.page == 1 and not last.has_newer


async def test_a_moderator_sees_the_server_and_narrows_it_to_a_member(
    store: GenerationStore, history: HistoryService
) -> None:
    alice = await add(store, ALICE, channel=STAFF_CHANNEL)
    bob = await add(store, BOB)
    await add(store, BOB, guild=OTHER_GUILD)
    await store.set_members_share_videos(GUILD, False, 1.0)
    everyone = await history.page(MODERATOR_HERE, HistoryQuery(scope=Scope.SERVER), None)
    assert ids(everyone) == [bob.id, alice.id] and everyone.requester_id is None and not everyone.own
    only_alice = await history.page(MODERATOR_HERE, HistoryQuery(scope=Scope.SERVER, member_id=ALICE), None)
    assert ids(only_alice) == [alice.id] and only_alice.requester_id == ALICE
    assert "Requested by <@100>" in (history_page_embed(only_alice).description or "")


async def test_members_see_the_server_as_its_sharing_setting_says_and_only_channels_they_can_read(
    store: GenerationStore, history: HistoryService, moderation: ModerationService
) -> None:
    in_staff_room = await add(store, ALICE, channel=STAFF_CHANNEL)
    in_the_open = await add(store, ALICE)
    bobs = await add(store, BOB)
    server = HistoryQuery(scope=Scope.SERVER)
    seen = await history.page(BOB_HERE, server, frozenset({OPEN_CHANNEL}))
    assert ids(seen) == [bobs.id, in_the_open.id] and seen.channels_narrowed
    assert "channels you can't see" in (history_page_embed(seen).footer.text or "")
    alice_only = await history.page(BOB_HERE, replace(server, member_id=ALICE), frozenset({OPEN_CHANNEL}))
    assert ids(alice_only) == [in_the_open.id]

    await moderation.set_sharing(GUILD, False)
    with pytest.raises(UserFacingError, match="only your own"):
        await history.page(BOB_HERE, server, frozenset({OPEN_CHANNEL}))
    with pytest.raises(UserFacingError, match="only your own"):
        await history.page(BOB_HERE, replace(server, member_id=ALICE), frozenset({OPEN_CHANNEL}))
    # Their own videos, in the server's list or their own, stay theirs to see in every channel.
    own = await history.page(ALICE_HERE, replace(server, member_id=ALICE), frozenset())
    assert ids(own) == [in_the_open.id, in_staff_room.id] and own.own
    assert history_page_embed(own).title == "Your videos in this server"


async def test_another_members_private_videos_stay_out_of_the_servers_list(
    store: GenerationStore, history: HistoryService
) -> None:
    shared = await add(store, ALICE)
    private = await store.reserve(
        kind=Kind.GENERATE,
        guild_id=GUILD,
        channel_id=OPEN_CHANNEL,
        requester_id=ALICE,
        options=GenerationOptions("a private garden"),
        parent_api_id=None,
        now=1_800_000_500.0,
        model="legacy",
        counted_since=0.0,
        decide=None,
        private=True,
    )
    server = HistoryQuery(scope=Scope.SERVER)
    assert ids(await history.page(BOB_HERE, server, None)) == [shared.id]
    assert ids(await history.page(BOB_HERE, replace(server, member_id=ALICE), None)) == [shared.id]
    assert ids(await history.page(ALICE_HERE, server, None)) == [private.id, shared.id]
    assert ids(await history.page(ALICE_HERE, HistoryQuery(), None)) == [private.id, shared.id]
    assert ids(await history.page(MODERATOR_HERE, server, None)) == [private.id, shared.id]


async def test_mine_is_the_caller_s_own_and_naming_a_member_means_the_server(history: HistoryService) -> None:
    assert scope_for(None, None) is Scope.MINE and scope_for(None, BOB) is Scope.SERVER
    assert scope_for(Scope.MINE, None) is Scope.MINE
    with pytest.raises(UserFacingError, match="scope: server"):
        await history.page(ALICE_HERE, HistoryQuery(scope=Scope.MINE, member_id=BOB), None)
    nothing = await history.page(ALICE_HERE, HistoryQuery(), None)
    assert nothing.generations == [] and "No videos here yet" in (history_page_embed(nothing).description or "")
    assert history_view(nothing) is None  # nothing to turn


async def test_history_pages_are_read_through_an_index_without_sorting(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.sqlite3")
    await store.close()
    with sqlite3.connect(tmp_path / "bot.sqlite3") as raw:
        for page in HISTORY_SLICES:
            clauses, params = history_query(page)
            plan = " ".join(
                row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN SELECT * FROM generations {clauses}", params)
            )
            assert re.search(r"SEARCH generations USING INDEX generations_(member_)?history", plan), (page, plan)
            assert "TEMP B-TREE" not in plan, (page, plan)
        short = "SELECT * FROM generations WHERE guild_id = ? AND substr(api_id, 1, 8) = ? ORDER BY id DESC LIMIT 2"
        plan = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {short}", (1, "a4a8f1ff")))
        assert "USING INDEX generations_short_id (guild_id=? AND <expr>=?)" in plan, plan


HISTORY_SLICES = [
    HistorySlice(guild_id=GUILD, limit=11),
    HistorySlice(guild_id=GUILD, limit=11, before_id=5000),
    HistorySlice(guild_id=GUILD, limit=11, after_id=5000),
    HistorySlice(guild_id=GUILD, limit=11, requester_id=ALICE, before_id=5000),
    HistorySlice(guild_id=GUILD, limit=11, requester_id=ALICE, after_id=5000),
    HistorySlice(guild_id=GUILD, limit=11, channel_ids=frozenset({1, 2, 3}), before_id=5000),
    HistorySlice(guild_id=GUILD, limit=11, private_seen_by=BOB, before_id=5000),
]


async def test_postgres_reads_history_pages_and_short_ids_through_an_index_without_sorting() -> None:
    import asyncpg

    from bot.storage import postgres as postgres_storage

    async with fresh_database() as url:
        await (await postgres_storage.PostgresStore.open(url)).close()
        connection = await asyncpg.connect(url)
        try:
            # An empty table is read whole whatever its indexes: the planner is told to use them where it can.
            await connection.execute("SET enable_seqscan = off")
            statements = [postgres_storage.history_query(page) for page in HISTORY_SLICES]
            statements.append(("WHERE guild_id = $1 AND substr(api_id, 1, 8) = $2 ORDER BY id DESC LIMIT 2", [1, "ab"]))
            for clauses, params in statements:
                rows = await connection.fetch(f"EXPLAIN SELECT * FROM generations {clauses}", *params)
                plan = " ".join(row[0] for row in rows)
                assert re.search(
                    r"Index (Only )?Scan (Backward )?using generations_(member_history|history|short_id)", plan
                ) or ("Bitmap Index Scan on generations_short_id" in plan), plan
                assert "Seq Scan" not in plan, plan
        finally:
            await connection.close()


async def test_short_ids_name_a_video_of_this_server(store: GenerationStore, service: GenerationService) -> None:
    mine = await add(store, ALICE, api_id="a4a8f1ff-e59b-4969-abcb-98b3e16f003e")
    await add(store, ALICE, api_id="a4a8f1ff-0000-4969-abcb-98b3e16f003e", guild=OTHER_GUILD)
    assert short_id(mine) == "a4a8f1ff" and short_id(replace(mine, api_id=None)) == f"#{mine.id}"
    assert (await service.find(GUILD, "a4a8f1ff")).id == mine.id
    assert (await service.find(GUILD, " A4A8F1FF ")).id == mine.id
    assert (await service.find_job(GUILD, "a4a8f1ff")).id == mine.id
    with pytest.raises(UserFacingError, match="No generation"):
        await service.find(OTHER_GUILD + 1, "a4a8f1ff")
    await add(store, BOB, api_id="a4a8f1ff-1111-4969-abcb-98b3e16f003e")
    with pytest.raises(UserFacingError, match="More than one"):
        await service.find(GUILD, "a4a8f1ff")


@pytest.fixture
def service(store: GenerationStore) -> GenerationService:
    return GenerationService(store, None)  # type: ignore[arg-type]  # finding ids asks nothing of the API


LONGEST = HistoryQuery(
    scope=Scope.SERVER, member_id=2**64 - 1, direction=Direction.NEWER, cursor=2**63 - 1, page=999_999_999
)


@pytest.mark.parametrize("query", [HistoryQuery(), LONGEST, HistoryQuery(Scope.MINE, None, Direction.OLDER, 1, 2)])
def test_a_button_s_custom_id_carries_its_query_and_page(query: HistoryQuery) -> None:
    custom_id = history_custom_id(query)
    assert len(custom_id) <= 100
    match = re.fullmatch(HistoryButton.__discord_ui_compiled_template__, custom_id)
    assert match is not None and query_of(match) == query
    assert re.fullmatch(ExpiredHistoryButton.__discord_ui_compiled_template__, custom_id) is None


@pytest.mark.parametrize("custom_id", ["history:0:m:0:f:0:1", "history:2:s:1:o:5:3", "history:1:x:0:f:0:1"])
def test_a_list_of_another_version_is_answered_as_expired(custom_id: str) -> None:
    assert re.fullmatch(ExpiredHistoryButton.__discord_ui_compiled_template__, custom_id) is not None
    assert re.fullmatch(HistoryButton.__discord_ui_compiled_template__, custom_id) is None


async def test_previous_and_next_are_disabled_where_there_is_nothing(
    store: GenerationStore, history: HistoryService
) -> None:
    for _ in range(11):
        await add(store, ALICE)
    first = await history.page(ALICE_HERE, HistoryQuery(), None)
    view = history_view(first)
    assert view is not None
    previous, following = view.children
    assert isinstance(previous, HistoryButton) and isinstance(following, HistoryButton)
    assert (previous.item.label, previous.item.disabled) == ("Previous", True)
    assert (following.item.label, following.item.disabled) == ("Next", False)
    assert following.query == first.older()


def test_a_page_of_the_longest_entries_keeps_within_discord_s_limits() -> None:
    long_link = "https://cdn.example/video.mp4?signature=" + "s" * 600
    rows = [
        Generation(
            id=n,
            api_id=f"{n:08x}-e59b-4969-abcb-98b3e16f003e",
            parent_api_id=None,
            kind=Kind.GENERATE,
            guild_id=GUILD,
            channel_id=OPEN_CHANNEL,
            requester_id=10**18 + n,
            prompt="*~_" * 700,
            aspect_ratio="16:9",
            expand_prompt=True,
            state=State.COMPLETED,
            api_state="completed",
            video_url=long_link if n % 2 else "https://cdn.example/short.mp4",
            thumbnail_url=None,
            last_frame_url=None,
            failure_reason=None,
            status_message_id=None,
            created_at=1.8e9,
            updated_at=1.8e9,
            submitted_at=1.8e9,
            finished_at=1.8e9,
            announce_claimed_at=None,
            announced_at=None,
            announce_attempts=0,
            delivery=None,
        )
        for n in range(10)
    ]
    page = HistoryPage(HistoryQuery(scope=Scope.SERVER), rows, 1, False, True, BOB, False, True)
    embed = history_page_embed(page)
    assert_within_discord_limits(embed)
    description = embed.description or ""
    assert_whole(description, ("https://cdn.example/short.mp4)",))
    # Ten entries, each with its short id and requester; the too-long links are pointed to, not cut.
    assert all(f"`{n:08x}`" in description and f"<@{10**18 + n}>" in description for n in range(10))
    assert description.count("/status 0000000") == 5 and long_link not in description


async def test_id_suggestions_are_the_caller_s_own_first_and_finished_ones_where_only_those_do(
    store: GenerationStore, moderation: ModerationService
) -> None:
    service = GenerationService(store, None, moderation=moderation)  # type: ignore[arg-type]
    alice_done = await add(store, ALICE, api_id="aaaaaaaa-e59b-4969-abcb-98b3e16f003e")
    alice_running = await add(store, ALICE)
    await store.mark_submitted(
        alice_running.id, ApiGeneration(id="bbbbbbbb-0000-4969-abcb-98b3e16f003e", state="pending"), 1.9e9
    )
    bob_done = await add(store, BOB, api_id="cccccccc-e59b-4969-abcb-98b3e16f003e")
    await add(store, ALICE, api_id="dddddddd-e59b-4969-abcb-98b3e16f003e", guild=OTHER_GUILD)

    def api_ids(found: list[Generation]) -> list[str | None]:
        return [generation.api_id for generation in found]

    # Nothing typed: the caller's own, newest first; to build on, finished videos only.
    assert api_ids(await service.suggest(ALICE_HERE, "", finished_only=False)) == [
        "bbbbbbbb-0000-4969-abcb-98b3e16f003e",
        alice_done.api_id,
    ]
    assert api_ids(await service.suggest(ALICE_HERE, "", finished_only=True)) == [alice_done.api_id]
    # Typed: the server's others follow (never another server's), as far as the caller may use them.
    assert api_ids(await service.suggest(ALICE_HERE, "video", finished_only=True)) == [
        alice_done.api_id,
        bob_done.api_id,
    ]
    await moderation.set_sharing(GUILD, False)
    assert api_ids(await service.suggest(ALICE_HERE, "video", finished_only=True)) == [alice_done.api_id]
    assert api_ids(await service.suggest(ALICE_HERE, "cccc", finished_only=False)) == [bob_done.api_id]
    assert api_ids(await service.suggest(MODERATOR_HERE, "cccc", finished_only=True)) == [bob_done.api_id]


class PlainAnswers:
    """Just enough of an interaction to receive a button's private answers."""

    def __init__(self) -> None:
        self.id = 1
        self.response = self
        self.sent: list[tuple[str, bool]] = []

    def is_done(self) -> bool:
        return bool(self.sent)

    async def send_message(self, content: str, *, ephemeral: bool) -> None:
        self.sent.append((content, ephemeral))


async def test_a_press_on_a_list_of_another_version_is_told_the_list_expired() -> None:
    interaction = PlainAnswers()
    await ExpiredHistoryButton("history:0:m:0:f:0:1").callback(interaction)  # type: ignore[arg-type]
    [(text, ephemeral)] = interaction.sent
    assert ephemeral and "expired" in text and "/history" in text
