from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bot.models import ApiGeneration, Delivery, GenerationOptions, Kind, State
from bot.storage import MIGRATIONS, GenerationStore


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
    store = await GenerationStore.open(path)
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
    store = await GenerationStore.open(path)
    row = await _insert(store, prompt="kept")
    await store.mark_submitted(row.id, ApiGeneration(id="api-1", state="pending"), 101.0)
    await store.close()
    reopened = await GenerationStore.open(path)
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


async def test_interrupted_submissions_are_found_and_can_be_handed_to_reconciliation(store: GenerationStore) -> None:
    stuck = await _insert(store)
    sent = await _insert(store)
    await store.mark_submitted(sent.id, ApiGeneration(id="api-2", state="pending"), 101.0)
    assert [g.id for g in await store.interrupted_submissions()] == [stuck.id]
    checking = await store.mark_checking(
        stuck.id, "looking", 300.0, next_check_at=330.0, check_until=3900.0, requester_told=False
    )
    assert checking.state is State.CHECKING and checking.notice_sent_at is None
    assert await store.interrupted_submissions() == []
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
