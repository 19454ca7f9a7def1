"""REST: interaction callbacks and the interaction webhooks (follow-ups, ``@original``)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web

from ..constants import CallbackType, InteractionType, MessageFlag, MessageKind, Payload
from ..interaction_handle import InteractionHandle
from ..messages import MessageStore
from ..plumbing import (
    ALREADY_ACKNOWLEDGED,
    INVALID_WEBHOOK_TOKEN,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
    HTTPError,
    Incoming,
    RouteSpec,
    form_error,
    json_response,
    no_content,
    snowflake,
)
from ..records import FakeMessage, InteractionCallback, LateAcknowledgementError, RecordedPart


class InteractionRoutes(MessageStore):
    """``/interactions/{id}/{token}/callback`` and ``/webhooks/{application_id}/{token}...``."""

    # Routes (interaction tokens authenticate these, not the bot token)

    def _interaction_routes(self) -> list[RouteSpec]:
        return [
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self._webhook_execute, False),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_get, False),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_edit, False),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_delete, False),
        ]

    def _interaction_for_webhook(self, params: Mapping[str, str]) -> InteractionHandle:
        if snowflake(params["application_id"]) != self.application_id:
            raise HTTPError(*UNKNOWN_WEBHOOK)
        handle = self._interactions_by_token.get(params["token"])
        if handle is None or handle.expired or time.monotonic() - handle.dispatched_at > self.token_lifetime:
            raise HTTPError(*INVALID_WEBHOOK_TOKEN)
        if handle.callback is None:
            # Follow-ups need an acknowledged interaction; Discord has no webhook message to attach them to.
            raise HTTPError(*UNKNOWN_WEBHOOK)
        return handle

    async def _interaction_callback(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        arrived = time.monotonic()
        handle = self.interactions.get(snowflake(params["interaction_id"]))
        if handle is None or not hmac.compare_digest(handle.token.encode(), params["token"].encode()):
            raise HTTPError(*UNKNOWN_INTERACTION)
        body = incoming.body()
        callback_type = body.get("type")
        data = body.get("data")
        callback = InteractionCallback(
            type=int(callback_type) if isinstance(callback_type, int) else -1,
            data=data if isinstance(data, dict) else None,
            time=arrived,
            latency=arrived - handle.dispatched_at,
            files=tuple(incoming.files),
        )
        if handle.expired or (self.ack_deadline is not None and callback.latency > self.ack_deadline):
            handle.late_callback = callback
            if not handle._callback_future.done():
                handle._callback_future.set_exception(
                    LateAcknowledgementError(
                        f"interaction {handle.id} was acknowledged after {callback.latency:.2f}s "
                        f"(deadline {self.ack_deadline}s); Discord answered 10062 Unknown interaction"
                    )
                )
                # Raised again by wait_response(); don't let asyncio log it as never retrieved meanwhile.
                handle._callback_future.exception()
            raise HTTPError(*UNKNOWN_INTERACTION)
        if handle.callback is not None:
            raise HTTPError(*ALREADY_ACKNOWLEDGED)
        allowed = self._allowed_callbacks(handle.type)
        if callback.type not in allowed:
            raise form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", f"Value must be one of {sorted(allowed)}.")
        message_body = callback.data or {}
        if callback.type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            self._check_message_limits(message_body, incoming.files, creating=True)
        elif callback.type == CallbackType.UPDATE_MESSAGE:
            self._check_message_limits(message_body, incoming.files, creating=False)

        handle.callback = callback
        if not handle._callback_future.done():
            handle._callback_future.set_result(callback)
        message = await self._apply_callback(handle, callback, incoming)

        if incoming.query.get("with_response", "").lower() not in ("1", "true"):
            return no_content()
        interaction_info: Payload = {"id": str(handle.id), "type": handle.type}
        response: Payload = {"interaction": interaction_info}
        if message is not None:
            interaction_info.update(
                {
                    "response_message_id": str(message.id),
                    "response_message_loading": message.loading,
                    "response_message_ephemeral": message.ephemeral,
                }
            )
            response["resource"] = {"type": callback.type, "message": message.payload}
        else:
            response["resource"] = {"type": callback.type}
        return json_response(response)

    @staticmethod
    def _allowed_callbacks(interaction_type: int) -> set[int]:
        if interaction_type == InteractionType.AUTOCOMPLETE:
            return {CallbackType.AUTOCOMPLETE_RESULT}
        if interaction_type == InteractionType.PING:
            return {CallbackType.PONG}
        allowed: set[int] = {
            CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.MODAL,
            CallbackType.LAUNCH_ACTIVITY,
        }
        if interaction_type in (InteractionType.MESSAGE_COMPONENT, InteractionType.MODAL_SUBMIT):
            allowed |= {CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE}
        if interaction_type == InteractionType.MODAL_SUBMIT:
            allowed.discard(CallbackType.MODAL)
        return allowed

    async def _apply_callback(
        self, handle: InteractionHandle, callback: InteractionCallback, incoming: Incoming
    ) -> FakeMessage | None:
        channel = self._channel_by_id(handle.channel_id)
        body = callback.data or {}
        if callback.type in (
            CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
        ):
            requested = int(body.get("flags") or 0)
            if callback.type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
                # The "<bot> is thinking..." placeholder; only the ephemeral choice counts here.
                flags = MessageFlag.LOADING | (requested & MessageFlag.EPHEMERAL)
                content_body: Payload = {}
                files: list[RecordedPart] = []
            else:
                flags = requested
                content_body, files = body, list(incoming.files)
            ephemeral = bool(flags & MessageFlag.EPHEMERAL)
            attachments = self._make_attachments(content_body, files, existing=[], ephemeral=ephemeral)
            payload = self._message_payload(
                channel,
                self.world.bot,
                content_body,
                attachments,
                mtype=20,  # CHAT_INPUT_COMMAND
                flags=flags,
                webhook_id=self.application_id,
            )
            payload["interaction_metadata"] = self._interaction_metadata(handle)
            message = self._emit_new(
                payload,
                channel,
                MessageKind.INTERACTION_RESPONSE,
                author_id=self.world.bot.id,
                interaction_id=handle.id,
                body=content_body,
            )
            handle.original_message_id = message.id
            await self._echo(message, "MESSAGE_CREATE")
            return message
        if callback.type in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            # For components, @original is the message the component is on.
            handle.original_message_id = handle.component_message_id
            target = self.get_message(handle.component_message_id) if handle.component_message_id else None
            if callback.type == CallbackType.UPDATE_MESSAGE and target is not None:
                edited = self._edit(
                    target,
                    replace(incoming, json=body),
                    MessageKind.INTERACTION_UPDATE,
                    interaction_id=handle.id,
                )
                await self._echo(edited, "MESSAGE_UPDATE")
                return edited
            return target
        return None

    def _interaction_metadata(self, handle: InteractionHandle) -> Payload:
        return {
            "id": str(handle.id),
            "type": handle.type,
            "user": self.world.user(handle.user_id).payload(),
            "authorizing_integration_owners": handle.payload.get("authorizing_integration_owners", {}),
            "name": handle.command_name,
        }

    async def _webhook_execute(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        channel = self._channel_by_id(handle.channel_id)
        body = incoming.body()
        original = handle.original
        if original is not None and original.loading and not original.deleted:
            # Discord: after a deferred response, the first follow-up replaces the "thinking..." message
            # (and keeps the ephemerality chosen when deferring).
            message = self._edit(original, incoming, MessageKind.FOLLOWUP, interaction_id=handle.id, clear_loading=True)
            await self._echo(message, "MESSAGE_UPDATE")
        else:
            self._check_message_limits(body, incoming.files, creating=True)
            flags = int(body.get("flags") or 0)
            attachments = self._make_attachments(
                body, incoming.files, existing=[], ephemeral=bool(flags & MessageFlag.EPHEMERAL)
            )
            payload = self._message_payload(
                channel, self.world.bot, body, attachments, mtype=0, flags=flags, webhook_id=self.application_id
            )
            payload["interaction_metadata"] = self._interaction_metadata(handle)
            message = self._emit_new(
                payload, channel, MessageKind.FOLLOWUP, author_id=self.world.bot.id, interaction_id=handle.id, body=body
            )
            await self._echo(message, "MESSAGE_CREATE")
        if message.id not in handle.followup_ids:
            handle.followup_ids.append(message.id)
        if incoming.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.payload)
        return no_content()

    def _webhook_message(self, handle: InteractionHandle, message_id: str) -> FakeMessage:
        if message_id == "@original":
            target = handle.original
        else:
            target = self.get_message(snowflake(message_id))
            if target is not None and target.id != handle.original_message_id and target.id not in handle.followup_ids:
                target = None
        if target is None or target.deleted:
            raise HTTPError(*UNKNOWN_MESSAGE)
        return target

    async def _webhook_get(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        return json_response(self._webhook_message(handle, params["message_id"]).payload)

    async def _webhook_edit(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        target = self._webhook_message(handle, params["message_id"])
        kind = MessageKind.ORIGINAL_EDIT if target.id == handle.original_message_id else MessageKind.FOLLOWUP_EDIT
        edited = self._edit(target, incoming, kind, interaction_id=handle.id, clear_loading=True)
        await self._echo(edited, "MESSAGE_UPDATE")
        return json_response(edited.payload)

    async def _webhook_delete(self, incoming: Incoming, params: dict[str, str]) -> web.StreamResponse:
        handle = self._interaction_for_webhook(params)
        self._mark_deleted(self._webhook_message(handle, params["message_id"]))
        return no_content()
