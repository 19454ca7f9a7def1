"""What the fake records and hands to tests: requests, gateway frames, syncs, message versions, callbacks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .constants import JSON, MessageFlag, MessageKind, Payload


@dataclass(frozen=True)
class RecordedPart:
    """One part of a multipart request (discord.py: ``payload_json`` and ``files[n]``)."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded, without the /api/v10 prefix and without the query
    query: dict[str, str]
    json: JSON  # the JSON body, or the parsed payload_json of a multipart body; None when absent
    parts: tuple[RecordedPart, ...] | None  # multipart parts, None for non-multipart requests
    headers: dict[str, str]  # every header except Authorization
    auth: Literal["valid", "invalid", "missing"]  # whether Authorization was exactly "Bot <token>"
    time: float  # time.monotonic() on arrival
    status: int = 0  # the status the fake answered
    route: str | None = None  # e.g. "POST /channels/{channel_id}/messages"; None for unknown routes

    @property
    def files(self) -> tuple[RecordedPart, ...]:
        return tuple(p for p in self.parts or () if p.name.startswith("files["))


@dataclass(frozen=True)
class GatewayFrame:
    direction: Literal["sent", "received"]
    op: int | None
    t: str | None
    s: int | None
    d: JSON = field(repr=False)  # tokens in IDENTIFY/RESUME are redacted
    time: float
    shard: int | None = None  # the shard of the connection's session; None before IDENTIFY or when unsharded


@dataclass(frozen=True)
class CommandSync:
    guild_id: int | None  # None for global commands
    names: tuple[str, ...]
    time: float


@dataclass(frozen=True)
class FakeMessage:
    """One version of a message. Every create or edit appends a new version to :attr:`FakeDiscord.message_log`."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    kind: MessageKind
    payload: Payload = field(repr=False)  # the message object as Discord returned it
    seq: int = -1  # position in the message log
    time: float = 0.0  # time.monotonic() when this version was made
    interaction_id: int | None = None
    recipient_id: int | None = None  # for DM channels: the user on the other side
    deleted: bool = False
    # The users Discord notified when the message was sent: those it mentions that its allowed_mentions let through,
    # and the author of the message it replies to where replied_user allows. An edit notifies nobody new.
    pinged_user_ids: tuple[int, ...] = ()

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def embeds(self) -> list[Payload]:
        return list(self.payload.get("embeds") or [])

    @property
    def components(self) -> list[Payload]:
        return list(self.payload.get("components") or [])

    @property
    def attachments(self) -> list[Payload]:
        return list(self.payload.get("attachments") or [])

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response's "thinking..." message that nothing has replaced yet."""
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None

    @property
    def edited(self) -> bool:
        return self.payload.get("edited_timestamp") is not None

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    @property
    def text(self) -> str:
        """Everything a reader sees: content, embed texts, text displays and button labels."""
        pieces = [self.content]
        for embed in self.embeds:
            pieces += [
                str(embed.get("title") or ""),
                str(embed.get("description") or ""),
                str((embed.get("author") or {}).get("name") or ""),
                str((embed.get("footer") or {}).get("text") or ""),
            ]
            for embed_field in embed.get("fields") or []:
                pieces += [str(embed_field.get("name") or ""), str(embed_field.get("value") or "")]
        for component in walk_components(self.components):
            pieces += [str(component.get("content") or ""), str(component.get("label") or "")]
        return "\n".join(p for p in pieces if p)


def walk_components(components: Iterable[Payload]) -> Iterable[Payload]:
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            yield accessory


@dataclass(frozen=True)
class FakeAttachment:
    """An attachment a member uploads with a command option (see :meth:`FakeDiscord.make_attachment`)."""

    id: int
    filename: str
    content_type: str
    size: int
    url: str
    width: int | None = None
    height: int | None = None

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "ephemeral": True,  # attachments of command options are ephemeral uploads
            "flags": 0,
        }
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        return data


@dataclass(frozen=True)
class RawValue:
    """Wraps an option value that must be sent verbatim (no resolution of users/attachments...)."""

    value: Any


@dataclass(frozen=True)
class InteractionCallback:
    type: int
    data: Payload | None
    time: float
    latency: float  # seconds between dispatching INTERACTION_CREATE and the callback's arrival
    files: tuple[RecordedPart, ...] = ()

    @property
    def flags(self) -> int:
        return int((self.data or {}).get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def content(self) -> str | None:
        return None if self.data is None else self.data.get("content")

    @property
    def choices(self) -> list[Payload]:
        """Autocomplete results (type 8)."""
        return list((self.data or {}).get("choices") or [])


class CommandUnavailableError(Exception):
    """The member could not have invoked this command in Discord's client (context or permissions)."""


class LateAcknowledgementError(AssertionError):
    """The bot answered an interaction after Discord's acknowledgement deadline."""
