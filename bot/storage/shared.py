"""What both backends share that is not SQL: a row as a Generation, the queue's figures as Usage, and how write
trouble is logged."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..models import Delivery, Generation, Kind, State
from ..quota import Usage

log = logging.getLogger(__name__)


class Row(Protocol):
    """A database row read by column name: sqlite3.Row and asyncpg's Record both are."""

    def __getitem__(self, key: str, /) -> Any: ...


# How often the log says that the database cannot be written, while it cannot.
WRITE_TROUBLE_LOG_INTERVAL = 60.0


def generation_from_row(row: Row) -> Generation:
    """A row of the generations table (every column of the backend's column list) as a Generation."""
    return Generation(
        id=row["id"],
        api_id=row["api_id"],
        parent_api_id=row["parent_api_id"],
        kind=Kind(row["kind"]),
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        requester_id=row["requester_id"],
        prompt=row["prompt"],
        aspect_ratio=row["aspect_ratio"],
        expand_prompt=bool(row["expand_prompt"]),
        state=State(row["state"]),
        api_state=row["api_state"],
        video_url=row["video_url"],
        thumbnail_url=row["thumbnail_url"],
        last_frame_url=row["last_frame_url"],
        failure_reason=row["failure_reason"],
        status_message_id=row["status_message_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        announce_claimed_at=row["announce_claimed_at"],
        announced_at=row["announced_at"],
        announce_attempts=row["announce_attempts"],
        delivery=Delivery(row["delivery"]) if row["delivery"] else None,
        model=row["model"],
        extras=json.loads(row["extras_json"]),
        checking_since=row["checking_since"],
        next_check_at=row["next_check_at"],
        check_until=row["check_until"],
        list_read_at=row["list_read_at"],
        check_attempts=row["check_attempts"],
        notice_sent_at=row["notice_sent_at"],
        credits_used=row["credits_used"],
        usd_spent=row["usd_spent"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        queue_attempts=row["queue_attempts"],
        not_before=row["not_before"],
        limits_exempt=bool(row["limits_exempt"]),
        private=bool(row["private"]),
        upload_limit=row["upload_limit"],
    )


def queue_usage(usage: Usage, row: Sequence[int] | None) -> Usage:
    """The usage with what the running caps and the queue look at."""
    everyone, server, user_queued, ready, server_ready = row if row is not None else (0,) * 5
    return replace(
        usage,
        everyone_running=everyone,
        server_running=server,
        user_queued=user_queued,
        waiting_ready=ready,
        server_waiting_ready=server_ready,
    )


class WriteTrouble:
    """Names the cause of failing writes in the log once a minute, rather than a traceback per command."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failing_since: float | None = None
        self._logged_at: float | None = None

    def failed(self, error: BaseException) -> None:
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if self._logged_at is None or now - self._logged_at >= WRITE_TROUBLE_LOG_INTERVAL:
            self._logged_at = now
            log.error(
                "The database cannot be written (%s): new videos are refused until it can, and accepted ones are "
                "kept and written as soon as it works again",
                error,
            )

    def succeeded(self) -> None:
        if self._failing_since is not None:
            log.warning("The database can be written again, after %.0f s", self._clock() - self._failing_since)
            self._failing_since = self._logged_at = None


def new_process_id() -> str:
    """A name for this process in the rows it holds: its host and pid, for the operator, and a random part, since
    pids are reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
