"""Discord's documented size limits that its OpenAPI description leaves out or states more loosely.

The description allows 4000 characters of message content (Nitro users' limit; bots get 2000), says nothing of the
6000 characters all embeds of one message share, of custom ids being unique within a message, of the five action
rows a message holds, or of the 100 characters of a string choice's value. Discord refuses such bodies with
``400 Invalid Form Body``; :func:`limit_errors` reports them in the validator's words, for every route the bot uses:
messages (channel, webhook, interaction follow-ups and edits), interaction callbacks (messages, updates, autocomplete
choices, modals) and command registrations. These checks are written from Discord's documentation, independently of
the bot's own helpers, so that they can catch the bot's mistakes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["limit_errors"]

CONTENT = 2000
EMBEDS_PER_MESSAGE = 10
EMBEDS_TOTAL = 6000
EMBED_LIMITS = {"title": 256, "description": 4096}
EMBED_FIELDS = 25
FIELD_LIMITS = {"name": 256, "value": 1024}
FOOTER = 2048
AUTHOR = 256
ACTION_ROWS = 5
ROW_ITEMS = 5
CUSTOM_ID = 100
BUTTON_LABEL = 80
MODAL_TITLE = 45
TEXT_INPUT = {"label": 45, "placeholder": 100, "value": 4000}
CHOICES = 25
CHOICE_NAME = 100
CHOICE_VALUE = 100
COMMAND_DESCRIPTION = 100

_MESSAGE_ROUTES = (
    ("POST", "/channels/{channel_id}/messages"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
)
_CALLBACK_ROUTE = ("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
_COMMAND_ROUTE = re.compile(r"^/applications/\{application_id\}(/guilds/\{guild_id\})?/commands(/\{command_id\})?$")
# Interaction callback types (https://discord.com/developers/docs/interactions/receiving-and-responding).
_MESSAGE_CALLBACKS = (4, 7)
_AUTOCOMPLETE_CALLBACK = 8
_MODAL_CALLBACK = 9
_UPLOAD_PART = re.compile(r"files\[(\d+)\]")


def limit_errors(method: str, template: str, body: Any, parts: Iterable[str] = ()) -> list[str]:
    """What in a request body goes past Discord's limits; `template` is the route as the description names it,
    `parts` the names of a multipart body's parts (``files[n]`` for uploads)."""
    route = (method.upper(), template)
    where = f"{route[0]} {template}"
    if not isinstance(body, dict) and not isinstance(body, list):
        return []
    if route in _MESSAGE_ROUTES and isinstance(body, dict):
        problems = list(_message(body, uploads=_uploads(parts)))
    elif route == _CALLBACK_ROUTE and isinstance(body, dict):
        problems = list(_callback(body, uploads=_uploads(parts)))
    elif _COMMAND_ROUTE.match(template):
        commands = body if isinstance(body, list) else [body]
        problems = [problem for command in commands if isinstance(command, dict) for problem in _command(command)]
    else:
        problems = []
    return [f"{where}: {problem}" for problem in problems]


def _uploads(parts: Iterable[str]) -> set[int]:
    return {int(match[1]) for name in parts if (match := _UPLOAD_PART.fullmatch(name))}


def _too_long(location: str, value: Any, limit: int) -> Iterator[str]:
    if isinstance(value, str) and len(value) > limit:
        yield f"$.{location}: {len(value)} characters, Discord allows {limit}"


def _message(body: dict[str, Any], *, uploads: set[int], prefix: str = "") -> Iterator[str]:
    yield from _too_long(f"{prefix}content", body.get("content"), CONTENT)
    yield from _embeds(body.get("embeds") or [], prefix)
    yield from _components(body.get("components") or [], prefix)
    yield from _attachments(body.get("attachments") or [], uploads, prefix)


