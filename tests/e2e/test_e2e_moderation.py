"""Moderators' limits against the real bot process: who may set them, and a burst that cannot get past them."""

from __future__ import annotations

import asyncio

from .harness import E2E, assert_private, embed_fields


async def test_limits_hold_against_a_burst_and_quota_and_usage_show_them(e2e: E2E) -> None:
    fake = e2e.fake
    alice, bob, moderator = fake.alice, fake.bob, fake.moderator
    e2e.sim.state.balance = 4_000_000.0  # under LOW_BALANCE_WARNING (5 000 000): the operator is warned
    await e2e.start_bot(GLOBAL_DAILY_LIMIT="5")

    # Only Manage Server may change the limits: the bot checks it itself, whatever the client allows.
    refused = await e2e.ask("limits set", {"user_daily": 1}, user=alice, enforce_client_rules=False)
    assert_private(refused, "Manage Server")
    refused = await e2e.ask("usage", user=alice, enforce_client_rules=False)
    assert_private(refused, "Manage Server")
    shown = await e2e.ask("limits show", user=alice)
    assert embed_fields(shown)["Per member per day"] == "no limit (default)"

    updated = await e2e.ask("limits set", {"user_daily": 3}, user=moderator)
    assert_private(updated, "Limits updated")
    assert embed_fields(updated)["Per member per day"] == "3"

    # Six simultaneous /generate: exactly three start, three are refused privately with the numbers.
    handles = await asyncio.gather(
        *(e2e.command("generate", {"prompt": f"Race {n}: a snail sprints"}, user=alice) for n in range(6))
    )
    outcomes = await asyncio.gather(*(e2e.outcome(handle) for handle in handles))
    started = [outcome for outcome in outcomes if not outcome.private]
    refusals = [outcome for outcome in outcomes if outcome.private]
    assert len(started) == 3 and len(refusals) == 3
    for refusal in refusals:
        assert_private(refusal.message, "daily limit", "3 of 3")
        # No public trace of a refused command is left in the channel.
        original = fake.get_message(refusal.handle.original_message_id or 0)
        assert original is None or original.ephemeral or original.deleted
    assert e2e.creates() == 3
    for outcome in started:
        await e2e.wait_announcement(outcome.generation_id)

    quota = await e2e.ask("quota", user=alice)
    assert embed_fields(quota)["Used today"] == "3 / 3"

    # The operator's cap across all servers: bob's third video of the day would be the sixth.
    for n in range(2):
        await e2e.generate(f"Bob's kite number {n} climbs", user=bob)
    capped = await e2e.ask("generate", {"prompt": "Bob's kite number 2 climbs"}, user=bob)
    assert_private(capped, "all servers", "5 of 5")
    assert e2e.creates() == 5

    # Blocked words: whole words, any case; the refusal does not repeat the word.
    added = await e2e.ask("limits words", {"action": "add", "phrase": "Kraken"}, user=moderator)
    assert_private(added, "added to")
    blocked = await e2e.ask("generate", {"prompt": "A KRAKEN rises from the bay"}, user=moderator)
    assert_private(blocked, "don't allow")
    assert "kraken" not in blocked.text.lower()

    # Where and by whom: a channel list, a role list, and sharing of videos.
    added = await e2e.ask("limits channels", {"action": "add", "channel": fake.videos}, user=moderator)
    assert_private(added, "added to")
    elsewhere = await e2e.ask("generate", {"prompt": "A moth near the lamp"}, user=moderator, channel=fake.general)
    assert_private(elsewhere, "can't be made in this channel", fake.videos.mention)
    await e2e.ask("limits channels", {"action": "clear"}, user=moderator)
    admin = fake.guild.role("admin")
    await e2e.ask("limits roles", {"action": "add", "role": admin}, user=moderator)
    no_role = await e2e.ask("generate", {"prompt": "A moth near the lamp"}, user=bob)
    assert_private(no_role, "needs one of these roles", admin.mention)
    await e2e.ask("limits roles", {"action": "clear"}, user=moderator)
    shared = await e2e.ask("limits sharing", {"allowed": False}, user=moderator)
    assert_private(shared, "Sharing updated")
    not_yours = await e2e.ask(
        "extend", {"generation_id": started[0].generation_id, "prompt": "The snail flies"}, user=bob
    )
    assert_private(not_yours, "belongs to another member")

    usage = await e2e.ask("usage", {"days": 1}, user=moderator)
    fields = embed_fields(usage)
    assert fields["Generations"] == "5" and fields["Extensions"] == "0"
    assert fields["Tokens spent"].startswith("2,500,000")
    assert fields["Top members"].splitlines() == [
        f"{alice.mention} — 3 videos, 1,500,000 tokens",
        f"{bob.mention} — 2 videos, 1,000,000 tokens",
    ]
    # The operator's balance: 4 000 000 at start, five videos since.
    assert fields["AI/ML account balance"].startswith("1,500,000 (about 3 videos at the legacy 500,000 each)")
    assert "balance is low" in e2e.bot.log()
    assert e2e.creates() == 5 == e2e.sim.state.create_count
    e2e.finish()
