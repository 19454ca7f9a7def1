"""What a test holds after dispatching an interaction."""

# Waiting helpers take explicit ``timeout`` parameters: tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .constants import MessageKind, Payload
from .records import FakeMessage, InteractionCallback

if TYPE_CHECKING:
    from .messages import MessageStore


class InteractionHandle:
    """What a test holds after dispatching an interaction: the callback, follow-ups and edits it caused."""

    def __init__(
        self,
        fake: MessageStore,
        *,
        interaction_id: int,
        token: str,
        interaction_type: int,
        payload: Payload,
        command_name: str | None,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        component_message_id: int | None = None,
    ) -> None:
        self._fake = fake
        self.id = interaction_id
        self.token = token
        self.type = interaction_type
        self.payload = payload  # the INTERACTION_CREATE data as dispatched
        self.command_name = command_name
        self.user_id = user_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.component_message_id = component_message_id
        self.dispatched_at: float = 0.0
        self.shard: int | None = None  # the shard whose session got INTERACTION_CREATE (None: unsharded)
        self.callback: InteractionCallback | None = None
        self.late_callback: InteractionCallback | None = None  # a callback refused for arriving too late
        self.expired = False
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []
        self._callback_future: asyncio.Future[InteractionCallback] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        callback = None if self.callback is None else self.callback.type
        return f"<InteractionHandle id={self.id} type={self.type} command={self.command_name!r} callback={callback}>"

    # -- the callback -----------------------------------------------------------------------------------

    async def wait_response(self, timeout: float = 3.0) -> InteractionCallback:
        """The interaction callback (its ``type`` and ``data``) once the bot sends it.

        Raises ``TimeoutError`` when nothing arrives in time and :class:`LateAcknowledgementError` when the
        callback came after the acknowledgement deadline (Discord refused it).
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._callback_future), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no interaction callback for {self!r} within {timeout}s; requests so far: "
                f"{self._fake.describe_requests(last=10)}"
            ) from None

    @property
    def ack_latency(self) -> float | None:
        """Seconds between dispatch and the accepted callback (None before it arrives)."""
        return None if self.callback is None else self.callback.latency

    @property
    def responded(self) -> bool:
        return self.callback is not None

    # -- messages -----------------------------------------------------------------------------------------

    @property
    def original(self) -> FakeMessage | None:
        """The current version of ``@original`` (the response message), if any."""
        if self.original_message_id is None:
            return None
        return self._fake.get_message(self.original_message_id)

    @property
    def followups(self) -> list[FakeMessage]:
        """Current versions of the messages sent with ``POST /webhooks/{app}/{token}``.

        After a deferred response the first follow-up *is* ``@original`` (Discord replaces the
        "thinking..." message), so it appears both here and as :attr:`original`.
        """
        found = (self._fake.get_message(mid) for mid in self.followup_ids)
        return [m for m in found if m is not None]

    @property
    def original_edits(self) -> list[FakeMessage]:
        """Every version produced by PATCHing ``@original``, oldest first."""
        return [
            m for m in self._fake.message_log if m.interaction_id == self.id and m.kind == MessageKind.ORIGINAL_EDIT
        ]

    @property
    def messages(self) -> list[FakeMessage]:
        """Every message version this interaction's callback and token produced, oldest first."""
        return [m for m in self._fake.message_log if m.interaction_id == self.id]

    async def wait_followup(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        return await self._fake.wait_for_message(
            lambda m: (
                m.interaction_id == self.id and m.kind == MessageKind.FOLLOWUP and (predicate is None or predicate(m))
            ),
            timeout,
        )

    async def wait_original(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        """The first version of ``@original`` matching ``predicate`` (default: no longer "thinking...")."""

        def matches(message: FakeMessage) -> bool:
            if message.interaction_id != self.id or message.id != self.original_message_id:
                return False
            return (not message.loading) if predicate is None else predicate(message)

        return await self._fake.wait_for_message(matches, timeout)

    async def wait_message(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        """Any message version made through this interaction (response, follow-up or edit)."""
        return await self._fake.wait_for_message(
            lambda m: m.interaction_id == self.id and (predicate is None or predicate(m)), timeout
        )

    def expire(self) -> None:
        """Make the token invalid now, as Discord does 15 minutes after the interaction."""
        self._fake.expire_interaction(self)
