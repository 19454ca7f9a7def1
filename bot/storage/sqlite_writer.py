"""The database's one writing connection: writes queue up and run in its thread a batch at a time.

A write that hops to the connection's thread and back for each statement holds up every write queued behind it for
as many turns of the event loop, and a busy loop turns slowly: with a hundred commands a second, the writes of
commands, look-ups and announcements queued for seconds. Here each write is a function run whole in the thread,
and all the writes waiting when the thread frees up go in one hop.

The hop is also one transaction (group commit): each write runs inside a savepoint of its own, so a write that
fails is undone alone and its caller hears why (or, if it cannot be undone alone, the whole batch is rolled back
and every caller hears it), and the batch commits once. A burst of two hundred commands then waits for a few syncs
to disk rather than two hundred. No caller hears that its write succeeded before the commit that holds it is done;
if that commit fails, every write of the batch is reported failed, and none of it was kept.
Commands' writes go first; a batch always takes some of the background's (look-ups, announcements), so that
neither starves the other.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]

# Writes taken per hop to the thread: enough to drain a burst of commands, few enough to keep each hop short.
URGENT_PER_BATCH = 64
BACKGROUND_PER_BATCH = 16


class SqliteWriter:
    """One sqlite3 connection in a thread of its own; `run` queues a function of the connection and returns its
    result (or raises its error) once it ran. A write that was queued runs even if its caller is cancelled."""

    def __init__(self, path: Path, pragmas: Sequence[str]) -> None:
        self._path = path
        self._pragmas = tuple(pragmas)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None
        self._urgent: collections.deque[tuple[Work, asyncio.Future[Any]]] = collections.deque()
        self._background: collections.deque[tuple[Work, asyncio.Future[Any]]] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._connect)

    def _connect(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, timeout=5.0)
        connection.row_factory = sqlite3.Row
        for pragma in self._pragmas:
            connection.execute(pragma)
        self._connection = connection

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=True)

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def run(self, work: Callable[[sqlite3.Connection], T], *, background: bool = False) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        (self._background if background else self._urgent).append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="sqlite-writes")
        # Shielded: a cancelled caller must not leave its write half-known; the write runs and is recorded.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._urgent or self._background:
            batch = _take(self._urgent, URGENT_PER_BATCH) + _take(self._background, BACKGROUND_PER_BATCH)
            try:
                await loop.run_in_executor(self._thread, self._run_batch, loop, batch)
            except Exception as error:  # the thread itself failed (closed connection): so did every write left
                for _, future in batch:
                    loop.call_soon(_settle, future, False, error)

    def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        connection = self._connection
        if connection is None:
            raise sqlite3.ProgrammingError("the database is closed")
        if connection.in_transaction:
            # A transaction a failed rollback left open would swallow this batch without committing it.
            _roll_back(connection)
        for (_, future), outcome in zip(batch, _run_in_one_transaction(connection, batch), strict=True):
            loop.call_soon_threadsafe(_settle, future, *outcome)


def _run_in_one_transaction(
    connection: sqlite3.Connection, batch: list[tuple[Work, asyncio.Future[Any]]]
) -> list[tuple[bool, Any]]:
    """Each write's outcome, once the transaction holding them all is committed (or known lost)."""
    # Deferred: this connection is the bot's only writer, so its first write never waits for another's lock, and
    # a batch of writes that change nothing (or a database made read-only) writes nothing at all.
    connection.execute("BEGIN")
    outcomes: list[tuple[bool, Any]] = []
    for index, (work, _) in enumerate(batch):
        try:
            succeeded, value = _run_in_savepoint(connection, work)
        except _NotUndone as failed:
            # The failed write's changes are still in the transaction: committing the others would keep them too.
            _roll_back(connection)
            lost = sqlite3.OperationalError(f"the transaction was rolled back: {failed.__cause__}")
            return [(False, failed.error if n == index else lost) for n in range(len(batch))]
        if not connection.in_transaction:
            # SQLite rolled the whole transaction back by itself (a full disk, an I/O error): the writes before
            # this one are gone too, so none of the batch succeeded.
            error = value if not succeeded else sqlite3.OperationalError("the transaction was rolled back")
            return [(False, error)] * len(batch)
        outcomes.append((succeeded, value))
    try:
        connection.execute("COMMIT")
    except BaseException as error:  # nothing of the batch was kept: every caller hears it
        _roll_back(connection)
        return [(False, error)] * len(batch)
    return outcomes


class _NotUndone(Exception):
    """A write failed and its savepoint could not be rolled back: its changes may be in the transaction still."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _run_in_savepoint(connection: sqlite3.Connection, work: Work) -> tuple[bool, Any]:
    """Run one caller's write inside the batch's transaction; a failed write is undone alone (or, when it cannot
    be while the transaction stays open, raises _NotUndone)."""
    connection.execute("SAVEPOINT write")
    try:
        result = work(connection)
    except BaseException as error:  # handed to its caller, whatever it is
        try:
            connection.execute("ROLLBACK TO write")
            connection.execute("RELEASE write")
        except sqlite3.Error as undo_error:
            if connection.in_transaction:
                raise _NotUndone(error) from undo_error
            # SQLite rolled the whole transaction back by itself: the batch sees it and fails whole.
        return False, error
    connection.execute("RELEASE write")
    return True, result


def _roll_back(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        # A full disk may refuse even the rollback; SQLite then rolls back by itself.
        with contextlib.suppress(sqlite3.OperationalError):
            connection.execute("ROLLBACK")


def _settle(future: asyncio.Future[Any], succeeded: bool, value: Any) -> None:
    if future.done():
        return
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)


def _take(queue: collections.deque[tuple[Work, asyncio.Future[Any]]], most: int) -> list[tuple[Work, Any]]:
    taken: list[tuple[Work, Any]] = []
    while queue and len(taken) < most:
        taken.append(queue.popleft())
    return taken
