"""One bot-like process of the PostgreSQL race tests: `python -m tests.postgres_worker URL MODE ...`.

It says "ready" once it stands at the start line, waits for "go" on its stdin (so that every process starts at the
same moment), then does its part and prints what came of it as one line of JSON:
- `reserve GUILD:USER ...`: one reservation per pair, all at once, each checked by the bot's own limits;
  prints {"created": n, "refused": n}.
- `open`: opens (and so migrates) the database; prints {"version": n}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bot.models import GenerationOptions, Kind
from bot.quota import Admission, GuildRules, LimitReached, Member, ServerLimits, Usage, admit, day_start
from bot.storage import UsageCounts
from bot.storage.postgres import PostgresStore

NOW = 1_800_000_000.0


async def _reserve(store: PostgresStore, guild: int, user: int, rules: GuildRules, global_daily: int) -> bool:
    def decide(usage: Usage) -> bool:
        outcome = admit(rules, Member(user), usage, NOW, global_daily=global_daily, max_running=0)
        if isinstance(outcome, LimitReached):
            raise outcome
        return outcome is Admission.QUEUE

    try:
        await store.reserve(
            kind=Kind.GENERATE,
            guild_id=guild,
            channel_id=guild * 10,
            requester_id=user,
            options=GenerationOptions(f"a race in {guild}", "16:9", False),
            parent_api_id=None,
            now=NOW,
            model="legacy",
            counted_since=day_start(NOW),
            decide=decide,
            counts=UsageCounts.for_limits(rules.limits, global_daily),
        )
    except LimitReached:
        return False
    return True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=["reserve", "open"])
    parser.add_argument("requests", nargs="*", help="GUILD:USER pairs to reserve for")
    parser.add_argument("--user-daily", type=int, default=0)
    parser.add_argument("--global-daily", type=int, default=0)
    args = parser.parse_intermixed_args()
    # Opened before the start line, where the race is about the reservations; at it, where it is about migrating.
    store = await PostgresStore.open(args.url) if args.mode == "reserve" else None
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    if store is None:
        store = await PostgresStore.open(args.url)
        print(json.dumps({"version": await store.schema_version()}), flush=True)
        await store.close()
        return
    rules = GuildRules(limits=ServerLimits(user_daily=args.user_daily))
    pairs = [tuple(int(part) for part in pair.split(":")) for pair in args.requests]
    outcomes = await asyncio.gather(*(_reserve(store, g, u, rules, args.global_daily) for g, u in pairs))
    await store.close()
    print(json.dumps({"created": sum(outcomes), "refused": len(outcomes) - sum(outcomes)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
