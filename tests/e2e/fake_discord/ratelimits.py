"""Discord's rate limits as the fake enforces them (``FakeDiscord(rate_limits=RateLimits())``): per-route buckets
and the bot's global limit.

Discord counts requests per route and "major parameter" (the channel, the server, or the webhook and its token) in
fixed windows, and answers 429 with `retry_after` once a bucket is spent; every bot also has a global limit (50
requests a second), which interaction callbacks do not count against. Each request is recorded, refused or not,
so a test can count what a bot did against the limits. The clock is injectable, so that a service can be run against
these limits in simulated time.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

EDIT_MESSAGE = "PATCH /channels/{channel_id}/messages/{message_id}"
CREATE_MESSAGE = "POST /channels/{channel_id}/messages"
# The parameters that split a route into buckets, in Discord's order of precedence.
MAJOR_PARAMETERS = ("channel_id", "guild_id", "token")


@dataclass(frozen=True)
class RouteLimit:
    """At most `limit` requests per `per` seconds in one bucket."""

    limit: int
    per: float


# The limits Discord applies to the routes the bot uses most (as its headers report them for a bot account).
DISCORD_ROUTE_LIMITS: Mapping[str, RouteLimit] = {
    EDIT_MESSAGE: RouteLimit(5, 5.0),
    CREATE_MESSAGE: RouteLimit(5, 5.0),
}
DISCORD_GLOBAL_LIMIT = RouteLimit(50, 1.0)


@dataclass(frozen=True)
class Verdict:
    """What the limits say of one request: allowed or not, and the headers that tell the client so."""

    allowed: bool
    bucket: str
    limit: int
    remaining: int
    reset_after: float
    is_global: bool = False

    def headers(self, now_epoch: float) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": f"{now_epoch + self.reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{self.reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket,
        }
        if not self.allowed:
            headers["X-RateLimit-Scope"] = "global" if self.is_global else "user"
            headers["Retry-After"] = str(max(1, int(self.reset_after + 0.999)))
            # Without Via discord.py takes a 429 for a Cloudflare ban and raises instead of waiting.
            headers["Via"] = "1.1 google"
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
        return headers

    def body(self) -> dict[str, object]:
        return {"message": "You are being rate limited.", "retry_after": self.reset_after, "global": self.is_global}


@dataclass(frozen=True)
class Hit:
    """One request as the limits saw it."""

    time: float
    route: str
    major: str
    allowed: bool
    is_global: bool = False


@dataclass
class _Bucket:
    opened_at: float
    used: int = 0


@dataclass
class RateLimits:
    """Per-route buckets and the global limit; `enforce=False` records without refusing."""

    routes: Mapping[str, RouteLimit] = field(default_factory=lambda: dict(DISCORD_ROUTE_LIMITS))
    global_limit: RouteLimit | None = DISCORD_GLOBAL_LIMIT
    enforce: bool = True
    clock: Callable[[], float] = time.monotonic
    hits: list[Hit] = field(default_factory=list)
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def check(self, route: str, params: Mapping[str, str], *, counts_globally: bool = True) -> Verdict | None:
        """Count one request to `route` (a "METHOD /template" string); None when neither limit applies to it."""
        now = self.clock()
        major = next((f"{name}={params[name]}" for name in MAJOR_PARAMETERS if name in params), "")
        if self.global_limit is not None and counts_globally:
            verdict = self._count(("global", ""), self.global_limit, now, is_global=True)
            if not verdict.allowed:
                self.hits.append(Hit(now, route, major, allowed=False, is_global=True))
                if self.enforce:
                    return verdict
        limit = self.routes.get(route)
        if limit is None:
            self.hits.append(Hit(now, route, major, allowed=True))
            return None
        verdict = self._count((route, major), limit, now)
        self.hits.append(Hit(now, route, major, allowed=verdict.allowed))
        return verdict if self.enforce or verdict.allowed else replace(verdict, allowed=True)

    def _count(self, key: tuple[str, str], limit: RouteLimit, now: float, *, is_global: bool = False) -> Verdict:
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.opened_at + limit.per:
            bucket = self._buckets[key] = _Bucket(opened_at=now)
        reset_after = max(0.0, bucket.opened_at + limit.per - now)
        name = f"fake-{zlib.crc32(repr(key).encode()):08x}"
        bucket.used += 1
        remaining = max(0, limit.limit - bucket.used)
        return Verdict(bucket.used <= limit.limit, name, limit.limit, remaining, reset_after, is_global)

    def refused(self, route: str | None = None) -> int:
        """Requests answered 429 (or that would have been, with `enforce=False`), to `route` or to any."""
        return sum(1 for hit in self.hits if not hit.allowed and (route is None or hit.route == route))

    def busiest_window(self, route: str, major: str, seconds: float) -> int:
        """The most requests to one bucket inside any span of `seconds`: what a bucket of that window saw at worst."""
        times = sorted(hit.time for hit in self.hits if hit.route == route and hit.major == major)
        most, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most
