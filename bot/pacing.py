"""Request pacing below Discord's global limit (50 requests a second per bot).

discord.py waits out a 429 once it has one; the bot's own senders pace themselves so that none comes: each takes its
share of the second, announcements and status message edits together well below the limit, with room for command
answers and the odd read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Announcements posted per second at most; status message edits take their own share (bot/progress.py).
ANNOUNCEMENTS_PER_SECOND = 20


def share_of(limit: int, share: float) -> int:
    """A process's part of a rate the whole bot keeps to (never nothing: each process must get its work out)."""
    return max(1, int(limit * share))


@dataclass
class SlidingWindow:
    """At most `limit` sends in any `seconds`."""

    limit: int
    seconds: float
    sent: deque[float] = field(default_factory=deque)

    def free_at(self, now: float) -> float:
        """When the next send fits (now or later)."""
        while self.sent and self.sent[0] <= now - self.seconds:
            self.sent.popleft()
        return now if len(self.sent) < self.limit else self.sent[0] + self.seconds

    def take(self, now: float) -> None:
        self.sent.append(now)


class Pace:
    """Senders wait their turn in a sliding window: at most `limit` requests per `seconds`."""

    def __init__(self, limit: int, seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = SlidingWindow(limit, seconds)
        self._clock = clock
        self._lock = asyncio.Lock()

    async def turn(self) -> None:
        """Return when the next request may leave (and count it as left)."""
        async with self._lock:
            while True:
                now = self._clock()
                free_at = self._window.free_at(now)
                if free_at <= now:
                    self._window.take(now)
                    return
                await asyncio.sleep(free_at - now)
