"""The moderation rules as pure functions: limits, day boundary, cooldown edges, exemptions, blocked words."""

from __future__ import annotations

import pytest

from bot.errors import UserFacingError
from bot.quota import (
    DAY_SECONDS,
    Admission,
    GuildRules,
    LimitReached,
    Member,
    ServerLimits,
    Usage,
    admit,
    check_access,
    check_limits,
    check_prompt_allowed,
    contains_blocked_phrase,
    day_start,
    next_reset,
    normalise_phrase,
)

MIDNIGHT = 1_800_000_000 - 1_800_000_000 % DAY_SECONDS  # a UTC midnight
ALICE = Member(1, frozenset({10}))
VIP = Member(2, frozenset({10, 99}))


def rules(**limits: int) -> GuildRules:
    return GuildRules(limits=ServerLimits(**limits), exempt_roles=frozenset({99}))


def test_the_day_starts_and_resets_at_midnight_utc() -> None:
    assert day_start(MIDNIGHT) == MIDNIGHT
    assert day_start(MIDNIGHT + DAY_SECONDS - 1) == MIDNIGHT
    assert day_start(MIDNIGHT - 1) == MIDNIGHT - DAY_SECONDS
    assert next_reset(MIDNIGHT + 5) == MIDNIGHT + DAY_SECONDS


def test_zero_means_no_limit() -> None:
    busy = Usage(
        user_today=10**6, server_today=10**6, everyone_today=10**6, user_running=10**6, user_last_submitted_at=MIDNIGHT
    )
    assert check_limits(rules(), ALICE, busy, MIDNIGHT, global_daily=0) is None


def test_daily_limit_names_the_numbers_and_the_reset() -> None:
    refusal = check_limits(rules(user_daily=3), ALICE, Usage(user_today=3), MIDNIGHT + 60, global_daily=0)
    assert refusal is not None and refusal.limit == "user_daily"
    assert "3 of 3" in refusal.message and f"<t:{MIDNIGHT + DAY_SECONDS}:R>" in refusal.message
    assert refusal.frees_at == MIDNIGHT + DAY_SECONDS
    assert check_limits(rules(user_daily=3), ALICE, Usage(user_today=2), MIDNIGHT, global_daily=0) is None


def test_server_and_concurrent_limits() -> None:
    server = check_limits(rules(server_daily=5), ALICE, Usage(server_today=5), MIDNIGHT, global_daily=0)
    assert server is not None and server.limit == "server_daily" and "5 of 5" in server.message
    running = check_limits(rules(user_concurrent=2), ALICE, Usage(user_running=2), MIDNIGHT, global_daily=0)
    assert running is not None and running.limit == "user_concurrent" and "2 of 2" in running.message


@pytest.mark.parametrize(("elapsed", "refused"), [(0, True), (29.5, True), (30, False), (31, False)])
def test_cooldown_edges(elapsed: float, refused: bool) -> None:
    usage = Usage(user_last_submitted_at=MIDNIGHT)
    refusal = check_limits(rules(cooldown_seconds=30), ALICE, usage, MIDNIGHT + elapsed, global_daily=0)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.frees_at == MIDNIGHT + 30 and "30 seconds" in refusal.message


def test_cooldown_says_how_long_is_left() -> None:
    refusal = check_limits(
        rules(cooldown_seconds=30), ALICE, Usage(user_last_submitted_at=MIDNIGHT), MIDNIGHT + 20.2, global_daily=0
    )
    assert refusal is not None and "wait 10 more seconds" in refusal.message


def test_exempt_roles_skip_server_limits_but_not_the_global_cap() -> None:
    full = Usage(user_today=9, server_today=9, user_running=9, user_last_submitted_at=MIDNIGHT, everyone_today=9)
    strict = rules(user_daily=1, server_daily=1, user_concurrent=1, cooldown_seconds=60)
    assert check_limits(strict, VIP, full, MIDNIGHT, global_daily=0) is None
    capped = check_limits(strict, VIP, full, MIDNIGHT, global_daily=9)
    assert capped is not None and capped.limit == "global_daily" and "9 of 9" in capped.message


def test_channels_and_roles_restrict_who_and_where() -> None:
    restricted = GuildRules(
        limits=ServerLimits(),
        allowed_channels=frozenset({500}),
        allowed_roles=frozenset({10}),
        exempt_roles=frozenset({99}),
    )
    check_access(restricted, ALICE, 500)
    check_access(restricted, ALICE, 777, channel_parent_id=500)  # a thread of an allowed channel
    with pytest.raises(UserFacingError, match="<#500>"):
        check_access(restricted, ALICE, 501)
    with pytest.raises(UserFacingError, match="<@&10>"):
        check_access(restricted, Member(3, frozenset({11})), 500)
    check_access(restricted, Member(4, frozenset({99})), 500)  # exempt roles may generate too
    check_access(GuildRules(limits=ServerLimits()), Member(5), 1)  # empty lists: everyone, everywhere


