"""REST: messages in channels (create, read, edit, delete), typing and reactions."""

from __future__ import annotations

import time

from aiohttp import web

from ..constants import MessageKind, Payload, Perm
from ..messages import MessageStore
from ..plumbing import (
    CANNOT_DM,
    CANNOT_EDIT_OTHERS,
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    SERVER_ERROR_MESSAGES,
    UNKNOWN_CHANNEL,
    UNKNOWN_MESSAGE,
    HTTPError,
    Incoming,
    RouteSpec,
    form_error,
    json_response,
    no_content,
    snowflake,
)
from ..records import FakeMessage
from ..world import FakeChannel


class MessageRoutes(MessageStore):
    """``/channels/{channel_id}/messages...``"""

    def _message_routes(self) -> list[RouteSpec]:
        return [
            ("GET", "/channels/{channel_id}/messages", self._list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._add_reaction, True),
        ]

    async def _typing(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        self._channel_for(params)
        return no_content()

    async def _add_reaction(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        self._message_in(self._channel_for(params), params["message_id"])
        return no_content()

    def _message_in(self, channel: FakeChannel, message_id: str) -> FakeMessage:
        message = self._messages.get(snowflake(message_id))
        if message is None or message.deleted or message.channel_id != channel.id:
            raise HTTPError(*UNKNOWN_MESSAGE)
        return message

    async def _list_messages(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        channel = self._channel_for(params)
        if not self._bot_permissions_in(channel) & Perm.READ_MESSAGE_HISTORY:
            raise HTTPError(*MISSING_ACCESS)
        limit = min(int(incoming.query.get("limit", "50")), 100)
        before = int(incoming.query.get("before", "0")) or None
        after = int(incoming.query.get("after", "0")) or None
        found = [
            m
            for m in self.messages_in(channel, include_ephemeral=False)
            if (before is None or m.id < before) and (after is None or m.id > after)
        ]
        if after is not None and before is None:
            # Discord answers the `limit` messages right after `after` (a client pages forward from there),
            # not the newest ones; either way the array is newest first.
            chosen = sorted(found, key=lambda m: m.id)[:limit]
        else:
            chosen = sorted(found, key=lambda m: m.id, reverse=True)[:limit]
        newest_first = sorted(chosen, key=lambda m: m.id, reverse=True)
        return json_response([m.payload for m in newest_first])

    async def _get_channel_message(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        message = self._message_in(self._channel_for(params), params["message_id"])
        if message.ephemeral:
            raise HTTPError(*UNKNOWN_MESSAGE)
        return json_response(message.payload)

    async def _create_message(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        channel = self._channel_for(params)
        fault = self._channel_faults.get(channel.id)
        if fault == 403:
            raise HTTPError(*MISSING_PERMISSIONS)
        if fault == 404:
            raise HTTPError(*UNKNOWN_CHANNEL)
        if fault is not None:
            raise HTTPError(fault, SERVER_ERROR_MESSAGES.get(fault, f"{fault}: Server Error"), 0)
        recipient_id = channel.recipient_ids[0] if channel.is_dm else None
        if recipient_id is not None and (recipient_id in self._closed_dms or not self._shares_guild(recipient_id)):
            raise HTTPError(*CANNOT_DM)
        permissions = self._bot_permissions_in(channel)
        if not permissions & Perm.VIEW_CHANNEL:
            raise HTTPError(*MISSING_ACCESS)
        if not permissions & Perm.SEND_MESSAGES or (incoming.files and not permissions & Perm.ATTACH_FILES):
            raise HTTPError(*MISSING_PERMISSIONS)
        body = incoming.body()
        self._check_message_limits(body, incoming.files, creating=True)
        nonce_key = None
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            nonce_key = (channel.id, self.world.bot.id, str(body["nonce"]))
            earlier = self._nonces.get(nonce_key)
            if earlier is not None and time.monotonic() - earlier[1] <= self.nonce_window:
                existing = self._messages.get(earlier[0])
                if existing is not None and not existing.deleted:
                    return json_response(existing.payload)
        attachments = self._make_attachments(body, incoming.files, existing=[], ephemeral=False)
        payload = self._message_payload(channel, self.world.bot, body, attachments, mtype=0)
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            payload.update(self._reference_fields(channel, reference))
            payload["type"] = 19  # REPLY
        kind = MessageKind.DM if channel.is_dm else MessageKind.CHANNEL
        message = self._emit_new(payload, channel, kind, author_id=self.world.bot.id, body=body)
        if nonce_key is not None:
            self._nonces[nonce_key] = (message.id, time.monotonic())
        await self._echo(message, "MESSAGE_CREATE")
        return json_response(message.payload)

    async def _edit_channel_message(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        channel = self._channel_for(params)
        message = self._message_in(channel, params["message_id"])
        if message.author_id != self.world.bot.id:
            raise HTTPError(*CANNOT_EDIT_OTHERS)
        edited = self._edit(message, incoming, MessageKind.MESSAGE_EDIT)
        await self._echo(edited, "MESSAGE_UPDATE")
        return json_response(edited.payload)

    async def _delete_channel_message(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        message = self._message_in(self._channel_for(params), params["message_id"])
        self._mark_deleted(message)
        return no_content()

    def _reference_fields(self, channel: FakeChannel, reference: Payload) -> Payload:
        referenced = self._messages.get(snowflake(reference["message_id"]))
        if referenced is None or referenced.deleted:
            if reference.get("fail_if_not_exists", True):
                raise form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            return {}
        return {
            "message_reference": {
                "type": 0,
                "message_id": str(referenced.id),
                "channel_id": str(referenced.channel_id),
                "guild_id": None if referenced.guild_id is None else str(referenced.guild_id),
            },
            "referenced_message": referenced.payload,
        }
