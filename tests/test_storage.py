from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.models import ApiGeneration, Delivery, GenerationOptions, Kind, State
from bot.quota import ServerLimits
from bot.storage import MIGRATIONS, GenerationStore, RuleEntry, SqliteStore, TrackedGeneration, UsageCounts
from bot.storage import sqlite as storage
from bot.storage.shared import new_process_id
from bot.storage.sqlite_writer import URGENT_PER_BATCH, SqliteWriter

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """The tests of this module run on each backend, but for those of SQLite's own machinery."""
    return any_store


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "bot.sqlite3")
    yield opened
    await opened.close()


async def _insert(store: GenerationStore, *, guild: int = 1, user: int = 10, now: float = 100.0, prompt: str = "p"):
    return await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=guild,
        channel_id=5,
        requester_id=user,
        options=GenerationOptions(prompt, "1:1", False),
        parent_api_id=None,
        now=now,
    )


async def test_a_new_file_is_created_in_wal_mode_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "bot.sqlite3"
    store = await SqliteStore.open(path)
    try:
        assert await store.journal_mode() == "wal"
    finally:
        await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        indexes = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"generations_by_member", "generations_running", "generations_unannounced"} <= indexes


async def test_rows_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = await SqliteStore.open(path)
    row = await _insert(store, prompt="kept")
    await store.mark_submitted(row.id, ApiGeneration(id="api-1", state="pending"), 101.0)
    await store.close()
    reopened = await SqliteStore.open(path)
    try:
        kept = await reopened.get_by_api_id("api-1")
        assert kept is not None and kept.prompt == "kept" and kept.state is State.RUNNING
        assert kept.aspect_ratio == "1:1" and kept.expand_prompt is False
    finally:
        await reopened.close()


async def test_a_generation_finishes_once(store: GenerationStore) -> None:
    row = await _insert(store)
    await store.mark_submitted(row.id, ApiGeneration(id="api-1", state="pending"), 101.0)
    done = await store.apply_api_update(
        row.id, ApiGeneration(id="api-1", state="completed", video_url="https://v.mp4"), 150.0
    )
    assert done.state is State.COMPLETED and done.finished_at == 150.0 and done.video_url == "https://v.mp4"
    again = await store.apply_api_update(row.id, ApiGeneration(id="api-1", state="failed"), 200.0)
    assert again.state is State.COMPLETED and again.finished_at == 150.0
    assert [g.id for g in await store.unannounced()] == [row.id]
    await store.mark_announced(row.id, Delivery.CHANNEL, 151.0)
    await store.mark_announced(row.id, Delivery.DIRECT_MESSAGE, 152.0)
    final = await store.get(row.id)
    assert final is not None and final.delivery is Delivery.CHANNEL and final.announced_at == 151.0
    assert await store.unannounced() == []


async def test_interrupted_submissions_are_taken_over_and_can_be_handed_to_reconciliation(
    store: GenerationStore,
) -> None:
    stuck = await _insert(store)
    sent = await _insert(store)
    await store.mark_submitted(sent.id, ApiGeneration(id="api-2", state="pending"), 101.0)
    store.process_id = new_process_id()  # the process that sent them stopped; another takes its creates over
    assert [g.id for g in await store.take_over_submissions(200.0, 15.0)] == [stuck.id]
    checking = await store.mark_checking(
        stuck.id, "looking", 300.0, next_check_at=330.0, check_until=3900.0, requester_told=False
    )
    assert checking.state is State.CHECKING and checking.notice_sent_at is None
    store.process_id = new_process_id()  # and that one stopped too: a row being looked for is not taken again
    assert await store.take_over_submissions(400.0, 15.0) == []
    assert await store.unannounced() == []  # nothing to announce until it is found or given up
    adopted = await store.adopt(stuck.id, ApiGeneration(id="api-1", state="pending"), 400.0)
    assert adopted.state is State.RUNNING and adopted.api_id == "api-1"
    assert [g.id for g in await store.running()] == [stuck.id, sent.id]
    assert await store.tracked_api_ids(["api-1", "api-2", "api-3"]) == {"api-1", "api-2"}


