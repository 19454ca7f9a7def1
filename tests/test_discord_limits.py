"""Discord's size limits: text cut to fit never breaks a link, a mention or an escape, and never goes over."""

from __future__ import annotations

import random
import re

import discord
import pytest

from bot import discord_limits as limits

URL = "https://cdn.example/videos/a4a8f1ff-e59b-4969-abcb-98b3e16f003e/video.mp4?signature=" + "s" * 60
MENTION = "<@123456789012345678>"
PIECES = [
    URL,
    f"<{URL}>",
    f"[the video]({URL})",
    MENTION,
    "<@&223456789012345678>",
    "<#323456789012345678>",
    "<t:1800000000:R>",
    "</history:1234567890>",
    "`a4a8f1ff`",
    "\\*",
]
WORDS = ["a", "jellyfish", "over", "the", "city,", "glowing", "softly", "\n", "🎬", "**bold**"]


def whole_pieces_only(result: str) -> bool:
    """Every link, mention or code span left in `result` is one of the pieces it was built from, unbroken (a bare
    link is not followed by the ellipsis, which Discord would take into the link)."""
    wrapped = r"\[[^\]]*\]\([^)\s]*\)?|<https?://[^>\s]*>?"
    found = re.findall(wrapped, result)
    rest = re.sub(wrapped, " ", result)
    found += re.findall(r"https?://\S+|<[@#/t][^>\s]*>?|`[^`]*`?", rest)
    return all(token in PIECES or token in {"`a4a8f1ff`", "</history:1234567890>"} for token in found)


def test_text_that_fits_is_left_as_it_is() -> None:
    assert limits.shorten("a cat", 5) == "a cat"
    assert limits.shorten(URL, len(URL)) == URL


def test_a_link_that_would_be_cut_is_left_out_whole() -> None:
    text = "watch it here: " + URL
    result = limits.shorten(text, 40)
    assert result == "watch it here:…"


@pytest.mark.parametrize("piece", PIECES)
def test_no_piece_is_cut_at_any_limit(piece: str) -> None:
    text = "before " + piece + " after"
    for limit in range(1, len(text) + 1):
        result = limits.shorten(text, limit)
        assert len(result) <= limit
        assert piece in result or not _has_prefix_of(result, piece)


def _has_prefix_of(result: str, piece: str) -> bool:
    """`result` ends with a broken start of `piece` (before the ellipsis)."""
    body = result.removesuffix(limits.ELLIPSIS)
    return any(body.endswith(piece[:n]) for n in range(2, len(piece)))


def test_a_bare_link_kept_whole_is_not_followed_directly_by_the_ellipsis() -> None:
    text = "see " + URL + " and more words after it"
    assert limits.shorten(text, len("see " + URL) + 3) == "see " + URL + " …"


def test_a_markdown_escape_is_never_separated_from_its_character() -> None:
    result = limits.shorten("a \\*b\\*", 4)
    assert not result.removesuffix(limits.ELLIPSIS).endswith("\\")


def test_random_texts_always_fit_and_keep_pieces_whole() -> None:
    chance = random.Random(20260101)
    for _ in range(400):
        parts = [chance.choice(PIECES if chance.random() < 0.3 else WORDS) for _ in range(chance.randint(1, 60))]
        text = " ".join(parts)
        limit = chance.randint(1, len(text) + 5)
        result = limits.shorten(text, limit)
        assert len(result) <= limit
        assert whole_pieces_only(result), (text, limit, result)


def test_joined_items_stay_whole_and_say_how_many_were_left_out() -> None:
    channels = [f"<#{1000000000000000000 + n}>" for n in range(100)]
    result = limits.join_within(channels, 100, separator=", ")
    assert len(result) <= 100
    kept = result.split(", ")[:-1]
    assert kept == channels[: len(kept)] and result.endswith(f"… and {100 - len(kept)} more")
    assert limits.join_within(channels[:3], 100, separator=", ") == ", ".join(channels[:3])


def test_a_custom_id_is_never_cut() -> None:
    assert limits.custom_id("history", "s", 123, 456) == "history:s:123:456"
    with pytest.raises(ValueError, match="custom id"):
        limits.custom_id("x" * 101)


def test_labels_titles_and_choice_names_fit() -> None:
    label = limits.button_label("Extend " * 20)
    assert 70 < len(label) <= 80 and label.endswith("E…")
    assert 40 < len(limits.modal_title("Continue the video " + "x" * 60)) <= 45
    fitted = limits.choices([("name\nwith\nlines " + "y" * 200, "value")] * 30 + [("long value", "v" * 101)])
    assert len(fitted) == 25 and all(len(choice.name) <= 100 and "\n" not in choice.name for choice in fitted)
    assert all(choice.value == "value" for choice in fitted)


def _field_values(embed: discord.Embed) -> list[str]:
    return [field.value or "" for field in embed.fields]


def test_the_worst_embed_is_brought_within_every_limit() -> None:
    embed = discord.Embed(title="t" * 300, description=("word " * 200 + URL + " ") * 5)
    for index in range(30):
        embed.add_field(name=f"field {index} " + "n" * 300, value=("v" * 1000 + " " + URL))
    embed.set_footer(text="f" * 3000)
    embed.set_author(name="a" * 300)
    limits.fit_embed(embed)
    assert len(embed) <= 6000 and len(embed.fields) <= 25
    assert len(embed.title or "") <= 256 and len(embed.description or "") <= 4096
    assert len(embed.footer.text or "") <= 2048 and len(embed.author.name or "") <= 256
    assert all(len(field.name or "") <= 256 and 0 < len(field.value or "") <= 1024 for field in embed.fields)
    for text in [embed.description or "", *_field_values(embed)]:
        assert whole_pieces_only(text)


def test_the_embeds_of_one_message_share_6000_characters() -> None:
    first = discord.Embed(title="first", description="d" * 4096)
    second = discord.Embed(title="second", description="e" * 4096)
    fitted = limits.fit_embeds([first, second])
    assert sum(len(embed) for embed in fitted) <= 6000 and fitted[0].description == "d" * 4096


def test_the_tail_of_a_message_arrives_whole() -> None:
    text = limits.content_keeping_tail("head " * 500, "\n" + URL)
    assert len(text) <= 2000 and text.endswith("\n" + URL)
    cut = limits.content("x" * 2001)
    assert cut.endswith("x" + limits.ELLIPSIS) and 1990 < len(cut) <= 2000
