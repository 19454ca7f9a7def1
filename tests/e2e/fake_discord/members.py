"""Driving the bot like members would: commands, autocomplete, buttons, modals, messages, uploads."""

from __future__ import annotations

import contextlib
import mimetypes
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .constants import (
    ALL_PERMISSIONS,
    TEXT_INPUT_MAX_LENGTH,
    CallbackType,
    ComponentType,
    InteractionType,
    MessageKind,
    OptionType,
    Payload,
)
from .interaction_handle import InteractionHandle
from .messages import MessageStore
from .plumbing import ChannelRef, GuildRef, MessageRef, UserRef
from .records import CommandUnavailableError, FakeAttachment, FakeMessage, RawValue, walk_components
from .routes.commands import CommandRoutes
from .world import FakeChannel, FakeGuild, FakeRole, FakeUser, compute_permissions


class MemberActions(CommandRoutes, MessageStore):
    """What members do, dispatched to the bot as Discord would."""

    def make_attachment(
        self,
        filename: str = "frame.png",
        content: bytes = b"\x89PNG\r\n\x1a\n fake image",
        *,
        content_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> FakeAttachment:
        """An uploaded file for an attachment option; its URL serves ``content`` from the fake."""
        attachment_id = self.new_snowflake()
        ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self._attachment_blobs[attachment_id] = (filename, ctype, content)
        if width is None and ctype.startswith("image/"):
            width, height = 1024, 768
        return FakeAttachment(
            id=attachment_id,
            filename=filename,
            content_type=ctype,
            size=len(content),
            url=self._attachment_url(attachment_id, filename),
            width=width,
            height=height,
        )

    async def send_interaction(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        channel: ChannelRef | None = None,
        dm: bool = False,
        raw_options: list[Payload] | None = None,
        locale: str = "en-US",
        enforce_client_rules: bool = True,
    ) -> InteractionHandle:
        """Dispatch an application command (type 2) as ``user`` would invoke it.

        command: the command's name, with subcommands separated by spaces ("video generate").
        options: leaf option values by name; their types come from the synced command (string, integer,
            number and boolean values are sent exactly as given, so values outside the declared choices or
            bounds can be sent; users/channels/roles may be given as objects or ids, attachments as
            :class:`FakeAttachment` from :meth:`make_attachment`; wrap a value in :class:`RawValue` to send
            it unresolved).
        raw_options: replaces ``data.options`` entirely (nothing is resolved).
        dm: invoke in the bot's DM with ``user`` (no guild, ``user`` instead of ``member``, context 1).
        enforce_client_rules: refuse (CommandUnavailableError / ValueError) what Discord's client would not
            let a member send: commands not available in that context, missing default_member_permissions,
            missing required options.
        """
        return await self._send_command(
            InteractionType.APPLICATION_COMMAND,
            command,
            options or {},
            user=user,
            guild=guild,
            channel=channel,
            dm=dm,
            raw_options=raw_options,
            locale=locale,
            enforce_client_rules=enforce_client_rules,
            focused=None,
        )

    async def send_autocomplete(
        self,
        command: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        channel: ChannelRef | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Dispatch an autocomplete interaction (type 4) while the member types into option ``focused``."""
        return await self._send_command(
            InteractionType.AUTOCOMPLETE,
            command,
            options,
            user=user,
            guild=guild,
            channel=channel,
            dm=dm,
            raw_options=None,
            locale=locale,
            enforce_client_rules=False,  # partially filled forms are the point of autocomplete
            focused=focused,
        )

    async def send_component(
        self,
        message: MessageRef,
        custom_id: str,
        *,
        user: UserRef | None = None,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
        enforce_client_rules: bool = True,
    ) -> InteractionHandle:
        """Dispatch a component interaction (type 3): ``user`` clicks button ``custom_id`` on ``message``.

        With ``enforce_client_rules`` the component must exist on the message and not be disabled.
        """
        target = message if isinstance(message, FakeMessage) else self.get_message(message)
        if target is None:
            raise LookupError(f"no message {message!r}")
        target = self.get_message(target.id) or target
        if enforce_client_rules:
            found = [c for c in walk_components(target.components) if c.get("custom_id") == custom_id]
            if not found:
                raise CommandUnavailableError(f"message {target.id} has no component {custom_id!r}")
            if found[0].get("disabled"):
                raise CommandUnavailableError(f"component {custom_id!r} is disabled")
        member_user = self._user(user) if user is not None else self._default_user()
        channel = self._channel_by_id(target.channel_id)
        guild = None if channel.guild_id is None else self.world.guild(channel.guild_id)
        data: Payload = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        payload, handle = self._interaction_envelope(
            InteractionType.MESSAGE_COMPONENT,
            member_user,
            guild,
            channel,
            locale,
            command_name=None,
            component_message_id=target.id,
        )
        payload["data"] = data
        payload["message"] = dict(target.payload)
        return await self._dispatch_interaction(payload, handle)

    async def send_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        channel: ChannelRef | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Dispatch a modal submission (type 5) with text inputs ``values`` (custom_id -> value)."""
        member_user = self._user(user) if user is not None else self._default_user()
        target_guild, target_channel = self._place(member_user, guild, channel, dm)
        payload, handle = self._interaction_envelope(
            InteractionType.MODAL_SUBMIT, member_user, target_guild, target_channel, locale, command_name=None
        )
        payload["data"] = {
            "custom_id": custom_id,
            "components": [
                {"type": 1, "id": index + 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
                for index, (key, value) in enumerate(values.items())
            ],
        }
        return await self._dispatch_interaction(payload, handle)

    async def submit_form(
        self, opened: InteractionHandle, values: Mapping[str, str], *, locale: str = "en-US"
    ) -> InteractionHandle:
        """The member a form was shown to (a MODAL callback to ``opened``) fills it in and sends it (type 5).

        As Discord's client allows: only that form's own text inputs, the required ones filled, each within its
        lengths (ValueError otherwise). A form opened from a button carries that button's message, as in Discord.
        """
        callback = opened.callback
        if callback is None or callback.type != CallbackType.MODAL or callback.data is None:
            raise CommandUnavailableError(f"no form was opened in answer to {opened!r}")
        form = callback.data
        inputs = [c for c in walk_components(form.get("components") or []) if c.get("type") == ComponentType.TEXT_INPUT]
        _check_form_values(inputs, values)
        user = self.world.user(opened.user_id)
        channel = self._channel_by_id(opened.channel_id)
        guild = None if opened.guild_id is None else self.world.guild(opened.guild_id)
        payload, handle = self._interaction_envelope(
            InteractionType.MODAL_SUBMIT,
            user,
            guild,
            channel,
            locale,
            command_name=None,
            component_message_id=opened.component_message_id,
        )
        payload["data"] = {
            "custom_id": form.get("custom_id"),
            "components": [
                {
                    "type": 1,
                    "id": index + 1,
                    "components": [
                        {
                            "type": ComponentType.TEXT_INPUT,
                            "custom_id": field["custom_id"],
                            "value": values.get(field["custom_id"], ""),
                        }
                    ],
                }
                for index, field in enumerate(inputs)
            ],
        }
        if opened.component_message_id is not None:
            message = self.get_message(opened.component_message_id)
            if message is not None:
                payload["message"] = dict(message.payload)
        return await self._dispatch_interaction(payload, handle)

    async def send_member_message(
        self,
        content: str,
        *,
        channel: ChannelRef | None = None,
        user: UserRef | None = None,
        guild: GuildRef | None = None,
        dm: bool = False,
    ) -> FakeMessage:
        """``user`` posts a message in ``channel`` (or, with ``dm``, in their DM with the bot): MESSAGE_CREATE.

        Without the MESSAGE_CONTENT intent the bot gets an empty ``content`` unless it is mentioned or it is a
        DM, as in Discord.
        """
        author = self._user(user) if user is not None else self._default_user()
        _, target = self._place(author, guild, channel, dm)
        payload = self._message_payload(target, author, {"content": content}, [], mtype=0)
        message = self._emit_new(payload, target, MessageKind.MEMBER, author_id=author.id, body={"content": content})
        for session in self._sessions_for(message.guild_id):
            event = self._gateway_message(message, session.intents, own=False)
            if event is not None:
                await self._dispatch(session, "MESSAGE_CREATE", event)
        return message

    # Building interactions

    def _interaction_envelope(
        self,
        interaction_type: int,
        user: FakeUser,
        guild: FakeGuild | None,
        channel: FakeChannel,
        locale: str,
        *,
        command_name: str | None,
        component_message_id: int | None = None,
    ) -> tuple[Payload, InteractionHandle]:
        interaction_id = self.new_snowflake()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: Payload = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.upload_limit,
            "app_permissions": str(self._bot_permissions_in(channel)),
            "channel_id": str(channel.id),
            "channel": self._channel_payload(channel, for_user=None),
        }
        if guild is not None:
            member = guild.member(user.id)
            if member is None:
                raise CommandUnavailableError(f"{user.username} is not a member of {guild.name}")
            member_payload = self._member_payload(guild, member)
            member_payload["permissions"] = str(compute_permissions(guild, user.id, channel))
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild_locale": guild.preferred_locale,
                    "guild": {"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                    "member": member_payload,
                    "authorizing_integration_owners": {"0": str(guild.id)},
                    "context": 0,
                }
            )
            payload["channel"]["permissions"] = str(compute_permissions(guild, user.id, channel))
        else:
            payload.update(
                {
                    "user": user.payload(),
                    # A bot DM is reachable through the guild install too; Discord reports the user install.
                    "authorizing_integration_owners": {"1": str(user.id)},
                    "context": 1,
                }
            )
        handle = InteractionHandle(
            self,
            interaction_id=interaction_id,
            token=token,
            interaction_type=interaction_type,
            payload=payload,
            command_name=command_name,
            user_id=user.id,
            guild_id=None if guild is None else guild.id,
            channel_id=channel.id,
            component_message_id=component_message_id,
        )
        return payload, handle

    async def _dispatch_interaction(self, payload: Payload, handle: InteractionHandle) -> InteractionHandle:
        session = self._ready_session(handle.guild_id)
        if session is None:
            raise RuntimeError(
                f"no session of the bot gets guild {handle.guild_id}'s events on the fake gateway "
                "(use wait_until_connected(), or wait_until_shards_connected() when sharded)"
            )
        handle.shard = session.shard_id
        # Registered before sending: the bot may answer before the send below returns.
        self.interactions[handle.id] = handle
        self._interactions_by_token[handle.token] = handle
        handle.dispatched_at = time.monotonic()
        await self._dispatch(session, "INTERACTION_CREATE", payload)
        return handle

    async def _send_command(
        self,
        interaction_type: int,
        command: str,
        options: Mapping[str, Any],
        *,
        user: UserRef | None,
        guild: GuildRef | None,
        channel: ChannelRef | None,
        dm: bool,
        raw_options: list[Payload] | None,
        locale: str,
        enforce_client_rules: bool,
        focused: str | None,
    ) -> InteractionHandle:
        member_user = self._user(user) if user is not None else self._default_user()
        target_guild, target_channel = self._place(member_user, guild, channel, dm)
        path = command.split()
        if not path:
            raise ValueError("empty command name")
        definition = self.command(path[0], target_guild) if target_guild else self.command(path[0])
        if target_guild is None and definition.get("guild_id"):
            raise CommandUnavailableError(f"/{path[0]} is a guild command; it cannot be used in DMs")
        if enforce_client_rules:
            self._check_visibility(definition, member_user, target_guild, target_channel)
        payload, handle = self._interaction_envelope(
            interaction_type, member_user, target_guild, target_channel, locale, command_name=command
        )
        resolved: Payload = {}
        if raw_options is not None:
            data_options: list[Payload] = raw_options
        else:
            declared, wrap = self._descend(definition, path)
            leaf = self._build_options(
                declared,
                options,
                resolved,
                target_guild,
                target_channel,
                focused=focused,
                require_all=enforce_client_rules,
            )
            data_options = wrap(leaf)
        data: Payload = {"id": str(definition["id"]), "name": definition["name"], "type": 1}
        if data_options:
            data["options"] = data_options
        if resolved:
            data["resolved"] = resolved
        if definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        payload["data"] = data
        return await self._dispatch_interaction(payload, handle)

    def _check_visibility(
        self, definition: Payload, user: FakeUser, guild: FakeGuild | None, channel: FakeChannel
    ) -> None:
        name = definition["name"]
        contexts = definition.get("contexts")
        if guild is None:
            if (contexts is not None and 1 not in contexts) or definition.get("dm_permission") is False:
                raise CommandUnavailableError(f"/{name} is not available in DMs")
            return
        if contexts is not None and 0 not in contexts:
            raise CommandUnavailableError(f"/{name} is not available in servers")
        required = definition.get("default_member_permissions")
        if required is not None:
            needed = int(required)
            have = compute_permissions(guild, user.id, channel)
            # "0" means administrators only; otherwise every listed bit is needed.
            if (needed == 0 and have != ALL_PERMISSIONS) or (have & needed) != needed:
                raise CommandUnavailableError(
                    f"{user.username} lacks default_member_permissions={needed} for /{name} in {guild.name}"
                )

    @staticmethod
    def _descend(
        definition: Payload, path: Sequence[str]
    ) -> tuple[list[Payload], Callable[[list[Payload]], list[Payload]]]:
        """The declared leaf options for ``path`` and a function wrapping leaf values in subcommand layers."""
        declared: list[Payload] = list(definition.get("options") or [])
        layers: list[tuple[int, str]] = []
        for name in path[1:]:
            found = next((o for o in declared if o.get("name") == name and o.get("type") in (1, 2)), None)
            if found is None:
                raise LookupError(f"/{definition['name']} has no subcommand {name!r}")
            layers.append((int(found["type"]), name))
            declared = list(found.get("options") or [])
        if any(o.get("type") in (1, 2) for o in declared):
            names = [o["name"] for o in declared if o.get("type") in (1, 2)]
            raise ValueError(f"/{' '.join(path)} needs a subcommand: one of {names}")

        def wrap(leaf: list[Payload]) -> list[Payload]:
            result = leaf
            for option_type, name in reversed(layers):
                layer: Payload = {"type": option_type, "name": name}
                if result or option_type == 1:
                    layer["options"] = result
                result = [layer]
            return result

        return declared, wrap

    def _build_options(
        self,
        declared: Sequence[Payload],
        values: Mapping[str, Any],
        resolved: Payload,
        guild: FakeGuild | None,
        channel: FakeChannel,
        *,
        focused: str | None,
        require_all: bool,
    ) -> list[Payload]:
        by_name = {o["name"]: o for o in declared}
        if require_all:
            missing = [o["name"] for o in declared if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"missing required options {missing} (pass enforce_client_rules=False to send anyway)")
        result: list[Payload] = []
        for name, value in values.items():
            option = by_name.get(name)
            if option is None:
                raise LookupError(f"no option {name!r}; declared: {sorted(by_name)} (use raw_options for anything)")
            option_type = int(option["type"])
            entry: Payload = {"name": name, "type": option_type}
            entry["value"] = self._option_value(option_type, value, resolved, guild, channel)
            if name == focused:
                entry["focused"] = True
            result.append(entry)
        return result

    def _option_value(
        self, option_type: int, value: Any, resolved: Payload, guild: FakeGuild | None, channel: FakeChannel
    ) -> Any:
        if isinstance(value, RawValue):
            return value.value
        if option_type in (OptionType.USER, OptionType.MENTIONABLE) and isinstance(value, FakeUser | int | str):
            if option_type == OptionType.MENTIONABLE and isinstance(value, int) and guild is not None:
                with contextlib.suppress(KeyError):
                    return self._option_value(OptionType.ROLE, guild.role(value), resolved, guild, channel)
            user = self._user(value)
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            member = guild.member(user.id) if guild is not None else None
            if guild is not None and member is not None:
                member_data = self._member_payload(guild, member, with_user=False)
                member_data["permissions"] = str(compute_permissions(guild, user.id, channel))
                resolved.setdefault("members", {})[str(user.id)] = member_data
            return str(user.id)
        if option_type in (OptionType.ROLE, OptionType.MENTIONABLE) and isinstance(value, FakeRole | int | str):
            if guild is None:
                raise ValueError("roles only exist in guilds")
            role = value if isinstance(value, FakeRole) else guild.role(value)
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return str(role.id)
        if option_type == OptionType.CHANNEL and isinstance(value, FakeChannel | int | str):
            target = self._resolve_channel(value, guild)
            data = self._channel_payload(target)
            data["permissions"] = str(self._bot_permissions_in(target))
            resolved.setdefault("channels", {})[str(target.id)] = data
            return str(target.id)
        if option_type == OptionType.ATTACHMENT:
            if isinstance(value, FakeAttachment):
                resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
                return str(value.id)
            if isinstance(value, dict):
                resolved.setdefault("attachments", {})[str(value["id"])] = value
                return str(value["id"])
        return value


def _check_form_values(inputs: Sequence[Payload], values: Mapping[str, str]) -> None:
    """What Discord's client refuses to send: a value for no input of the form, a required input left empty, or a
    value shorter or longer than its input allows."""
    known = {str(field.get("custom_id")) for field in inputs}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"the form has no inputs {unknown}; it has {sorted(known)}")
    for field in inputs:
        name = str(field.get("custom_id"))
        value = values.get(name, "")
        if not value:
            if field.get("required", True):
                raise ValueError(f"missing required input {name!r}")
            continue
        low, high = int(field.get("min_length") or 0), int(field.get("max_length") or TEXT_INPUT_MAX_LENGTH)
        if not low <= len(value) <= high:
            raise ValueError(f"input {name!r} takes {low} to {high} characters, not {len(value)}")
