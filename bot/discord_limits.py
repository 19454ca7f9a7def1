"""Discord's size limits, and text cut to fit them without breaking a link, a mention or a markdown escape.

Every text the bot builds goes through these before it is sent: Discord refuses a message over a limit outright
(400 Invalid Form Body), and a text cut in the middle of a URL or a `<@id>` shows a dead link or raw markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import discord

CONTENT = 2000
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
EMBED_FIELDS = 25
EMBED_FOOTER = 2048
EMBED_AUTHOR = 256
# All embeds of one message together: titles, descriptions, field names and values, footers, author names.
EMBEDS_TOTAL = 6000
EMBEDS_PER_MESSAGE = 10
BUTTON_LABEL = 80
CUSTOM_ID = 100
MODAL_TITLE = 45
TEXT_INPUT_LABEL = 45
TEXT_INPUT_PLACEHOLDER = 100
TEXT_INPUT_VALUE = 4000
CHOICE_NAME = 100
CHOICE_VALUE = 100
CHOICES = 25
COMMAND_DESCRIPTION = 100

ELLIPSIS = "…"

# Pieces of text that mean something only whole. A cut never falls inside one: it moves to its start.
_UNBREAKABLE = re.compile(
    r"\[[^\]\n]*\]\(<?https?://[^\s)>]+>?\)"  # a masked link [text](url)
    r"|<https?://[^\s>]+>"  # a link with its preview suppressed
    r"|https?://\S+"  # a bare link
    r"|</[^<>\n]+:\d+>"  # a command mention
    r"|<(?:@[!&]?|#)\d+>"  # a member, role or channel mention
    r"|<a?:\w+:\d+>"  # a custom emoji
    r"|<t:-?\d+(?::[tTdDfFR])?>"  # a timestamp
    r"|`[^`\n]+`"  # an inline code span (an id, a command)
    r"|\\."  # a markdown escape: the backslash and the character it escapes
)
_ENDS_WITH_BARE_LINK = re.compile(r"(?<![<(])https?://\S+$")


def _safe_cut(text: str, at: int) -> int:
    """The last position at or before `at` that is outside every unbreakable piece of `text`."""
    for piece in _UNBREAKABLE.finditer(text):
        if piece.start() >= at:
            break
        if piece.end() > at:
            return piece.start()
    return at


def shorten(text: str, limit: int, *, ellipsis: str = ELLIPSIS) -> str:
    """`text` as it is when it fits in `limit` characters, else cut at a safe place and marked with `ellipsis`.

    A link, mention, timestamp, code span or escape that would be cut is left out whole instead."""
    if len(text) <= limit:
        return text
    if limit <= len(ellipsis):
        return ellipsis[:limit]
    # One character spare: a bare link just before the ellipsis gets a space, or Discord would link the ellipsis too.
    kept = text[: _safe_cut(text, limit - len(ellipsis) - 1)].rstrip()
    return kept + (" " if _ENDS_WITH_BARE_LINK.search(kept) else "") + ellipsis


def join_within(
    items: Sequence[str],
    limit: int,
    *,
    separator: str = "\n",
    more: Callable[[int], str] = lambda hidden: f"… and {hidden} more",
) -> str:
    """Whole items joined while they fit in `limit`; a last note, `more(n)`, says how many were left out."""
    joined = separator.join(items)
    if len(joined) <= limit:
        return joined
    kept: list[str] = []
    used = 0
    for item in items:
        size = used + (len(separator) if kept else 0) + len(item)
        # Not every item fits (checked above), so a note follows whatever is kept.
        if size + len(separator) + len(more(len(items) - len(kept) - 1)) > limit:
            break
        kept.append(item)
        used = size
    return shorten(separator.join([*kept, more(len(items) - len(kept))]), limit)


def custom_id(*parts: object) -> str:
    """A component's custom id from its parts; it is data, never cut, so one that would not fit is a bug."""
    text = ":".join(str(part) for part in parts)
    if len(text) > CUSTOM_ID:
        raise ValueError(f"custom id of {len(text)} characters (Discord allows {CUSTOM_ID}): {text[:40]}…")
    return text


