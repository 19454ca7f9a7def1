"""The fake Discord server, composed of its parts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from .constants import API_PREFIX
from .members import MemberActions
from .plumbing import RouteSpec
from .rest import RestServer
from .routes.guilds import GuildRoutes
from .routes.interactions import InteractionRoutes
from .routes.messages import MessageRoutes


class FakeDiscord(MemberActions, InteractionRoutes, MessageRoutes, GuildRoutes, RestServer):
    """The fake server. Create it with :func:`run_fake_discord`."""

    def __repr__(self) -> str:
        return f"<FakeDiscord {self.base_url} requests={len(self.requests)} messages={len(self.message_log)}>"

    def _route_table(self) -> list[RouteSpec]:
        return [
            *self._guild_routes(),
            *self._gateway_routes(),
            *self._command_routes(),
            *self._interaction_routes(),
            *self._message_routes(),
        ]

    # Lifecycle

    async def start(self) -> None:
        # Uploads (videos) are bigger than aiohttp's 1 MiB default; keep room above the upload limit so
        # that the fake, not aiohttp, answers oversized uploads with Discord's 413.
        app = web.Application(client_max_size=self.upload_limit * 4 + 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_entry)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment_entry)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest_entry)
        app.router.add_route("*", "/{tail:.*}", self._rest_entry)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        self._stopping.set()
        for connection in list(self._connections):
            with contextlib.suppress(Exception):
                await self._close(connection, 1001, "fake Discord shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for _, future in self._message_waiters:
            future.cancel()
        for _, request_future in self._request_waiters:
            request_future.cancel()
        for handle in self.interactions.values():
            handle._callback_future.cancel()


@asynccontextmanager
async def run_fake_discord(**options: Any) -> AsyncIterator[FakeDiscord]:
    """Start a :class:`FakeDiscord` on a free loopback port; stop it (and its sockets) on exit.

    ``options`` are :class:`FakeDiscord`'s keyword arguments (``world=``, ``ack_deadline=``...).
    """
    fake = FakeDiscord(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
