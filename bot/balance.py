"""The AI/ML account balance: refuse what it cannot cover, show it to moderators, warn when it runs low."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from .api_client import ApiNotFound, ApiOutOfCredits, ApiUnauthorized, Balance, VideoApiError
from .errors import UserFacingError
from .models import TOKENS_PER_VIDEO

log = logging.getLogger(__name__)

# A fresh enough reading for the check before each submission; one request a minute at most.
READING_MAX_AGE = 60.0
# When the key may not read the balance, ask again only this often.
UNREADABLE_RETRY_SECONDS = 3600.0
# Notices (a low balance, a key that may not read it) are given at most this often across every process.
NOTICE_INTERVAL_SECONDS = 3600.0


class BalanceReader(Protocol):
    async def balance(self) -> Balance: ...


class Notices(Protocol):
    """Where notices given once an hour are noted, so that several processes give each once (the database)."""

    async def claim_notice(self, key: str, now: float, interval: float) -> bool: ...


class BalanceService:
    """Caches the balance briefly, so that the check before a submission costs a request a minute at most."""

    def __init__(
        self,
        reader: BalanceReader,
        *,
        low_warning: float,
        cost_per_video: int = TOKENS_PER_VIDEO,
        clock: Callable[[], float] = time.monotonic,
        notices: Notices | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._notices = notices
        self._wall_clock = wall_clock
        self._low_warning = low_warning
        self._cost = cost_per_video
        self._clock = clock
        self._reading: Balance | None = None
        self._read_at: float | None = None
        self._unreadable_until = 0.0
        self._last_low_warning: float | None = None

    async def read(self, *, max_age: float = READING_MAX_AGE) -> Balance | None:
        """The balance, or None when the key may not read it or the API can't be reached now."""
        now = self._clock()
        if self._reading is not None and self._read_at is not None and now - self._read_at <= max_age:
            return self._reading
        if now < self._unreadable_until:
            return None
        try:
            reading = await self._reader.balance()
        except (ApiUnauthorized, ApiOutOfCredits, ApiNotFound) as error:
            self._unreadable_until = now + UNREADABLE_RETRY_SECONDS
            if await self._once_an_hour("balance-unreadable"):
                log.info("The API key may not read the account balance (%s); checking again in an hour", error)
            return None
        except VideoApiError as error:
            log.warning("Could not read the account balance: %s", error)
            return self._reading
        self._reading, self._read_at = reading, now
        await self._warn_if_low(reading, now)
        return reading

    async def ensure_affordable(self, price: int | None = None) -> None:
        """Refuse a submission the balance cannot cover (at `price`, the video's expected cost; by default the
        legacy price); an unreadable balance lets it through."""
        price = self._cost if price is None else price
        reading = await self.read()
        if reading is not None and reading.amount < price:
            # The numbers are the operator's business: they go to the log, the member hears what to do.
            log.warning(
                "Refused a submission: the AI/ML balance (%.0f) can't cover a video (%d tokens)",
                reading.amount,
                price,
            )
            raise UserFacingError(
                "Video generation is paused: the bot's account can't cover a video right now. Nothing was sent; "
                "please tell the server's moderators."
            )

    def note_spent(self, price: int | None = None) -> None:
        """Lower the cached reading by one video, so the next check does not rely on a stale balance."""
        if self._reading is not None:
            spent = self._cost if price is None else price
            self._reading = Balance(self._reading.amount - spent, self._reading.low)

    async def watch(self) -> None:
        """Called periodically: reads the balance now and then, logging a low balance once an hour."""
        await self.read(max_age=NOTICE_INTERVAL_SECONDS / 6)

    async def _warn_if_low(self, reading: Balance, now: float) -> None:
        if not self._low_warning or reading.amount >= self._low_warning:
            return
        if self._last_low_warning is not None and now - self._last_low_warning < NOTICE_INTERVAL_SECONDS:
            return
        self._last_low_warning = now
        if not await self._once_an_hour("low-balance"):
            return  # another process gave this warning within the hour
        log.warning(
            "The AI/ML account balance is low: %.0f, under LOW_BALANCE_WARNING (%.0f); about %d videos left",
            reading.amount,
            self._low_warning,
            max(0, int(reading.amount // self._cost)),
        )

    async def _once_an_hour(self, notice: str) -> bool:
        """Whether to give a notice now: once an hour across every process sharing the database."""
        if self._notices is None:
            return True
        return await self._notices.claim_notice(notice, self._wall_clock(), NOTICE_INTERVAL_SECONDS)
