"""Finding creates whose answer never came: the account's list of generations, matched by prompt and time.

A create that may have been accepted is never resent (it would be paid twice). Instead its row waits in the
`checking` state while the account's list is read now and then; a listed generation with the same prompt, an id no
row follows yet and a creation time that fits the moment the request left is adopted by that row, which the
tracker then follows and announces like any other. A row never found within the window was not received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .api_client import VideoApiError
from .models import ApiGeneration, Generation, ListedGeneration, State
from .storage import GenerationStore

log = logging.getLogger(__name__)

# A listed generation fits a request made between this long before (clocks differ) and this long after the row was
# written (the create may wait up to its timeout before the API takes it).
EARLIEST_FIT_SECONDS = 120.0
LATEST_FIT_SECONDS = 300.0

# A read of the list this long after the outcome became unknown (or half the window, if shorter) is needed to say
# that a request never arrived.
PROOF_MARGIN_SECONDS = 300.0

NOT_RECEIVED_REASON = (
    "The video service did not receive this request: it never appeared among the account's videos. "
    "Nothing was made or charged, so trying again is safe."
)
UNCONFIRMED_REASON = (
    "The bot could not reach the video service's records to confirm this request. It was not sent again, to avoid "
    "paying twice; if the video arrives, `/status` will show it."
)


@dataclass(frozen=True)
class CheckSchedule:
    """When an unknown create is looked for: soon after, then less and less often, for a bounded time."""

    first_check_seconds: float = 30.0
    window_seconds: float = 3600.0
    max_interval_seconds: float = 900.0

    def start(self, now: float) -> tuple[float, float]:
        """The first look and the end of the look-out for an outcome that became unknown at `now`."""
        return now + self.first_check_seconds, now + self.window_seconds

    def next_check(self, attempts: int, now: float, until: float) -> float:
        interval = min(self.max_interval_seconds, self.first_check_seconds * 2.0 ** min(attempts, 16))
        return min(now + interval, until)

    @property
    def proof_after_seconds(self) -> float:
        """How long after an outcome became unknown a read of the list must be to show that the request never
        arrived: the API may still be making it (a create cut off by our timeout) or not list it yet."""
        return max(self.first_check_seconds, min(PROOF_MARGIN_SECONDS, self.window_seconds / 2))

    @property
    def window_minutes(self) -> int:
        return max(1, round(self.window_seconds / 60))


DEFAULT_SCHEDULE = CheckSchedule()


class GenerationFinder(Protocol):
    """What reconciliation needs of the video API."""

    async def list_generations(self) -> list[ListedGeneration]: ...

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]: ...


@dataclass(frozen=True)
class _Candidate:
    id: str
    created_at: float | None


def _distance(request: Generation, candidate: _Candidate) -> float | None:
    """How far the candidate's creation is from the moment the request left, or None if it cannot be that one."""
    if candidate.created_at is None:
        # Without a creation time only the prompt and the order can tell; they still decide.
        return 0.0
    offset = candidate.created_at - request.sent_at
    if not -EARLIEST_FIT_SECONDS <= offset <= LATEST_FIT_SECONDS:
        return None
    return abs(offset)


def match_in_order(requests: Sequence[Generation], candidates: Sequence[_Candidate]) -> list[tuple[Generation, str]]:
    """Pair requests (in the order they were sent) with candidates (in the order they were made), never crossing:
    as many pairs as fit, then the closest in time. Each candidate goes to one request at most."""
    rows = sorted(requests, key=lambda r: (r.sent_at, r.id))
    made = sorted(candidates, key=lambda c: (c.created_at is None, c.created_at or 0.0, c.id))
    # best[i][j]: (pairs, -total distance) achievable with rows[i:] and made[j:].
    best = [[(0, 0.0)] * (len(made) + 1) for _ in range(len(rows) + 1)]
    for i in range(len(rows) - 1, -1, -1):
        for j in range(len(made) - 1, -1, -1):
            options = [best[i + 1][j], best[i][j + 1]]
            distance = _distance(rows[i], made[j])
            if distance is not None:
                count, score = best[i + 1][j + 1]
                options.append((count + 1, score - distance))
            best[i][j] = max(options)
    pairs: list[tuple[Generation, str]] = []
    i = j = 0
    while i < len(rows) and j < len(made):
        distance = _distance(rows[i], made[j])
        if distance is not None:
            follow = best[i + 1][j + 1]
            if best[i][j] == (follow[0] + 1, follow[1] - distance):
                pairs.append((rows[i], made[j].id))
                i, j = i + 1, j + 1
                continue
        if best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return pairs


