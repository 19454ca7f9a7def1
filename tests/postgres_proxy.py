"""A relay on 127.0.0.1 in front of the test server that breaks the bot's connections at a chosen statement, as a
network fault or a restart of the server would, so that the store's handling of each moment can be tested.

It reads the statements' text as the client sends it (the test server speaks without TLS), so a rule is armed just
before the call it is about, on a store whose other work is done."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

# The server's ReadyForQuery after a statement outside a transaction: its answer to a COMMIT is complete.
_READY_IDLE = b"Z\x00\x00\x00\x05I"
_CHUNK = 65536


class Cut(enum.Enum):
    # The statement never reaches the server; its connection is closed (inside a transaction: nothing is kept).
    BEFORE = "before"
    # The statement runs, and its connection is closed before the answer comes back (a COMMIT: it was kept, but the
    # client cannot know).
    LOSE_ANSWER = "lose answer"
    # The statement runs and its answer comes back; then every connection is closed and no new one is accepted,
    # as when the server stops right after.
    DOWN_AFTER = "down after"


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    # What to do with the server's next complete answer, once the statement of a rule went through.
    pending: Cut | None = None
    answer: bytearray = field(default_factory=bytearray)

    def close(self) -> None:
        for writer in (self.client, self.server):
            writer.close()


class PostgresProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._rule: tuple[bytes, Cut] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.cuts = 0

    def url(self, url: str) -> str:
        """`url` (a database on the test server) reached through this relay, without TLS."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query="sslmode=disable"))

    def cut_at(self, statement: bytes, how: Cut) -> None:
        """Break the connection that next sends a statement containing `statement`, once."""
        self._rule = (statement, how)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._go_down()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        self._links.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        link = _Link(client_writer, server_writer)
        self._links.add(link)
        for pump in (self._from_client(link, client_reader), self._from_server(link, server_reader)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _from_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                rule = self._rule
                if rule is not None and rule[0] in data:
                    self._rule = None
                    self.cuts += 1
                    if rule[1] is Cut.BEFORE:
                        break
                    link.pending = rule[1]
                link.server.write(data)
                await link.server.drain()
        link.close()

    async def _from_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if link.pending is None:
                    link.client.write(data)
                    await link.client.drain()
                    continue
                link.answer += data
                if not link.answer.endswith(_READY_IDLE):
                    continue  # the rest of the answer is on its way
                if link.pending is Cut.DOWN_AFTER:
                    link.client.write(bytes(link.answer))
                    await link.client.drain()
                    self._go_down()
                break
        link.close()


@asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[PostgresProxy, str]]:
    """A relay to the database at `url`, and the URL that reaches it through the relay."""
    parts = urlsplit(url)
    proxy = PostgresProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy, proxy.url(url)
    finally:
        await proxy.stop()
