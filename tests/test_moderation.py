"""Limits on each backend: the atomic reservation, what counts, persistence, and per-server isolation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.api_client import LumaClient
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.models import GenerationOptions, State
from bot.moderation import ModerationService
from bot.quota import LimitReached, Member, ServerLimits
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore, RuleEntry, SqliteStore
from tests.conftest import FakeClock

ALICE = Origin(guild_id=1, channel_id=11, user_id=100)
BOB = Origin(guild_id=1, channel_id=11, user_id=200)
ALICE_ELSEWHERE = Origin(guild_id=2, channel_id=22, user_id=100)
CREATES = ("POST", "/luma-ai/generations")


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


@pytest.fixture
def moderation(store: GenerationStore, clock: FakeClock) -> ModerationService:
    return ModerationService(store, ServerLimits(), global_daily=0, clock=clock)


@pytest.fixture
def service(
    store: GenerationStore, api: LumaClient, moderation: ModerationService, clock: FakeClock
) -> GenerationService:
    return GenerationService(store, api, moderation=moderation, clock=clock)


async def test_fifteen_simultaneous_requests_create_exactly_three(
    service: GenerationService, moderation: ModerationService, simulator: RunningSimulator
) -> None:
    await moderation.set_limits(1, {"user_daily": 3})
    results = await asyncio.gather(
        *(service.generate(ALICE, GenerationOptions(f"burst {n}")) for n in range(15)), return_exceptions=True
    )
    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, LimitReached)]
    assert len(started) == 3 and len(refused) == 12
    assert simulator.state.count(*CREATES) == 3
    assert all(r.limit == "user_daily" and "3 of 3" in r.message for r in refused)


async def test_concurrency_limit_frees_when_a_video_finishes(
    service: GenerationService, moderation: ModerationService, clock: FakeClock
) -> None:
    # With no room to wait (user_queued 0), a member past user_concurrent is refused as before the queue existed.
    await moderation.set_limits(1, {"user_concurrent": 1, "user_queued": 0})
    first = await service.generate(ALICE, GenerationOptions("first"))
    with pytest.raises(LimitReached, match="1 of 1 videos running"):
        await service.generate(ALICE, GenerationOptions("second"))
    clock.advance(61)
    await service.refresh(first)
    await service.generate(ALICE, GenerationOptions("second"))


async def test_refused_and_failed_generations_do_not_count(
    service: GenerationService, moderation: ModerationService, simulator: RunningSimulator, clock: FakeClock
) -> None:
    await moderation.set_limits(1, {"user_daily": 1})
    simulator.state.create_faults.append(403)
    with pytest.raises(UserFacingError, match="out of credits"):
        await service.generate(ALICE, GenerationOptions("refused by the api"))
    failing = await service.generate(ALICE, GenerationOptions("this will #fail"))
    clock.advance(61)
    assert (await service.refresh(failing)).state is State.FAILED
    await service.generate(ALICE, GenerationOptions("counts"))
    with pytest.raises(LimitReached):
        await service.generate(ALICE, GenerationOptions("over"))


async def test_the_daily_limit_resets_at_midnight_utc(
    service: GenerationService, moderation: ModerationService, clock: FakeClock
) -> None:
    await moderation.set_limits(1, {"user_daily": 1})
    clock.now = 1_800_057_600.0 - 1  # one second before a UTC midnight
    await service.generate(ALICE, GenerationOptions("late night"))
    with pytest.raises(LimitReached):
        await service.generate(ALICE, GenerationOptions("too soon"))
    clock.advance(1)
    await service.generate(ALICE, GenerationOptions("new day"))


async def test_limits_are_per_server_and_exempt_roles_skip_them(
    service: GenerationService, moderation: ModerationService
) -> None:
    await moderation.set_limits(1, {"user_daily": 1, "server_daily": 2})
    await service.generate(ALICE, GenerationOptions("one"))
    await service.generate(ALICE_ELSEWHERE, GenerationOptions("other server is unaffected"))
    await service.generate(ALICE_ELSEWHERE, GenerationOptions("still unaffected"))
    await service.generate(BOB, GenerationOptions("bob's one"))
    with pytest.raises(LimitReached, match="This server has reached its daily limit: 2 of 2"):
        await service.generate(Origin(1, 11, 300), GenerationOptions("server full"))
    await moderation.add(1, RuleEntry.EXEMPT_ROLE, "77")
    await service.generate(Origin(1, 11, 300, role_ids=frozenset({77})), GenerationOptions("exempt"))


async def test_the_global_cap_covers_all_servers(store: GenerationStore, api: LumaClient, clock: FakeClock) -> None:
    capped = ModerationService(store, ServerLimits(), global_daily=2, clock=clock)
    service = GenerationService(store, api, moderation=capped, clock=clock)
    await service.generate(ALICE, GenerationOptions("one"))
    await service.generate(ALICE_ELSEWHERE, GenerationOptions("two"))
    with pytest.raises(LimitReached, match="across all servers: 2 of 2"):
        await service.generate(BOB, GenerationOptions("three"))


async def test_channels_roles_words_and_sharing_are_enforced(
    service: GenerationService, moderation: ModerationService, clock: FakeClock, simulator: RunningSimulator
) -> None:
    await moderation.add(1, RuleEntry.CHANNEL, "12")
    with pytest.raises(UserFacingError, match="can't be made in this channel"):
        await service.generate(ALICE, GenerationOptions("wrong channel"))
    await moderation.clear(1, RuleEntry.CHANNEL)
    await moderation.add(1, RuleEntry.BLOCKED_PHRASE, "Dragon")
    with pytest.raises(UserFacingError, match="don't allow"):
        await service.generate(ALICE, GenerationOptions("a DRAGON flies"))
    mine = await service.generate(ALICE, GenerationOptions("a kite flies"))
    clock.advance(61)
    await service.refresh(mine)
    await moderation.set_sharing(1, False)
    with pytest.raises(UserFacingError, match="only on their own"):
        await service.extend(BOB, mine.api_id or "", GenerationOptions("bob continues"))
    moderator = Origin(1, 11, 200, is_moderator=True)
    await service.extend(moderator, mine.api_id or "", GenerationOptions("a moderator continues"))
    await moderation.add(1, RuleEntry.ROLE, "55")
    with pytest.raises(UserFacingError, match="needs one of these roles"):
        await service.generate(ALICE, GenerationOptions("no role"))
    assert simulator.state.create_count == 2  # one generation and one extension, nothing refused was sent


async def test_settings_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "bot.sqlite3"
    store = await SqliteStore.open(path)
    await ModerationService(store, ServerLimits(), global_daily=0, clock=clock).set_limits(1, {"user_daily": 4})
    await store.add_rule_entry(1, RuleEntry.BLOCKED_PHRASE, "x y")
    await store.close()
    store = await SqliteStore.open(path)
    try:
        rules = await ModerationService(store, ServerLimits(user_daily=9, cooldown_seconds=5), global_daily=0).rules(1)
        assert rules.limits == ServerLimits(user_daily=4, cooldown_seconds=5)
        assert rules.overridden == {"user_daily"} and rules.blocked_phrases == ("x y",)
        fresh = await ModerationService(store, ServerLimits(user_daily=9), global_daily=0).rules(2)
        assert fresh.limits.user_daily == 9 and fresh.blocked_phrases == ()
    finally:
        await store.close()


async def test_quota_and_usage_tell_the_truth(
    service: GenerationService, moderation: ModerationService, clock: FakeClock
) -> None:
    await moderation.set_limits(1, {"user_daily": 5, "cooldown_seconds": 10})
    first = await service.generate(ALICE, GenerationOptions("one"))
    standing = await moderation.standing(1, Member(100))
    assert (standing.usage.user_today, standing.usage.user_running) == (1, 1)
    assert 9 < standing.cooldown_left <= 10
    clock.advance(61)
    await service.refresh(first)
    await service.extend(ALICE, first.api_id or "", GenerationOptions("more"))
    failing = await service.generate(BOB, GenerationOptions("bob #fail"))
    clock.advance(61)
    await service.refresh(failing)
    summary = await moderation.usage(1, 7)
    # The failed one is counted as a failure only: generations, extensions and spend are the videos paid for.
    assert (summary.report.generations, summary.report.extensions, summary.report.failures) == (1, 1, 1)
    assert summary.tokens_spent == 2 * 500_000
    assert [(m.user_id, m.videos) for m in summary.top_by_videos()] == [(100, 2)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user_daily", -1),
        ("server_daily", 1_000_001),
        ("user_concurrent", 2**31),
        ("cooldown_seconds", 2**63),
        ("user_daily", 2.5),
        ("server_daily", True),
        ("user_daily", "3"),
        ("cooldown_seconds", None),
    ],
)
async def test_limit_values_outside_their_range_or_type_are_refused_in_words(
    moderation: ModerationService, name: str, value: object
) -> None:
    """Values that bypassed Discord's client checks (another client, an admin override) reach the service too."""
    await moderation.set_limits(1, {"user_daily": 4})
    with pytest.raises(UserFacingError, match=r"whole number from 0 to 1,000,000"):
        await moderation.set_limits(1, {name: value})
    rules = await moderation.rules(1)
    assert rules.limits.user_daily == 4 and rules.overridden == {"user_daily"}


