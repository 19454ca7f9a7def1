"""/usage on a known history: every number counted the same way, and the embed a moderator reads."""

from __future__ import annotations

import pytest

from bot.metrics import StoreSnapshot
from bot.models import ApiGeneration, GenerationOptions, Kind
from bot.moderation import UsageSummary
from bot.storage import GenerationStore
from cogs.moderation import usage_embed

GUILD, OTHER_GUILD = 1, 2
ALICE, BOB, CAROL = 10, 20, 30
SINCE = 1_000.0


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


async def _generation(store: GenerationStore, user: int, outcome: str, *, kind: Kind = Kind.GENERATE, **where: float):
    """One request of `user` that ended in `outcome`: completed, failed, running, refused or unconfirmed."""
    row = await store.insert_submitting(
        kind=kind,
        guild_id=int(where.get("guild", GUILD)),
        channel_id=5,
        requester_id=user,
        options=GenerationOptions("a prompt", "16:9", True),
        parent_api_id="parent" if kind is Kind.EXTEND else None,
        now=where.get("at", SINCE + 60),
    )
    now = where.get("at", SINCE + 60) + 1
    if outcome == "refused":
        await store.mark_rejected(row.id, "validation", now)
        return
    if outcome == "unconfirmed":
        await store.mark_unconfirmed(row.id, "no answer", now, requester_told=True)
        return
    api_id = f"api-{row.id}"
    await store.mark_submitted(row.id, ApiGeneration(id=api_id, state="pending"), now)
    if outcome in ("completed", "failed"):
        await store.apply_api_update(row.id, ApiGeneration(id=api_id, state=outcome), now + 1)


async def _known_history(store: GenerationStore) -> None:
    for _ in range(3):
        await _generation(store, ALICE, "completed")
    await _generation(store, ALICE, "completed", kind=Kind.EXTEND)
    await _generation(store, ALICE, "failed")
    await _generation(store, BOB, "failed")
    await _generation(store, BOB, "failed", kind=Kind.EXTEND)
    await _generation(store, BOB, "running")
    await _generation(store, BOB, "refused")
    await _generation(store, CAROL, "unconfirmed")
    # Outside the period, and in another server: not counted.
    await _generation(store, CAROL, "completed", at=SINCE - 10)
    await _generation(store, CAROL, "completed", guild=OTHER_GUILD)


async def test_generations_extensions_spend_and_top_members_count_the_same_videos(store: GenerationStore) -> None:
    await _known_history(store)
    report = await store.usage_report(GUILD, SINCE)
    summary = UsageSummary(days=7, since=SINCE, report=report)
    # Paid for: Alice 3 + 1 extension, Bob's running one, Carol's unconfirmed one (it may have been accepted).
    assert (report.generations, report.extensions, report.charged) == (5, 1, 6)
    assert (report.failures, report.refused) == (3, 1)
    assert [(m.user_id, m.videos) for m in summary.top_by_videos()] == [(ALICE, 4), (BOB, 1), (CAROL, 1)]
    assert sum(m.videos for m in summary.members()) == report.charged


async def test_the_embed_shows_spend_per_member_and_says_what_costs_nothing(store: GenerationStore) -> None:
    await _known_history(store)
    embed = usage_embed(UsageSummary(days=7, since=SINCE, report=await store.usage_report(GUILD, SINCE)))
    fields = {field.name: field.value for field in embed.fields}
    assert fields["Generations"] == "5" and fields["Extensions"] == "1"
    assert fields["Tokens spent"] == "3,000,000 (6 of 6 videos at the documented price: no cost reported for them)"
    assert fields["Failed (no cost)"] == "3" and fields["Refused by the API (no cost)"] == "1"
    assert fields["Top members"].splitlines() == [
        f"<@{ALICE}> — 4 videos, 2,000,000 tokens",
        f"<@{BOB}> — 1 video, 500,000 tokens",
        f"<@{CAROL}> — 1 video, 500,000 tokens",
    ]
    assert embed.footer.text is not None and "did not report failed" in embed.footer.text


async def test_metrics_count_states_and_spend_like_usage(store: GenerationStore) -> None:
    await _known_history(store)
    snapshot = StoreSnapshot(await store.state_counts())
    states = snapshot.by_state()
    assert (states["completed"], states["failed"], states["running"], states["rejected"]) == (6, 3, 1, 1)
    assert states["unconfirmed"] == 1 and states["timed_out"] == 0
    # Everything paid for, whatever the server or period: the six of GUILD and Carol's two others.
    assert snapshot.charged == 8
    assert snapshot.running_and_waiting() == (0, 1)  # the running one is still "pending" at the API


async def test_spend_is_what_the_api_reported_and_the_documented_price_only_where_it_reported_nothing(
    store: GenerationStore,
) -> None:
    async def video(user: int, model: str, credits: int | None, usd: float | None) -> None:
        row = await store.insert_submitting(
            kind=Kind.GENERATE,
            guild_id=GUILD,
            channel_id=5,
            requester_id=user,
            options=GenerationOptions("a prompt"),
            parent_api_id=None,
            now=SINCE + 60,
            model=model,
        )
        api_id = f"api-{row.id}:{model}"
        await store.mark_submitted(row.id, ApiGeneration(id=api_id, state="queued"), SINCE + 61)
        done = ApiGeneration(id=api_id, state="completed", video_url="https://v", credits_used=credits, usd_spent=usd)
        await store.apply_api_update(row.id, done, SINCE + 62)

    await video(ALICE, "luma/ray-2", 120_000, 0.06)
    await video(ALICE, "luma/ray-2", 120_000, 0.06)
    await video(BOB, "luma/ray-3.2", 1_200_000, 0.6)
    await video(CAROL, "legacy", None, None)  # the legacy endpoint reports no cost
    summary = UsageSummary(days=1, since=SINCE, report=await store.usage_report(GUILD, SINCE))
    assert summary.tokens_spent == 240_000 + 1_200_000 + 500_000
    assert summary.estimated_videos == 1 and summary.usd_spent == pytest.approx(0.72)
    assert [(m.user_id, m.videos, m.tokens) for m in summary.top_by_videos()] == [
        (ALICE, 2, 240_000),
        (BOB, 1, 1_200_000),
        (CAROL, 1, 500_000),
    ]
    assert [m.user_id for m in summary.top_by_spend()] == [BOB, CAROL, ALICE]
    fields = {field.name: field.value for field in usage_embed(summary).fields}
    assert fields["Tokens spent"] == "1,940,000 (1 of 4 videos at the documented price: no cost reported for them)"
    assert fields["USD spent (reported)"] == "$0.72"
    assert fields["Top members by spend"].splitlines()[0] == f"<@{BOB}> — 1 video, 1,200,000 tokens"
    snapshot = StoreSnapshot(await store.state_counts())
    assert snapshot.tokens_spent == summary.tokens_spent  # the metrics count spend the same way
