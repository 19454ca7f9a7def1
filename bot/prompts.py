"""Rules for what a prompt or a generation id typed by a member may be: pure functions."""

from __future__ import annotations

import re
import unicodedata

from .errors import UserFacingError
from .models import ASPECT_RATIOS, MAX_PROMPT_LENGTH, MIN_PROMPT_LENGTH

# Whitespace a slash command option may carry; it is folded into single spaces.
_WHITESPACE_CONTROLS = frozenset("\t\n\r")


def _has_hidden_characters(text: str) -> bool:
    """Invisible format characters (zero-width, direction marks and overrides, tags...): they make a prompt look
    different in the channel from what is sent, so they are refused rather than silently dropped."""
    return any(unicodedata.category(char) == "Cf" for char in text)


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" and char not in _WHITESPACE_CONTROLS for char in text)


_DISCORD_MARKUP = (
    (re.compile(r"@(everyone|here)\b", re.IGNORECASE), "mentions such as @everyone or @here"),
    (re.compile(r"<@&\d+>"), "role mentions"),
    (re.compile(r"<@!?\d+>"), "user mentions"),
    (re.compile(r"<#\d+>"), "channel mentions"),
    (re.compile(r"<a?:\w+:\d+>|<t:-?\d+(:\w)?>|</[^>]+:\d+>"), "Discord emoji, timestamps or command links"),
    (re.compile(r"```|`"), "code blocks or backticks"),
    (re.compile(r"\[[^\]]*\]\([^)]*\)"), "masked links"),
    (re.compile(r"\|\|"), "spoiler markers (||)"),
)
_GENERATION_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(:[\w./-]{1,64})?$"
)


def clean_prompt(raw: str) -> str:
    """The prompt as it will be sent: whitespace trimmed and folded; raises UserFacingError with the reason."""
    if _has_hidden_characters(raw):
        raise UserFacingError(
            "Your prompt contains invisible or text-direction characters (such as zero-width spaces or "
            "right-to-left overrides). Please type it again as plain text."
        )
    if _has_control_characters(raw):
        raise UserFacingError("Your prompt contains control characters. Please type it again as plain text.")
    prompt = " ".join(unicodedata.normalize("NFC", raw).split())
    if not prompt:
        raise UserFacingError("Your prompt is empty. Describe the video you want, for example: a jellyfish flying.")
    if len(prompt) < MIN_PROMPT_LENGTH:
        raise UserFacingError(f"Your prompt is too short: it needs at least {MIN_PROMPT_LENGTH} characters.")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise UserFacingError(
            f"Your prompt is too long: {len(prompt)} characters, and the limit is {MAX_PROMPT_LENGTH}."
        )
    for pattern, what in _DISCORD_MARKUP:
        if pattern.search(prompt):
            raise UserFacingError(
                f"Prompts are plain descriptions of a video and can't contain {what}. Please remove them."
            )
    return prompt


# The start of a generation's id, as lists show it.
_SHORT_ID = re.compile(r"^[0-9a-fA-F]{8}$")


def is_short_id(text: str) -> bool:
    """Whether `text` is a short id: the first 8 characters of a generation's id, as lists show them."""
    return bool(_SHORT_ID.match(text.strip()))


def clean_generation_id(raw: str) -> str:
    """A generation id as the API gives it; raises UserFacingError when it can't be one."""
    text = raw.strip()
    if not _GENERATION_ID.match(text):
        shown = text[:40].replace("`", "'")
        raise UserFacingError(
            f"`{shown}` is not a generation id. Ids look like `a4a8f1ff-e59b-4969-abcb-98b3e16f003e`, or its "
            "first 8 characters `a4a8f1ff`; `/history` lists yours."
            if shown
            else "Please give a generation id; `/history` lists yours."
        )
    return text


def clean_aspect_ratio(raw: str) -> str:
    """One of the aspect ratios the API takes; Discord offers them as choices, but a raw value may differ."""
    value = raw.strip()
    if value not in ASPECT_RATIOS:
        raise UserFacingError(f"The aspect ratio must be one of {', '.join(ASPECT_RATIOS)}.")
    return value


IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_IMAGE_BYTES = 10 * 1024 * 1024


def check_image(option: str, content_type: str | None, size: int) -> None:
    """A start or end frame must be a PNG, JPEG or WebP image of at most 10 MiB."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in IMAGE_TYPES:
        raise UserFacingError(f"`{option}` must be a PNG, JPEG or WebP image" + (f", not {kind}." if kind else "."))
    if size > MAX_IMAGE_BYTES:
        raise UserFacingError(
            f"`{option}` is {size / 1024 / 1024:.1f} MiB; images can be at most {MAX_IMAGE_BYTES // 1024 // 1024} MiB."
        )
    if size <= 0:
        raise UserFacingError(f"`{option}` is empty.")
