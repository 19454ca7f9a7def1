"""Messages: building message objects, Discord's limits, attachments, the message log and its echo on the
gateway."""

# Waiting helpers take explicit ``timeout`` parameters: tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .constants import Intents, MessageFlag, MessageKind, Payload
from .gateway import GatewayServer
from .plumbing import EMPTY_MESSAGE, TOO_LARGE, HTTPError, Incoming, UserRef, form_error
from .records import FakeMessage, RecordedPart
from .world import FakeChannel, FakeUser, iso_now

_log = logging.getLogger(__name__)


class MessageStore(GatewayServer):
    """Every version of every message, and how new versions are made."""

    # Inspection

    def get_message(self, message_id: int) -> FakeMessage | None:
        """The latest version of a message (deleted ones too, with ``deleted=True``)."""
        return self._messages.get(message_id)

    def messages_in(
        self, channel: int | FakeChannel, *, include_ephemeral: bool = True, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """Latest versions of the messages in a channel, oldest first."""
        cid = channel.id if isinstance(channel, FakeChannel) else channel
        return [
            m
            for m in self._messages.values()
            if m.channel_id == cid and (include_ephemeral or not m.ephemeral) and (include_deleted or not m.deleted)
        ]

    def dm_channel_of(self, user: UserRef) -> FakeChannel | None:
        return self._dm_channels.get(self._user(user).id)

    def dm_messages_to(self, user: UserRef) -> list[FakeMessage]:
        """Latest versions of the messages in the bot's DM channel with ``user``, oldest first."""
        channel = self.dm_channel_of(user)
        return [] if channel is None else self.messages_in(channel)

    def message_mark(self) -> int:
        """A position in :attr:`message_log`, for ``wait_for_message(since=...)``."""
        return len(self.message_log)

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> FakeMessage:
        """The first message version (create or edit, any kind) from ``since`` on that matches.

        Versions already logged are checked first, so a message that arrived before the call is found.
        """
        check = predicate or (lambda _m: True)
        for message in self.message_log[since:]:
            if check(message):
                return message
        future: asyncio.Future[FakeMessage] = asyncio.get_running_loop().create_future()
        entry = (check, future)
        self._message_waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            recent = "\n  ".join(f"{m.kind} in {m.channel_id}: {m.text[:80]!r}" for m in self.message_log[since:][-10:])
            raise TimeoutError(
                f"no matching message within {timeout}s; latest messages:\n  {recent or '(none)'}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._message_waiters.remove(entry)

    def attachment_bytes(self, attachment_id: int | str) -> bytes:
        """The content of an attachment the bot uploaded (or one made with :meth:`make_attachment`)."""
        return self._attachment_blobs[int(attachment_id)][2]

    # Building, limits, storage

    def _check_message_limits(self, body: Payload, files: Sequence[RecordedPart], *, creating: bool) -> None:
        """Discord's documented limits, answered the way Discord answers them."""
        if sum(f.size for f in files) > self.upload_limit:
            raise HTTPError(*TOO_LARGE)
        content = body.get("content")
        if isinstance(content, str) and len(content) > 2000:
            raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if isinstance(embeds, list):
            if len(embeds) > 10:
                raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
            total = 0
            for index, embed in enumerate(embeds):
                if not isinstance(embed, dict):
                    continue
                for key, limit in (("title", 256), ("description", 4096)):
                    value = embed.get(key)
                    if isinstance(value, str) and len(value) > limit:
                        raise form_error(
                            f"embeds.{index}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                        )
                    total += len(value) if isinstance(value, str) else 0
                fields = embed.get("fields") or []
                if len(fields) > 25:
                    raise form_error(f"embeds.{index}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
                for field_index, embed_field in enumerate(fields):
                    for key, limit in (("name", 256), ("value", 1024)):
                        value = embed_field.get(key)
                        if not isinstance(value, str) or not value:
                            raise form_error(
                                f"embeds.{index}.fields.{field_index}.{key}",
                                "BASE_TYPE_REQUIRED",
                                "This field is required",
                            )
                        if len(value) > limit:
                            raise form_error(
                                f"embeds.{index}.fields.{field_index}.{key}",
                                "BASE_TYPE_MAX_LENGTH",
                                f"Must be {limit} or fewer in length.",
                            )
                        total += len(value)
                total += len(str((embed.get("footer") or {}).get("text") or ""))
                total += len(str((embed.get("author") or {}).get("name") or ""))
            if total > 6000:
                raise form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        if creating and not (
            content
            or embeds
            or files
            or body.get("components")
            or body.get("sticker_ids")
            or body.get("poll")
            or body.get("attachments")
        ):
            raise HTTPError(*EMPTY_MESSAGE)

    def _make_attachments(
        self, body: Payload, files: Sequence[RecordedPart], *, existing: Sequence[Payload], ephemeral: bool
    ) -> list[Payload]:
        """Attachments of a new version: kept ones listed in ``attachments`` plus the uploaded ``files[n]``."""
        uploads = {p.name: p for p in files}
        listed = body.get("attachments")
        result: list[Payload] = []
        used: set[str] = set()
        if isinstance(listed, list):
            by_id = {a["id"]: a for a in existing}
            for entry in listed:
                if not isinstance(entry, dict):
                    continue
                key = str(entry.get("id"))
                if key in by_id:
                    result.append(by_id[key])
                elif f"files[{key}]" in uploads:
                    used.add(f"files[{key}]")
                    result.append(self._store_upload(uploads[f"files[{key}]"], entry, ephemeral))
        else:
            result.extend(existing)
        for name, part in uploads.items():
            if name not in used:
                result.append(self._store_upload(part, {}, ephemeral))
        return result

    def _store_upload(self, part: RecordedPart, entry: Mapping[str, Any], ephemeral: bool) -> Payload:
        attachment_id = self.new_snowflake()
        filename = str(entry.get("filename") or part.filename or "file")
        content_type = mimetypes.guess_type(filename)[0] or part.content_type or "application/octet-stream"
        self._attachment_blobs[attachment_id] = (filename, content_type, part.data)
        data: Payload = {
            "id": str(attachment_id),
            "filename": filename,
            "size": part.size,
            "url": self._attachment_url(attachment_id, filename),
            "proxy_url": self._attachment_url(attachment_id, filename),
            "content_type": content_type,
            "flags": 0,
        }
        if entry.get("description"):
            data["description"] = entry["description"]
        if ephemeral:
            data["ephemeral"] = True
        return data

    def _mentions(self, content: str) -> tuple[list[Payload], list[str]]:
        users: list[Payload] = []
        for user_id in dict.fromkeys(int(x) for x in re.findall(r"<@!?(\d+)>", content)):
            with contextlib.suppress(KeyError):
                users.append(self.world.user(user_id).payload())
        roles = list(dict.fromkeys(re.findall(r"<@&(\d+)>", content)))
        return users, roles

    def _pinged(self, body: Payload, payload: Payload) -> tuple[int, ...]:
        """Who a message sent with this body notifies (Discord's default without allowed_mentions: everyone it
        mentions, and the author of the message it replies to)."""
        mentioned = [int(user["id"]) for user in payload.get("mentions") or []]
        allowed = body.get("allowed_mentions")
        if isinstance(allowed, dict):
            parse = allowed.get("parse") or []
            listed = {int(user) for user in allowed.get("users") or []}
            pinged = [user for user in mentioned if "users" in parse or user in listed]
            replied_user = bool(allowed.get("replied_user", False))
        else:
            pinged, replied_user = mentioned, True
        referenced = payload.get("referenced_message")
        if replied_user and isinstance(referenced, dict):
            pinged.append(int(referenced["author"]["id"]))
        return tuple(user for user in dict.fromkeys(pinged) if user != self.world.bot.id)

    def _message_payload(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: Payload,
        attachments: list[Payload],
        *,
        mtype: int,
        flags: int | None = None,
        webhook_id: int | None = None,
    ) -> Payload:
        content = body.get("content")
        content = content if isinstance(content, str) else ""
        mentions, mention_roles = self._mentions(content)
        embeds = [{"type": "rich", **e} if isinstance(e, dict) else e for e in body.get("embeds") or []]
        payload: Payload = {
            "id": str(self.new_snowflake()),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": mentions,
            "mention_roles": mention_roles,
            "attachments": attachments,
            "embeds": embeds,
            "components": list(body.get("components") or []),
            "reactions": [],
            "pinned": False,
            "type": mtype,
            "flags": int(body.get("flags") or 0) if flags is None else flags,
        }
        if body.get("nonce") is not None:
            payload["nonce"] = body["nonce"]
        if webhook_id is not None:
            payload["webhook_id"] = str(webhook_id)
            payload["application_id"] = str(self.application_id)
        return payload

    def _emit(self, message: FakeMessage) -> FakeMessage:
        message = replace(message, seq=len(self.message_log), time=time.monotonic())
        self.message_log.append(message)
        self._messages[message.id] = message
        for predicate, future in list(self._message_waiters):
            if future.done():
                continue
            try:
                if predicate(message):
                    future.set_result(message)
            except Exception as exc:  # surface predicate bugs in the waiting test
                future.set_exception(exc)
        return message

    def _emit_new(
        self,
        payload: Payload,
        channel: FakeChannel,
        kind: MessageKind,
        *,
        author_id: int,
        interaction_id: int | None = None,
        body: Payload | None = None,
    ) -> FakeMessage:
        return self._emit(
            FakeMessage(
                id=int(payload["id"]),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author_id=author_id,
                kind=kind,
                payload=payload,
                interaction_id=interaction_id,
                recipient_id=channel.recipient_ids[0] if channel.is_dm else None,
                pinged_user_ids=self._pinged(body or {}, payload),
            )
        )

    def _edit(
        self,
        message: FakeMessage,
        incoming: Incoming,
        kind: MessageKind,
        *,
        interaction_id: int | None = None,
        clear_loading: bool = False,
    ) -> FakeMessage:
        body = incoming.body()
        self._check_message_limits(body, incoming.files, creating=False)
        payload = dict(message.payload)
        for key in ("content", "embeds", "components", "tts"):
            if key in body:
                value = body[key]
                if key == "embeds":
                    value = [{"type": "rich", **e} if isinstance(e, dict) else e for e in value or []]
                payload[key] = value if value is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS and IS_COMPONENTS_V2 may change on edit; EPHEMERAL/LOADING stay.
            keep = message.flags & (MessageFlag.EPHEMERAL | MessageFlag.LOADING)
            payload["flags"] = keep | (
                int(body["flags"]) & (MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2)
            )
        if clear_loading:
            payload["flags"] = int(payload.get("flags") or 0) & ~MessageFlag.LOADING
        if "attachments" in body or incoming.files:
            payload["attachments"] = self._make_attachments(
                body, incoming.files, existing=message.attachments, ephemeral=message.ephemeral
            )
        mentions, mention_roles = self._mentions(str(payload.get("content") or ""))
        payload["mentions"], payload["mention_roles"] = mentions, mention_roles
        payload["edited_timestamp"] = iso_now()
        # Replacing a deferred answer's "thinking..." message sends it: that is when its mentions notify.
        pinged = self._pinged(body, payload) if clear_loading and message.loading else message.pinged_user_ids
        return self._emit(
            replace(
                message,
                payload=payload,
                kind=kind,
                interaction_id=interaction_id or message.interaction_id,
                pinged_user_ids=pinged,
            )
        )

    def _mark_deleted(self, message: FakeMessage) -> None:
        self._messages[message.id] = replace(message, deleted=True)

    def _gateway_message(self, message: FakeMessage, intents: int, *, own: bool) -> Payload | None:
        """The MESSAGE_CREATE/UPDATE payload a session with ``intents`` gets, or None if it gets none."""
        needed = Intents.DIRECT_MESSAGES if message.is_dm else Intents.GUILD_MESSAGES
        if message.ephemeral or not intents & needed:
            return None
        data = dict(message.payload)
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            member = self.world.guild(message.guild_id).member(message.author_id)
            if member is not None:
                data["member"] = self._member_payload(self.world.guild(message.guild_id), member, with_user=False)
        mentioned = any(int(u["id"]) == self.world.bot.id for u in data.get("mentions", []))
        if not own and not message.is_dm and not mentioned and not intents & Intents.MESSAGE_CONTENT:
            data.update({"content": "", "embeds": [], "attachments": [], "components": []})
        return data

    async def _echo(self, message: FakeMessage, event: str) -> None:
        if not self.echo_messages:
            return
        for session in self._sessions_for(message.guild_id):
            data = self._gateway_message(message, session.intents, own=True)
            if data is not None:
                await self._dispatch(session, event, data)