async def test_refused_submissions_are_final_and_already_told(store: GenerationStore) -> None:
    row = await _insert(store)
    refused = await store.mark_rejected(row.id, "out of credits", 102.0)
    assert refused.state is State.REJECTED and refused.announced_at is not None
    assert await store.running() == [] and await store.unannounced() == []


async def test_history_is_per_member_and_server_newest_first(store: GenerationStore) -> None:
    for n in range(12):
        await _insert(store, now=100.0 + n, prompt=f"mine {n}")
    await _insert(store, user=99, now=500.0, prompt="someone else")
    await _insert(store, guild=2, now=600.0, prompt="other server")
    history = await store.recent_for_member(1, 10, 10)
    assert [g.prompt for g in history] == [f"mine {n}" for n in range(11, 1, -1)]


async def test_search_treats_typed_text_literally(store: GenerationStore) -> None:
    for n, prompt in enumerate(["100% cat", "dog_run", "plain"]):
        row = await _insert(store, prompt=prompt)
        await store.mark_submitted(row.id, ApiGeneration(id=f"id-{n}", state="pending"), 101.0)
    assert [g.prompt for g in await store.search_references(1, "%")] == ["100% cat"]
    assert [g.prompt for g in await store.search_references(1, "_")] == ["dog_run"]
    assert await store.search_references(2, "") == []


async def test_search_ignores_the_case_of_letters_as_the_readme_says_for_each_backend(store: GenerationStore) -> None:
    for n, prompt in enumerate(["A Fox at dawn", "Émile's café"]):
        row = await _insert(store, prompt=prompt)
        await store.mark_submitted(row.id, ApiGeneration(id=f"id-{n}", state="pending"), 101.0)
    assert [g.prompt for g in await store.search_references(1, "a fOX")] == ["A Fox at dawn"]
    accented = [g.prompt for g in await store.search_references(1, "émile's CAFÉ")]
    # PostgreSQL's ILIKE knows the case of every letter; SQLite's LIKE that of ASCII letters only.
    assert accented == ([] if isinstance(store, SqliteStore) else ["Émile's café"])
    assert "case of every letter on PostgreSQL, but only that of ASCII letters on SQLite" in README


async def test_meta_values_are_replaced(store: GenerationStore) -> None:
    assert await store.get_meta("k") is None
    await store.set_meta("k", "1")
    await store.set_meta("k", "2")
    assert await store.get_meta("k") == "2"


async def test_a_cancelled_reservation_leaves_no_open_transaction(store: GenerationStore) -> None:
    import asyncio

    task = asyncio.create_task(_insert(store, prompt="cancelled"))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Later writes still work and are committed.
    later = await _insert(store, prompt="after")
    await store.set_meta("k", "v")
    assert (await store.get(later.id)) is not None and await store.get_meta("k") == "v"


