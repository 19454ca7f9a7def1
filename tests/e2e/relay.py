"""A loopback port that refuses connections until it is opened, then forwards each one to a target port.

It stands for a network cut: the bot is pointed at it while it refuses (as when Discord can't be reached), and the
test opens it when the network "comes back". The socket is bound from the start but not listening, so the port is
taken (nobody else can get it) and every connection to it is refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class Relay:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, sock=self._socket)

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            client_writer.close()
            return
        pipes = {
            asyncio.create_task(_pipe(client_reader, target_writer)),
            asyncio.create_task(_pipe(target_reader, client_writer)),
        }
        self._pipes |= pipes
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        for writer in (client_writer, target_writer):
            writer.close()
        self._pipes -= pipes

    async def close(self) -> None:
        for pipe in list(self._pipes):
            pipe.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._socket.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