def _embeds(embeds: list[Any], prefix: str) -> Iterator[str]:
    if len(embeds) > EMBEDS_PER_MESSAGE:
        yield f"$.{prefix}embeds: {len(embeds)} embeds, Discord allows {EMBEDS_PER_MESSAGE}"
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            continue
        at = f"{prefix}embeds[{index}]"
        for key, limit in EMBED_LIMITS.items():
            yield from _too_long(f"{at}.{key}", embed.get(key), limit)
            total += len(embed.get(key) or "")
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        yield from _too_long(f"{at}.footer.text", footer, FOOTER)
        yield from _too_long(f"{at}.author.name", author, AUTHOR)
        total += len(footer) + len(author)
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS:
            yield f"$.{at}.fields: {len(fields)} fields, Discord allows {EMBED_FIELDS}"
        for number, field in enumerate(fields):
            for key, limit in FIELD_LIMITS.items():
                value = field.get(key) if isinstance(field, dict) else None
                if not value:
                    yield f"$.{at}.fields[{number}].{key}: empty, Discord requires it"
                yield from _too_long(f"{at}.fields[{number}].{key}", value, limit)
                total += len(value or "")
    if total > EMBEDS_TOTAL:
        yield f"$.{prefix}embeds: {total} characters in all, Discord allows {EMBEDS_TOTAL} per message"


def _components(rows: list[Any], prefix: str) -> Iterator[str]:
    if len(rows) > ACTION_ROWS:
        yield f"$.{prefix}components: {len(rows)} rows, Discord allows {ACTION_ROWS}"
    seen: set[str] = set()
    for index, row in enumerate(rows):
        items = row.get("components") or [] if isinstance(row, dict) else []
        if len(items) > ROW_ITEMS:
            yield f"$.{prefix}components[{index}]: {len(items)} items, Discord allows {ROW_ITEMS}"
        for number, item in enumerate(items):
            at = f"{prefix}components[{index}].components[{number}]"
            yield from _custom_id(at, item, seen)
            if item.get("type") == 2:  # a button
                yield from _too_long(f"{at}.label", item.get("label"), BUTTON_LABEL)
            if item.get("type") == 4:  # a text input (in a modal)
                for key, limit in TEXT_INPUT.items():
                    yield from _too_long(f"{at}.{key}", item.get(key), limit)


def _custom_id(at: str, item: dict[str, Any], seen: set[str]) -> Iterator[str]:
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str):
        return
    yield from _too_long(f"{at}.custom_id", custom_id, CUSTOM_ID)
    if custom_id in seen:
        yield f"$.{at}.custom_id: {custom_id!r} is used twice in one message; Discord requires them unique"
    seen.add(custom_id)


def _attachments(attachments: list[Any], uploads: set[int], prefix: str) -> Iterator[str]:
    """New attachments name their upload by its index; one naming no uploaded file is refused."""
    for index, attachment in enumerate(attachments):
        if not isinstance(attachment, dict):
            continue
        ident = attachment.get("id")
        # Existing attachments are kept by their snowflake; new ones point at files[n] by n.
        if isinstance(ident, int | str) and str(ident).isdigit() and int(ident) < 10**6 and int(ident) not in uploads:
            yield f"$.{prefix}attachments[{index}].id: {ident} names no uploaded files[{ident}]"


def _callback(body: dict[str, Any], *, uploads: set[int]) -> Iterator[str]:
    data = body.get("data")
    if not isinstance(data, dict):
        return
    kind = body.get("type")
    if kind in _MESSAGE_CALLBACKS:
        yield from _message(data, uploads=uploads, prefix="data.")
    elif kind == _AUTOCOMPLETE_CALLBACK:
        yield from _choices(data.get("choices") or [], "data.choices")
    elif kind == _MODAL_CALLBACK:
        yield from _too_long("data.title", data.get("title"), MODAL_TITLE)
        yield from _too_long("data.custom_id", data.get("custom_id"), CUSTOM_ID)
        yield from _components(data.get("components") or [], "data.")


def _choices(choices: list[Any], at: str) -> Iterator[str]:
    if len(choices) > CHOICES:
        yield f"$.{at}: {len(choices)} choices, Discord allows {CHOICES}"
    for index, choice in enumerate(choices):
        if isinstance(choice, dict):
            yield from _too_long(f"{at}[{index}].name", choice.get("name"), CHOICE_NAME)
            yield from _too_long(f"{at}[{index}].value", choice.get("value"), CHOICE_VALUE)


def _command(command: dict[str, Any], at: str = "") -> Iterator[str]:
    name = command.get("name", "?")
    yield from _too_long(f"{at}{name}.description", command.get("description"), COMMAND_DESCRIPTION)
    for option in command.get("options") or []:
        if isinstance(option, dict):
            yield from _choices(option.get("choices") or [], f"{at}{name}.{option.get('name')}.choices")
            yield from _command(option, f"{at}{name}.")