async def test_the_edges_of_a_limit_s_range_are_accepted(moderation: ModerationService) -> None:
    rules = await moderation.set_limits(1, {"user_daily": 1_000_000, "cooldown_seconds": 0})
    assert (rules.limits.user_daily, rules.limits.cooldown_seconds) == (1_000_000, 0)


@pytest.mark.parametrize("days", [0, 366, 2.5, True, "7"])
async def test_usage_periods_outside_the_range_are_refused(moderation: ModerationService, days: object) -> None:
    with pytest.raises(UserFacingError, match="from 1 to 365"):
        await moderation.usage(1, days)  # type: ignore[arg-type]


async def test_sharing_must_be_yes_or_no(moderation: ModerationService) -> None:
    with pytest.raises(UserFacingError, match="true or false"):
        await moderation.set_sharing(1, "yes")
    assert (await moderation.rules(1)).members_share_videos is True


async def test_keeping_videos_is_off_until_a_moderator_turns_it_on(moderation: ModerationService) -> None:
    assert (await moderation.rules(1)).keep_videos is False
    with pytest.raises(UserFacingError, match="true or false"):
        await moderation.set_keep_videos(1, "yes")
    assert (await moderation.set_keep_videos(1, True)).keep_videos is True
    assert (await moderation.rules(1)).keep_videos is True  # read fresh after the change, not from the cache
    assert (await moderation.rules(2)).keep_videos is False
    assert (await moderation.set_keep_videos(1, False)).keep_videos is False