async def test_the_tracker_reads_only_running_rows_through_the_partial_index(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    sent = await _insert(store, now=100.0)
    await store.mark_submitted(sent.id, ApiGeneration(id="api-1", state="pending"), 101.0)
    await _insert(store, now=102.0)  # still submitting: not looked up
    done = await _insert(store, now=103.0)
    await store.mark_submitted(done.id, ApiGeneration(id="api-2", state="pending"), 104.0)
    await store.apply_api_update(done.id, ApiGeneration(id="api-2", state="completed"), 105.0)
    await store.set_status_message(sent.id, 777)
    assert await store.tracked() == [TrackedGeneration(sent.id, "api-1", "pending", 101.0, 5, 777)]
    async with store._background_reads.execute(
        f"EXPLAIN QUERY PLAN SELECT id FROM generations"
        f" WHERE {storage._IN_FLIGHT} AND state = 'running' AND api_id IS NOT NULL ORDER BY id"
    ) as cursor:
        plan = " ".join(str(row[3]) for row in await cursor.fetchall())
    assert "generations_running" in plan


async def test_a_batch_of_look_ups_is_written_once_and_reports_what_it_finished(store: GenerationStore) -> None:
    rows = [await _insert(store, now=100.0 + n) for n in range(3)]
    for n, row in enumerate(rows):
        await store.mark_submitted(row.id, ApiGeneration(id=f"api-{n}", state="pending"), 110.0)
    finished = await store.record_lookups(
        [(rows[0].id, ApiGeneration(id="api-0", state="processing")), (rows[1].id, ApiGeneration("api-1", "failed"))],
        [rows[2].id],
        "too slow",
        200.0,
    )
    assert finished == [rows[1].id, rows[2].id]
    states = {g.id: (g.state, g.api_state) for g in [await store.get(row.id) for row in rows] if g}
    assert states == {
        rows[0].id: (State.RUNNING, "processing"),
        rows[1].id: (State.FAILED, "failed"),
        rows[2].id: (State.TIMED_OUT, "pending"),
    }
    assert await store.unannounced_ids() == [rows[1].id, rows[2].id]
    # Rows already final are not finished twice.
    again = await store.record_lookups([(rows[1].id, ApiGeneration("api-1", "completed"))], [rows[2].id], "x", 300.0)
    assert again == []


async def test_a_reservation_counts_by_seeking_indexes_not_by_reading_every_running_row(
    sqlite_store: SqliteStore,
) -> None:
    counts = UsageCounts(server_running=True, everyone_running=True)
    for query in (storage._queue_query(1, 10, 100.0, counts), storage._in_flight_query(7, 5, 5)):
        async with sqlite_store._background_reads.execute("EXPLAIN QUERY PLAN " + query[0], query[1]) as cursor:
            plan = " ".join(str(row[3]) for row in await cursor.fetchall())
        assert "SCAN generations" not in plan
        assert "generations_in_flight_by_guild" in plan
    unused = storage._queue_query(1, 10, 100.0, UsageCounts(server_running=False, everyone_running=False))[0]
    assert storage._IN_FLIGHT not in unused  # no cap, no count of the jobs in flight


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    opened = SqliteWriter(tmp_path / "w.sqlite3", ("PRAGMA journal_mode = WAL",))
    await opened.open()
    await opened.run(lambda c: c.execute("CREATE TABLE log (name TEXT)"))
    yield opened
    await opened.close()


class HeldWriter:
    """Keeps the writing thread busy until released, so that writes queue up behind it."""

    def __init__(self, writer: SqliteWriter) -> None:
        self.release = threading.Event()
        self.first = asyncio.create_task(writer.run(lambda c: self.release.wait(5)))

    async def let_go(self) -> None:
        self.release.set()
        await self.first


def logging_work(name: str):  # type: ignore[no-untyped-def]
    return lambda c: c.execute("INSERT INTO log (name) VALUES (?)", (name,)).rowcount


def logged(writer_path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(writer_path)) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM log ORDER BY rowid")]


async def test_commands_writes_go_before_waiting_background_writes(writer: SqliteWriter, tmp_path: Path) -> None:
    held = HeldWriter(writer)
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(writer.run(logging_work(f"tracker {n}"), background=True)) for n in range(3)]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(writer.run(logging_work("command"))))
    await asyncio.sleep(0)
    await held.let_go()
    await asyncio.gather(*waiting)
    assert logged(tmp_path / "w.sqlite3") == ["command", "tracker 0", "tracker 1", "tracker 2"]