def button_label(text: str) -> str:
    return shorten(text, BUTTON_LABEL)


def modal_title(text: str) -> str:
    return shorten(text, MODAL_TITLE)


def choice_name(text: str) -> str:
    """An autocomplete or choice name; Discord shows it on one line."""
    return shorten(" ".join(text.split()), CHOICE_NAME)


def choices(
    pairs: Iterable[tuple[str, str]],
) -> list[discord.app_commands.Choice[str]]:
    """Autocomplete choices (name, value): names fitted, values that would not fit left out (a value can't be
    cut: it is what the command receives), at most Discord's 25."""
    fitted = [
        discord.app_commands.Choice(name=choice_name(name), value=value)
        for name, value in pairs
        if len(value) <= CHOICE_VALUE
    ]
    return fitted[:CHOICES]


def fit_embed(embed: discord.Embed, *, budget: int = EMBEDS_TOTAL) -> discord.Embed:
    """`embed` within every per-part limit and within `budget` characters in all; parts are cut safely, the
    description first, then the last fields, never the title."""
    if embed.title:
        embed.title = shorten(embed.title, EMBED_TITLE)
    if embed.description:
        embed.description = shorten(embed.description, EMBED_DESCRIPTION)
    if embed.footer.text:
        embed.set_footer(text=shorten(embed.footer.text, EMBED_FOOTER), icon_url=embed.footer.icon_url)
    if embed.author.name:
        embed.set_author(
            name=shorten(embed.author.name, EMBED_AUTHOR), url=embed.author.url, icon_url=embed.author.icon_url
        )
    while len(embed.fields) > EMBED_FIELDS:
        embed.remove_field(EMBED_FIELDS)
    for index, field in enumerate(embed.fields):
        embed.set_field_at(
            index,
            name=shorten(field.name or "\u200b", EMBED_FIELD_NAME),
            value=shorten(field.value or "\u200b", EMBED_FIELD_VALUE),
            inline=bool(field.inline),
        )
    _shrink_to(embed, budget)
    return embed


def _shrink_to(embed: discord.Embed, budget: int) -> None:
    excess = len(embed) - budget
    if excess <= 0:
        return
    if embed.description:
        keep = max(len(embed.description) - excess, 0)
        embed.description = shorten(embed.description, keep) if keep > len(ELLIPSIS) else None
        excess = len(embed) - budget
    while excess > 0 and embed.fields:
        last = embed.fields[-1]
        value = last.value or ""
        if len(value) - excess > 40:
            embed.set_field_at(
                len(embed.fields) - 1,
                name=last.name or "\u200b",
                value=shorten(value, len(value) - excess),
                inline=bool(last.inline),
            )
        else:
            embed.remove_field(len(embed.fields) - 1)
        excess = len(embed) - budget
    if excess > 0 and embed.footer.text:
        embed.set_footer(text=shorten(embed.footer.text, max(len(embed.footer.text) - excess, 1)))


def fit_embeds(embeds: Sequence[discord.Embed]) -> list[discord.Embed]:
    """The embeds of one message within Discord's 10 and 6000 characters together; the first keep the most."""
    fitted: list[discord.Embed] = []
    left = EMBEDS_TOTAL
    for embed in embeds[:EMBEDS_PER_MESSAGE]:
        fitted.append(fit_embed(embed, budget=left))
        left = max(left - len(fitted[-1]), 0)
    return fitted


def content(text: str) -> str:
    """A message's text within Discord's 2000 characters."""
    return shorten(text, CONTENT)


def content_keeping_tail(head: str, tail: str) -> str:
    """`head` then `tail` within 2000 characters, cutting only the head: the tail holds what must arrive whole
    (a video's link, which Discord plays inline only when it is whole in the content)."""
    if len(tail) >= CONTENT:
        return shorten(tail, CONTENT)
    return shorten(head, CONTENT - len(tail)) + tail
