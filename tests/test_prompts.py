from __future__ import annotations

import pytest

from bot.errors import UserFacingError
from bot.models import MAX_PROMPT_LENGTH
from bot.prompts import clean_aspect_ratio, clean_generation_id, clean_prompt

VALID_ID = "a4a8f1ff-e59b-4969-abcb-98b3e16f003e"


def test_a_prompt_is_trimmed_and_its_whitespace_folded() -> None:
    assert clean_prompt("  a  jellyfish\tflying  ") == "a jellyfish flying"


def test_ordinary_punctuation_sql_looking_text_and_right_to_left_scripts_pass() -> None:
    for prompt in ["A cat's *tiny* hat, 50% off!", "Robert'); DROP TABLE generations;--", "قطة تطير فوق البحر"]:
        assert clean_prompt(prompt) == prompt


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("", "empty"),
        ("   \t ", "empty"),
        ("ab", "at least 3"),
        ("x" * (MAX_PROMPT_LENGTH + 1), f"limit is {MAX_PROMPT_LENGTH}"),
        ("hello @everyone", "@everyone"),
        ("hi @here look", "@everyone or @here"),
        ("for <@&123456789012345678>", "role mentions"),
        ("for <@123456789012345678>", "user mentions"),
        ("for <@!123456789012345678>", "user mentions"),
        ("in <#123456789012345678>", "channel mentions"),
        ("```py\nprint(1)```", "code blocks"),
        ("[click](https://example.invalid)", "masked links"),
        ("a ||secret|| cat", "spoiler"),
        ("zero\u200bwidth", "invisible"),
        ("flip \u202eevil", "right-to-left"),
        ("bell\x07 cat", "control characters"),
        ("csi\x9b cat", "control characters"),
        ("arabic letter mark \u061c here", "invisible"),
        ("tagged\U000e0041\U000e0042 text", "invisible"),
        ("soft\u00adhyphen", "invisible"),
    ],
)
def test_bad_prompts_are_refused_with_the_reason(prompt: str, reason: str) -> None:
    with pytest.raises(UserFacingError) as caught:
        clean_prompt(prompt)
    assert reason in caught.value.message


def test_the_longest_allowed_prompt_passes() -> None:
    assert len(clean_prompt("y" * MAX_PROMPT_LENGTH)) == MAX_PROMPT_LENGTH


def test_generation_ids_are_recognised() -> None:
    assert clean_generation_id(f"  {VALID_ID} ") == VALID_ID
    assert clean_generation_id(f"{VALID_ID}:luma/ray-2") == f"{VALID_ID}:luma/ray-2"


@pytest.mark.parametrize("raw", ["", "abc", "' OR 1=1 --", VALID_ID + "x", "`" + VALID_ID + "`", "<@&1>"])
def test_malformed_ids_are_refused(raw: str) -> None:
    with pytest.raises(UserFacingError, match="generation id"):
        clean_generation_id(raw)


def test_aspect_ratio_outside_the_choices_is_refused() -> None:
    assert clean_aspect_ratio("9:16") == "9:16"
    with pytest.raises(UserFacingError, match="16:9"):
        clean_aspect_ratio("2:1")