class Reconciler:
    """Looks for unknown creates in the account's list, on each row's schedule, and adopts what it finds."""

    def __init__(
        self,
        store: GenerationStore,
        finder: GenerationFinder,
        *,
        schedule: CheckSchedule = DEFAULT_SCHEDULE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._finder = finder
        self._schedule = schedule
        self._clock = clock

    async def run_once(self) -> None:
        """Read the list once if any row is due, and settle every row that is waiting."""
        now = self._clock()
        if not any((row.next_check_at or 0.0) <= now for row in await self._store.checking()):
            return
        try:
            listed = await self._finder.list_generations()
        except VideoApiError as error:
            log.warning("Reading the account's list of generations failed: %s; looking again later", error)
            for row in await self._store.checking():
                await self._not_found(row, now, absent=None)
            return
        # Read after the list, in this order: a create that left 'submitting' meanwhile is then either still
        # settling or among the waiting rows, so its generation is never taken for another request's.
        settling = await self._store.submitting_prompts()
        waiting = await self._store.checking()
        tracked = await self._store.tracked_api_ids([entry.id for entry in listed])
        for prompt, rows in _by_prompt(waiting).items():
            if prompt in settling:
                # A create with this prompt is still waiting for its answer: its generation may already be listed.
                continue
            ids = [entry.id for entry in listed if entry.prompt.strip() == prompt and entry.id not in tracked]
            await self._settle(rows, ids, now)

    async def _settle(self, rows: list[Generation], candidate_ids: list[str], now: float) -> None:
        try:
            found = await self._finder.fetch_many(candidate_ids) if candidate_ids else {}
        except VideoApiError as error:
            log.warning("Looking up %d listed candidates failed: %s; looking again later", len(candidate_ids), error)
            for row in rows:
                await self._not_found(row, now, absent=False)
            return
        # A listed id the look-up did not return can't be placed in time: it is left for a later look.
        candidates = [_Candidate(i, found[i].created_at) for i in candidate_ids if i in found]
        adopted = {row.id: api_id for row, api_id in match_in_order(rows, candidates)}
        for row in rows:
            api_id = adopted.get(row.id)
            if api_id is None:
                await self._not_found(row, now, absent=True)
                continue
            fresh = found.get(api_id) or ApiGeneration(id=api_id, state="pending")
            log.info(
                "Row %d adopted generation %s from the account's list (made %s after the request left)",
                row.id,
                api_id,
                "?" if fresh.created_at is None else f"{fresh.created_at - row.sent_at:.0f} s",
            )
            await self._store.adopt(row.id, fresh, now)

    async def _not_found(self, row: Generation, now: float, *, absent: bool | None) -> None:
        """No generation adopted for `row` this time. `absent`: the list was read and did not show it (True), showed
        candidates that could not be checked (False), or could not be read (None)."""
        if row.check_until is not None and now >= row.check_until:
            # Not received only when a late enough read of the list showed it absent; otherwise nobody can say.
            last_read = now if absent is True else row.list_read_at if absent is None else None
            proof_after = (row.checking_since or row.created_at) + self._schedule.proof_after_seconds
            not_received = last_read is not None and last_read >= proof_after
            state, reason = (
                (State.NOT_RECEIVED, NOT_RECEIVED_REASON) if not_received else (State.UNCONFIRMED, UNCONFIRMED_REASON)
            )
            log.warning("Row %d was not found in the account's list within its window: %s", row.id, state.value)
            await self._store.finish_check(row.id, state, reason, now)
            return
        if (row.next_check_at or 0.0) > now:
            return
        until = row.check_until if row.check_until is not None else now
        next_check = self._schedule.next_check(row.check_attempts + 1, now, until)
        await self._store.note_check(row.id, next_check_at=next_check, list_read_at=now if absent else None, now=now)


def _by_prompt(rows: Sequence[Generation]) -> dict[str, list[Generation]]:
    groups: dict[str, list[Generation]] = {}
    for row in rows:
        groups.setdefault(row.prompt.strip(), []).append(row)
    return groups