async def test_a_stream_of_command_writes_does_not_starve_the_background(writer: SqliteWriter, tmp_path: Path) -> None:
    held = HeldWriter(writer)
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(writer.run(logging_work("tracker"), background=True))]
    await asyncio.sleep(0)
    waiting += [asyncio.create_task(writer.run(logging_work("command"))) for _ in range(URGENT_PER_BATCH * 2)]
    await asyncio.sleep(0)
    await held.let_go()
    await asyncio.gather(*waiting)
    assert logged(tmp_path / "w.sqlite3").index("tracker") == URGENT_PER_BATCH


async def test_a_failing_write_fails_alone_and_a_cancelled_caller_s_write_still_lands(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    held = HeldWriter(writer)
    await asyncio.sleep(0.05)
    broken = asyncio.create_task(writer.run(lambda c: c.execute("INSERT INTO nowhere VALUES (1)")))
    abandoned = asyncio.create_task(writer.run(logging_work("abandoned")))
    fine = asyncio.create_task(writer.run(logging_work("fine")))
    await asyncio.sleep(0)
    abandoned.cancel()
    await held.let_go()
    with pytest.raises(sqlite3.OperationalError):
        await broken
    assert await fine == 1
    with contextlib.suppress(asyncio.CancelledError):
        await abandoned
    assert logged(tmp_path / "w.sqlite3") == ["abandoned", "fine"]


async def test_a_write_that_fails_half_way_is_undone_alone_while_its_batch_commits(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    def half_done(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO log (name) VALUES ('half')")
        raise ValueError("refused after writing")

    held = HeldWriter(writer)
    await asyncio.sleep(0.05)
    queued = [
        asyncio.create_task(writer.run(work)) for work in (logging_work("before"), half_done, logging_work("after"))
    ]
    await asyncio.sleep(0)
    await held.let_go()
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    assert outcomes[0] == 1 and isinstance(outcomes[1], ValueError) and outcomes[2] == 1
    assert logged(tmp_path / "w.sqlite3") == ["before", "after"]


class _UndoFails:
    """The writer's connection, on a disk that refuses to undo one write while its transaction stays open."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, *params: object) -> sqlite3.Cursor:
        if sql.startswith("ROLLBACK TO"):
            raise sqlite3.OperationalError("disk I/O error")
        return self._connection.execute(sql, *params)

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction


async def test_a_failed_write_that_cannot_be_undone_alone_fails_its_whole_batch(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    def half_done(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO log (name) VALUES ('half')")
        raise ValueError("refused after writing")

    held = HeldWriter(writer)
    await asyncio.sleep(0.05)
    queued = [
        asyncio.create_task(writer.run(work)) for work in (logging_work("before"), half_done, logging_work("after"))
    ]
    await asyncio.sleep(0)
    real = writer._connection
    writer._connection = _UndoFails(real)  # type: ignore[arg-type,assignment]
    await held.let_go()
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    writer._connection = real
    # Its half must not be committed with the others: none of the batch is, and each caller hears it.
    assert isinstance(outcomes[0], sqlite3.OperationalError) and isinstance(outcomes[2], sqlite3.OperationalError)
    assert isinstance(outcomes[1], ValueError)
    assert logged(tmp_path / "w.sqlite3") == []
    assert await writer.run(logging_work("next")) == 1
    assert logged(tmp_path / "w.sqlite3") == ["next"]


async def test_a_write_is_seen_by_the_reads_after_it_whatever_else_is_reading(store: GenerationStore) -> None:
    rows = [await _insert(store, now=100.0 + n) for n in range(20)]

    async def keep_reading() -> None:
        for _ in range(40):
            await store.recent_for_member(1, 10)

    readers = [asyncio.create_task(keep_reading()) for _ in range(4)]
    for n, row in enumerate(rows):
        submitted = await store.mark_submitted(row.id, ApiGeneration(id=f"api-{n}", state="pending"), 200.0)
        assert submitted.state is State.RUNNING and submitted.api_id == f"api-{n}"
    await asyncio.gather(*readers)


async def test_a_database_of_the_previous_schema_is_migrated_with_its_rows_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        for number, script in enumerate(storage.MIGRATIONS[:3], start=1):
            old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        old.execute(
            "INSERT INTO generations (api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
            " expand_prompt, state, api_state, created_at, updated_at, submitted_at)"
            " VALUES ('old-1', 'generate', 1, 11, 100, 'an old video', '16:9', 1, 'running', 'pending', 5, 5, 5)"
        )
        old.execute("INSERT INTO guild_rule_entries (guild_id, kind, value) VALUES (1, 'channel', '11')")
    opened = await SqliteStore.open(path)
    try:
        [row] = await opened.running()
        assert (row.api_id, row.model, row.credits_used, row.checking_since) == ("old-1", "legacy", None, None)
        rules = await opened.guild_rules(1, ServerLimits())
        assert rules.allowed_channels == {11} and rules.allowed_models == frozenset()
        assert await opened.add_rule_entry(1, RuleEntry.MODEL, "luma/ray-2")  # the new kind of entry is allowed
    finally:
        await opened.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone()[0] == len(storage.MIGRATIONS)


async def test_private_requests_and_the_private_mode_setting_survive_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "before-private.sqlite3"
    before = next(number for number, script in enumerate(MIGRATIONS) if "ADD COLUMN private " in script)
    with sqlite3.connect(path) as old:
        for number, script in enumerate(MIGRATIONS[:before], start=1):
            old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        old.execute(
            "INSERT INTO generations (api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
            " expand_prompt, state, api_state, created_at, updated_at, submitted_at)"
            " VALUES ('old-1', 'generate', 1, 11, 100, 'an old video', '16:9', 1, 'running', 'pending', 5, 5, 5)"
        )
        old.execute("INSERT INTO guild_limits (guild_id, members_share_videos, updated_at) VALUES (1, 0, 5)")
    opened = await SqliteStore.open(path)
    try:
        [row] = await opened.running()
        assert row.private is False  # what was asked before stays public
        rules = await opened.guild_rules(1, ServerLimits())
        assert rules.private_mode is True and rules.members_share_videos is False
        await opened.set_private_mode(1, False, 10.0)
        assert (await opened.guild_rules(1, ServerLimits())).private_mode is False
        assert (await opened.guild_rules(1, ServerLimits())).members_share_videos is False
        private = await opened.reserve(
            kind=Kind.GENERATE,
            guild_id=1,
            channel_id=11,
            requester_id=100,
            options=GenerationOptions("a private fox"),
            parent_api_id=None,
            now=20.0,
            model="legacy",
            counted_since=0.0,
            decide=None,
            private=True,
        )
        assert private.private is True and (await opened.get(private.id)) == private
    finally:
        await opened.close()


async def test_on_sqlite_creates_in_flight_of_an_earlier_run_are_taken_over_once_and_never_this_run_s_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite3"
    earlier = await SqliteStore.open(path)
    left = await _insert(earlier, prompt="cut off by a crash")
    await earlier.close()
    store = await SqliteStore.open(path)
    try:
        own = await _insert(store, prompt="this run's, on its way")
        [taken] = await store.take_over_submissions(200.0, 15.0)
        assert taken.id == left.id and taken.state is State.SUBMITTING
        assert await store.take_over_submissions(300.0, 15.0) == []  # now this run's: taken once
        assert [await store.get(row.id) for row in (left, own)] == [taken, own]  # both left to finish, unchanged
    finally:
        await store.close()


async def test_on_sqlite_the_one_process_holds_every_lease(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    row = await _insert(store)
    await store.mark_submitted(row.id, ApiGeneration(id="api-1", state="pending"), 101.0)
    await store.beat(102.0)
    assert await store.lease_lookups(103.0, 10.0) == await store.tracked()
    assert await store.lease_lookups(104.0, 10.0) == await store.tracked()  # no lease shuts it out on SQLite
    assert await store.lease_announcement(row.id, 105.0, 15.0) is None  # not finished
    await store.apply_api_update(row.id, ApiGeneration(id="api-1", state="completed", video_url="https://v"), 106.0)
    leased = await store.lease_announcement(row.id, 107.0, 15.0)
    assert leased is not None and leased.id == row.id
    assert await store.hold_lease("reconcile", 108.0, 15.0)


async def test_a_notice_is_claimed_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    first, second = await SqliteStore.open(path), await SqliteStore.open(path)
    try:
        assert await first.claim_notice("low-balance", 1000.0, 3600.0)
        assert not await second.claim_notice("low-balance", 1001.0, 3600.0)
        assert not await first.claim_notice("low-balance", 4599.0, 3600.0)
        assert await second.claim_notice("other", 4599.0, 3600.0)  # each notice on its own
        assert await second.claim_notice("low-balance", 4600.0, 3600.0)
        assert not await first.claim_notice("low-balance", 4601.0, 3600.0)
    finally:
        await first.close()
        await second.close()


async def test_several_openers_of_an_old_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    # The bot and an operator's tool (python -m bot.adopt) started together on a file of an older version.
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("PRAGMA journal_mode = WAL")  # as every file the bot made is
        for number, script in enumerate(storage.MIGRATIONS[:3], start=1):
            old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        old.execute(
            "INSERT INTO generations (api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
            " expand_prompt, state, api_state, created_at, updated_at, submitted_at)"
            " VALUES ('old-1', 'generate', 1, 11, 100, 'an old video', '16:9', 1, 'running', 'pending', 5, 5, 5)"
        )
    opened = await asyncio.gather(*(SqliteStore.open(path) for _ in range(4)), return_exceptions=True)
    try:
        assert [type(each) for each in opened] == [SqliteStore] * 4, [str(each) for each in opened]
        for store in opened:
            assert [row.api_id for row in await store.running()] == ["old-1"]  # type: ignore[union-attr]
    finally:
        for store in opened:
            if isinstance(store, SqliteStore):
                await store.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone()[0] == len(storage.MIGRATIONS)


async def test_endings_not_yet_on_their_status_message_are_found_until_marked_shown(store: GenerationStore) -> None:
    rows = [await _insert(store, now=100.0 + n) for n in range(4)]
    for n, row in enumerate(rows):
        await store.mark_submitted(row.id, ApiGeneration(id=f"api-{n}", state="pending"), 110.0)
        if n != 3:  # the last one's command never got its status message out
            await store.set_status_message(row.id, 900 + n)
    await store.apply_api_update(rows[1].id, ApiGeneration(id="api-1", state="completed"), 120.0)
    await store.record_lookups([(rows[0].id, ApiGeneration("api-0", "failed"))], [rows[3].id], "too late", 121.0)
    # rows[2] still runs: it has nothing to show yet.
    found = await store.unshown_endings(since=0.0)
    assert [(g.id, g.state) for g in found] == [(rows[1].id, State.COMPLETED), (rows[0].id, State.FAILED)]
    assert await store.unshown_endings(since=120.5) == [found[1]]

    await store.mark_status_shown([rows[1].id, rows[2].id], 130.0)  # a running row is not marked
    assert [g.id for g in await store.unshown_endings(since=0.0)] == [rows[0].id]
    await store.record_lookups([(rows[2].id, ApiGeneration("api-2", "completed"))], [], "", 131.0)
    assert [g.id for g in await store.unshown_endings(since=0.0)] == [rows[0].id, rows[2].id]
    status = await store.status_generation(rows[2].id)
    assert status is not None and status.status_message_id == 902 and status.state is State.COMPLETED


async def test_a_timed_out_video_that_arrives_after_all_is_an_ending_to_show_again(store: GenerationStore) -> None:
    row = await _insert(store)
    await store.mark_submitted(row.id, ApiGeneration(id="api-1", state="pending"), 110.0)
    await store.set_status_message(row.id, 900)
    await store.mark_timed_out(row.id, "too late", 120.0)
    await store.mark_status_shown([row.id], 121.0)
    assert await store.unshown_endings(since=0.0) == []
    await store.apply_api_update(row.id, ApiGeneration(id="api-1", state="completed"), 130.0, expected=State.TIMED_OUT)
    [again] = await store.unshown_endings(since=0.0)
    assert again.state is State.COMPLETED


async def test_the_upload_limit_and_the_keep_videos_setting_are_kept(store: GenerationStore) -> None:
    row = await store.reserve(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=5,
        requester_id=10,
        options=GenerationOptions("p", "1:1", False),
        parent_api_id=None,
        now=100.0,
        model="legacy",
        counted_since=0.0,
        decide=None,
        upload_limit=50 * 1024 * 1024,
    )
    assert row.upload_limit == 50 * 1024 * 1024
    assert (await _insert(store)).upload_limit is None
    assert (await store.guild_rules(1, ServerLimits())).keep_videos is False
    await store.set_keep_videos(1, True, 100.0)
    assert (await store.guild_rules(1, ServerLimits())).keep_videos is True
    assert (await store.guild_rules(2, ServerLimits())).keep_videos is False


async def test_endings_of_the_schema_before_live_progress_count_as_shown(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    before = next(number for number, script in enumerate(storage.MIGRATIONS) if "status_shown_at" in script)

    before = next(n for n, script in enumerate(storage.MIGRATIONS) if "status_shown_at" in script)
    with sqlite3.connect(path) as old:
        for number, script in enumerate(storage.MIGRATIONS[:before], start=1):
            old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        for api_id, state, finished in (("old-1", "completed", 7), ("old-2", "running", None)):
            old.execute(
                "INSERT INTO generations (api_id, kind, guild_id, channel_id, requester_id, prompt, aspect_ratio,"
                " expand_prompt, state, api_state, created_at, updated_at, submitted_at, finished_at,"
                " status_message_id) VALUES (?, 'generate', 1, 11, 100, 'old', '16:9', 1, ?, 'pending', 5, 5, 5, ?, 9)",
                (api_id, state, finished),
            )
    opened = await SqliteStore.open(path)
    try:
        assert await opened.unshown_endings(since=0.0) == []  # no storm of edits of old messages after an update
        running = await opened.get_by_api_id("old-2")
        assert running is not None
        await opened.apply_api_update(running.id, ApiGeneration(id="old-2", state="completed"), 10.0)
        assert [g.api_id for g in await opened.unshown_endings(since=0.0)] == ["old-2"]
    finally:
        await opened.close()


async def test_a_private_request_and_the_servers_private_mode_are_kept(store: GenerationStore) -> None:
    def reserve(private: bool) -> Any:
        return store.reserve(
            kind=Kind.GENERATE,
            guild_id=1,
            channel_id=11,
            requester_id=100,
            options=GenerationOptions("a private fox"),
            parent_api_id=None,
            now=20.0,
            model="legacy",
            counted_since=0.0,
            decide=None,
            private=private,
        )

    private, public = await reserve(True), await reserve(False)
    assert (private.private, public.private) == (True, False)
    assert [g.private for g in await store.recent_for_member(1, 100)] == [False, True]
    assert (await store.guild_rules(1, ServerLimits())).private_mode is True  # on unless moderators turn it off
    await store.set_members_share_videos(1, False, 30.0)
    await store.set_private_mode(1, False, 31.0)
    rules = await store.guild_rules(1, ServerLimits())
    assert (rules.private_mode, rules.members_share_videos) == (False, False)
    assert (await store.guild_rules(2, ServerLimits())).private_mode is True


async def test_the_queue_s_counts_are_made_only_where_a_cap_needs_them(store: GenerationStore) -> None:
    running = await _insert(store, guild=1, user=10, now=100.0)
    await store.mark_submitted(running.id, ApiGeneration(id="api-1", state="pending"), 101.0)
    await _insert(store, guild=2, user=20, now=102.0)  # in flight in another server
    waiting = await store.reserve(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=5,
        requester_id=10,
        options=GenerationOptions("waits", "1:1", False),
        parent_api_id=None,
        now=103.0,
        model="legacy",
        counted_since=0.0,
        decide=lambda usage: True,
    )
    assert waiting.state is State.QUEUED
    everything = await store.queue_usage_now(1, 10, 0.0, 200.0)
    assert (everything.everyone_running, everything.server_running) == (2, 1)
    assert (everything.user_queued, everything.waiting_ready, everything.server_waiting_ready) == (1, 1, 1)
    assert (everything.user_today, everything.server_today, everything.everyone_today) == (2, 2, 3)
    uncapped = await store.queue_usage_now(1, 10, 0.0, 200.0, UsageCounts(False, False, False, False))
    assert (uncapped.everyone_running, uncapped.server_running, uncapped.server_today) == (0, 0, 0)
    assert (uncapped.user_queued, uncapped.user_today, uncapped.user_running) == (1, 2, 1)


class _ReadsFail:
    """A reading connection that meets a disk error."""

    async def execute_fetchall(self, sql: str, params: object = ()) -> list[sqlite3.Row]:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_reservation_and_a_claim_return_what_they_wrote_even_when_reading_fails_just_then(
    sqlite_store: SqliteStore,
) -> None:
    waiting = await sqlite_store.reserve(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=5,
        requester_id=10,
        options=GenerationOptions("waits", "1:1", False),
        parent_api_id=None,
        now=100.0,
        model="legacy",
        counted_since=0.0,
        decide=lambda usage: True,
    )
    reads = sqlite_store._reads
    sqlite_store._reads = _ReadsFail()  # type: ignore[assignment]
    try:
        # Kept in the database: the member must hear that it was, not that the database failed.
        made = await _insert(sqlite_store, prompt="made")
        claimed = await sqlite_store.claim_queued(waiting.id, 101.0, max_running=0, server_cap=0, user_cap=0)
    finally:
        sqlite_store._reads = reads
    assert made == await sqlite_store.get(made.id) and made.state is State.SUBMITTING
    assert claimed == await sqlite_store.get(waiting.id)
    assert claimed is not None and claimed.state is State.SUBMITTING and claimed.started_at == 101.0


async def test_expiring_the_queue_returns_exactly_the_jobs_it_dropped(
    store: GenerationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = []
    for n in range(3):
        waiting.append(
            await store.reserve(
                kind=Kind.GENERATE,
                guild_id=1,
                channel_id=5,
                requester_id=10 + n,
                options=GenerationOptions(f"waits {n}", "1:1", False),
                parent_api_id=None,
                now=100.0 + n,
                model="legacy",
                counted_since=0.0,
                decide=lambda usage: True,
            )
        )
    select = store._select  # type: ignore[attr-defined]

    async def meanwhile(*args: object) -> object:
        # Between a look at the queue and the drop, a member cancels one job and the queue runner starts another.
        found = await select(*args)
        await store.cancel_queued(waiting[0].id, "cancelled", 150.0)
        await store.claim_queued(waiting[1].id, 150.0, max_running=0, server_cap=0, user_cap=0)
        return found

    monkeypatch.setattr(store, "_select", meanwhile)
    dropped = await store.expire_queued(200.0, "waited too long", 200.0)
    monkeypatch.undo()
    # Each requester the queue tells of a drop had their job dropped, and no other job was.
    now_expired = [row.id for row in waiting if (await store.get(row.id)).state is State.EXPIRED]  # type: ignore[union-attr]
    assert [row.id for row in dropped] == now_expired
    assert all(row.state is State.EXPIRED and row.failure_reason == "waited too long" for row in dropped)
