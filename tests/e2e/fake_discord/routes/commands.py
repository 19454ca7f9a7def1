"""REST: application commands (global and per guild) and what tests read of them."""

# Waiting helpers take explicit ``timeout`` parameters: tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import time
from collections.abc import Mapping

from aiohttp import web

from ..constants import Payload
from ..core import FakeCore
from ..plumbing import (
    MISSING_ACCESS,
    UNKNOWN_COMMAND,
    GuildRef,
    HTTPError,
    Incoming,
    RouteSpec,
    form_error,
    json_response,
    no_content,
    snowflake,
)
from ..records import CommandSync


class CommandRoutes(FakeCore):
    """``/applications/{application_id}[/guilds/{guild_id}]/commands``."""

    # Inspection

    @property
    def sync_count(self) -> int:
        return len(self.command_syncs)

    def synced_commands(self, guild: GuildRef | None = None) -> list[Payload]:
        """The commands as stored after the bot's last sync (global, or of one guild)."""
        if guild is None:
            return list(self._global_commands.values())
        return list(self._guild_commands.get(self._guild(guild).id, {}).values())

    def command(self, name: str, guild: GuildRef | None = None) -> Payload:
        """A synced chat-input command by name: the guild's own first, then the global one."""
        scopes: list[dict[int, Payload]] = []
        if guild is not None:
            scopes.append(self._guild_commands.get(self._guild(guild).id, {}))
        scopes.append(self._global_commands)
        for scope in scopes:
            for command in scope.values():
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        known = sorted({c["name"] for scope in scopes for c in scope.values()})
        raise LookupError(f"/{name} has not been synced (synced: {known or 'nothing'})")

    async def wait_for_commands(
        self, *names: str, guild: GuildRef | None = None, timeout: float = 10.0
    ) -> list[Payload]:
        """Wait until the bot has synced commands with these names (globally, or to ``guild``)."""

        def done() -> bool:
            try:
                for name in names:
                    self.command(name, guild)
            except LookupError:
                return False
            return True

        await self._wait_state(done, timeout, lambda: f"commands {names} were not synced")
        return [self.command(name, guild) for name in names]

    # Routes

    def _command_routes(self) -> list[RouteSpec]:
        table: list[RouteSpec] = []
        for scope in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            table += [
                ("GET", scope + "/commands", self._list_commands, True),
                ("PUT", scope + "/commands", self._put_commands, True),
                ("POST", scope + "/commands", self._upsert_command, True),
                ("GET", scope + "/commands/{command_id}", self._get_command, True),
                ("PATCH", scope + "/commands/{command_id}", self._patch_command, True),
                ("DELETE", scope + "/commands/{command_id}", self._delete_command, True),
            ]
        return table

    def _command_scope(self, params: Mapping[str, str]) -> tuple[int | None, dict[int, Payload]]:
        if snowflake(params["application_id"]) != self.application_id:
            raise HTTPError(*MISSING_ACCESS)
        if "guild_id" not in params:
            return None, self._global_commands
        guild_id = snowflake(params["guild_id"])
        try:
            self.world.guild(guild_id)
        except KeyError:
            raise HTTPError(*MISSING_ACCESS) from None
        return guild_id, self._guild_commands.setdefault(guild_id, {})

    def _store_command(self, guild_id: int | None, scope: Mapping[int, Payload], body: Payload) -> Payload:
        name = body.get("name")
        ctype = int(body.get("type") or 1)
        if not isinstance(name, str) or not name:
            raise form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
        # Discord keeps a command's id when an overwrite names an existing command.
        existing = next((c for c in scope.values() if c["name"] == name and c.get("type", 1) == ctype), None)
        command: Payload = {
            "id": existing["id"] if existing else str(self.new_snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.new_snowflake()),
            "default_member_permissions": None,
            "type": ctype,
            "name": name,
            "name_localizations": None,
            "description": body.get("description", ""),
            "description_localizations": None,
            "dm_permission": True,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
        }
        command.update({k: v for k, v in body.items() if k not in ("id", "application_id", "version")})
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
            command.pop("dm_permission", None)
        return command

    async def _list_commands(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        _, scope = self._command_scope(params)
        return json_response(list(scope.values()))

    async def _put_commands(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild_id, scope = self._command_scope(params)
        body = incoming.json if incoming.json is not None else []
        if not isinstance(body, list):
            raise form_error("_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        stored = [self._store_command(guild_id, scope, item) for item in body]
        scope.clear()
        for command in stored:
            scope[int(command["id"])] = command
        self.command_syncs.append(CommandSync(guild_id, tuple(c["name"] for c in stored), time.monotonic()))
        self._notify_state()
        return json_response(stored)

    async def _upsert_command(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        guild_id, scope = self._command_scope(params)
        command = self._store_command(guild_id, scope, incoming.body())
        created = int(command["id"]) not in scope
        scope[int(command["id"])] = command
        self._notify_state()
        return json_response(command, 201 if created else 200)

    def _find_command(self, params: Mapping[str, str]) -> tuple[dict[int, Payload], int]:
        _, scope = self._command_scope(params)
        command_id = snowflake(params["command_id"])
        if command_id not in scope:
            raise HTTPError(*UNKNOWN_COMMAND)
        return scope, command_id

    async def _get_command(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        scope, command_id = self._find_command(params)
        return json_response(scope[command_id])

    async def _patch_command(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        scope, command_id = self._find_command(params)
        scope[command_id] = {**scope[command_id], **incoming.body(), "version": str(self.new_snowflake())}
        self._notify_state()
        return json_response(scope[command_id])

    async def _delete_command(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        scope, command_id = self._find_command(params)
        del scope[command_id]
        self._notify_state()
        return no_content()
