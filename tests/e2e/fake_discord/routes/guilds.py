"""REST: users, the application, guilds, their channels, roles and members."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ..core import FakeCore
from ..plumbing import (
    UNKNOWN_GUILD,
    UNKNOWN_MEMBER,
    UNKNOWN_USER,
    HTTPError,
    Incoming,
    RouteSpec,
    json_response,
    snowflake,
)
from ..world import FakeGuild


class GuildRoutes(FakeCore):
    """``/users``, ``/applications/@me``, ``/guilds/...`` and ``GET /channels/{channel_id}``."""

    def _guild_routes(self) -> list[RouteSpec]:
        return [
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._open_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/guilds/{guild_id}", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, True),
            ("GET", "/guilds/{guild_id}/members", self._list_members, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
        ]

    async def _get_me(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        data = self.world.bot.payload()
        data.update({"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})
        return json_response(data)

    async def _get_user(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        try:
            return json_response(self.world.user(snowflake(params["user_id"])).payload())
        except KeyError:
            raise HTTPError(*UNKNOWN_USER) from None

    async def _open_dm(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        body = incoming.body()
        try:
            user = self.world.user(snowflake(body.get("recipient_id")))
        except KeyError:
            raise HTTPError(400, "Invalid Recipient(s)", 50033) from None
        return json_response(self._channel_payload(self._dm_channel(user)))

    async def _get_application(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response(self._application_payload())

    def _guild_for(self, params: Mapping[str, str]) -> FakeGuild:
        try:
            return self.world.guild(snowflake(params["guild_id"]))
        except KeyError:
            raise HTTPError(*UNKNOWN_GUILD) from None

    async def _get_guild(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response(self._guild_payload(self._guild_for(params), full=False))

    async def _get_guild_channels(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response([self._channel_payload(c) for c in self._guild_for(params).channels])

    async def _get_guild_roles(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response([r.payload() for r in self._guild_for(params).roles])

    async def _list_members(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild = self._guild_for(params)
        limit = int(incoming.query.get("limit", "1"))
        after = int(incoming.query.get("after", "0"))
        members = sorted((m for m in guild.members if m.user_id > after), key=lambda m: m.user_id)[:limit]
        return json_response([self._member_payload(guild, m) for m in members])

    async def _get_member(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild = self._guild_for(params)
        member = guild.member(snowflake(params["user_id"]))
        if member is None:
            raise HTTPError(*UNKNOWN_MEMBER)
        return json_response(self._member_payload(guild, member))

    async def _get_channel(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        return json_response(self._channel_payload(self._channel_for(params)))