@pytest.mark.parametrize(
    "prompt",
    [
        "a Forbidden castle",
        "a FORBIDDEN castle",
        "a ｆｏｒｂｉｄｄｅｎ castle",  # full-width letters
        "a fоrbiddеn castle",  # Cyrillic о and е
        "a fórbíddén castle",  # accents
        "a forbid\u200bden castle",  # zero-width space inside
        "forbidden!",
    ],
)
def test_blocked_words_match_through_tricks(prompt: str) -> None:
    assert contains_blocked_phrase(prompt, [normalise_phrase("forbidden")])


@pytest.mark.parametrize("prompt", ["unforbiddenly calm", "forbiddens", "a for bidden door"])
def test_blocked_words_match_whole_words_only(prompt: str) -> None:
    assert not contains_blocked_phrase(prompt, [normalise_phrase("forbidden")])


def test_blocked_phrases_of_several_words() -> None:
    phrases = [normalise_phrase("Red  Door")]
    assert phrases == ["red door"]
    assert contains_blocked_phrase("open the red, door now", phrases)
    assert not contains_blocked_phrase("a red wooden door", phrases)


def test_a_refusal_does_not_echo_the_word() -> None:
    blocked = GuildRules(limits=ServerLimits(), blocked_phrases=("secretword",))
    with pytest.raises(UserFacingError) as caught:
        check_prompt_allowed(blocked, "show the SECRETWORD please")
    assert "secretword" not in caught.value.message.lower()


def test_admission_starts_queues_or_refuses_by_the_running_caps() -> None:
    free = Usage()
    assert admit(rules(), ALICE, free, MIDNIGHT, global_daily=0, max_running=2) is Admission.START
    # Each running cap, once reached, makes a job wait rather than be refused.
    for limits, usage, max_running in (
        ({}, Usage(everyone_running=2), 2),
        ({"server_concurrent": 1}, Usage(server_running=1), 0),
        ({"user_concurrent": 1}, Usage(user_running=1), 0),
    ):
        assert admit(rules(**limits), ALICE, usage, MIDNIGHT, global_daily=0, max_running=max_running) is (
            Admission.QUEUE
        )
    # A member's new job does not overtake their own job waiting for a slot.
    assert admit(rules(), ALICE, Usage(waiting_ready=1), MIDNIGHT, global_daily=0, max_running=0) is Admission.QUEUE


def test_admission_refuses_past_the_members_queue_and_where_nobody_may_wait() -> None:
    full = admit(
        rules(user_concurrent=1, user_queued=2),
        ALICE,
        Usage(user_running=1, user_queued=2),
        MIDNIGHT,
        global_daily=0,
        max_running=0,
    )
    assert isinstance(full, LimitReached) and full.limit == "user_queued" and "2 of 2 videos waiting" in full.message
    # user_queued 0: refused as before there was a queue, by the cap that was reached.
    member = admit(
        rules(user_concurrent=1, user_queued=0), ALICE, Usage(user_running=1), MIDNIGHT, global_daily=0, max_running=0
    )
    assert isinstance(member, LimitReached) and member.limit == "user_concurrent"
    operator = admit(rules(user_queued=0), ALICE, Usage(everyone_running=3), MIDNIGHT, global_daily=0, max_running=3)
    assert isinstance(operator, LimitReached) and operator.limit == "max_running"
    # The daily limits still refuse first: a queued job counts when it is accepted.
    daily = admit(
        rules(user_daily=1), ALICE, Usage(user_today=1, everyone_running=9), MIDNIGHT, global_daily=0, max_running=1
    )
    assert isinstance(daily, LimitReached) and daily.limit == "user_daily"
    # Exempt roles skip the server's caps and its queue limit, not the operator's cap.
    vip = rules(server_concurrent=1, user_queued=1)
    assert admit(vip, VIP, Usage(server_running=5, user_queued=4), MIDNIGHT, global_daily=0, max_running=0) is (
        Admission.START
    )
    assert admit(vip, VIP, Usage(everyone_running=2, user_queued=4), MIDNIGHT, global_daily=0, max_running=2) is (
        Admission.QUEUE
    )
