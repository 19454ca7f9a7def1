"""The check every end-to-end run ends with: bodies past Discord's limits are caught on every route the bot uses."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from bot.messages import announcement, status_embed
from tests.test_messages import make

from .discord_schema import load_validator
from .discord_text_limits import limit_errors

MESSAGE = ("POST", "/channels/{channel_id}/messages")
CALLBACK = ("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
FOLLOW_UP = ("POST", "/webhooks/{webhook_id}/{webhook_token}")
ORIGINAL = ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original")


def button(custom_id: str, label: str = "Next") -> dict[str, Any]:
    return {"type": 2, "style": 2, "custom_id": custom_id, "label": label}


def test_content_over_2000_characters_is_caught_on_every_message_route() -> None:
    for route in (MESSAGE, FOLLOW_UP, ORIGINAL):
        assert limit_errors(*route, {"content": "x" * 2000}) == []
        assert limit_errors(*route, {"content": "x" * 2001}) == [
            f"{route[0]} {route[1]}: $.content: 2001 characters, Discord allows 2000"
        ]
    errors = limit_errors(*CALLBACK, {"type": 4, "data": {"content": "x" * 2001}})
    assert errors and "$.data.content" in errors[0]


def test_the_embeds_of_one_message_share_6000_characters() -> None:
    embeds = [{"title": "t", "description": "d" * 3000}, {"description": "e" * 3000}]
    [error] = limit_errors(*MESSAGE, {"embeds": embeds})
    assert "6001 characters in all" in error
    fields = [{"name": "n", "value": "v" * 1025}, {"name": "", "value": "v"}]
    errors = limit_errors(*CALLBACK, {"type": 7, "data": {"embeds": [{"fields": fields}]}})
    assert any("fields[0].value: 1025" in error for error in errors) and any(
        "fields[1].name: empty" in e for e in errors
    )


def test_components_need_unique_ids_and_room() -> None:
    row = {"type": 1, "components": [button("history:1"), button("history:1", "Previous")]}
    [error] = limit_errors(*MESSAGE, {"components": [row]})
    assert "used twice" in error
    six_rows = [{"type": 1, "components": [button(f"b{n}")]} for n in range(6)]
    assert any("6 rows" in error for error in limit_errors(*ORIGINAL, {"components": six_rows}))
    long_label = {"type": 1, "components": [button("x", "L" * 81)]}
    assert any("label: 81" in error for error in limit_errors(*FOLLOW_UP, {"components": [long_label]}))


def test_modals_and_autocomplete_are_held_to_their_limits() -> None:
    text_input = {"type": 4, "custom_id": "prompt", "style": 2, "label": "L" * 46}
    modal = {
        "type": 9,
        "data": {"custom_id": "m", "title": "T" * 46, "components": [{"type": 1, "components": [text_input]}]},
    }
    errors = limit_errors(*CALLBACK, modal)
    assert any("data.title: 46" in e for e in errors) and any("label: 46" in e for e in errors)
    choices = [{"name": "n" * 101, "value": "v"}] + [{"name": "n", "value": "v" * 101}] * 25
    errors = limit_errors(*CALLBACK, {"type": 8, "data": {"choices": choices}})
    assert any("26 choices" in e for e in errors) and any("name: 101" in e for e in errors)
    assert any("value: 101" in e for e in errors)


def test_a_new_attachment_must_name_an_uploaded_file() -> None:
    body = {"content": "", "attachments": [{"id": 0, "filename": "video.mp4"}, {"id": 1, "filename": "b.mp4"}]}
    assert limit_errors(*MESSAGE, body, ["payload_json", "files[0]", "files[1]"]) == []
    [error] = limit_errors(*MESSAGE, body, ["payload_json", "files[0]"])
    assert "names no uploaded files[1]" in error
    kept = {"attachments": [{"id": "1300000000000000001"}]}  # an attachment the message already has
    assert limit_errors(*ORIGINAL, kept) == []


def test_commands_are_held_to_100_characters_of_description() -> None:
    command = {"name": "x", "description": "d" * 101, "options": [{"name": "o", "description": "ok", "type": 3}]}
    [error] = limit_errors("PUT", "/applications/{application_id}/commands", [command])
    assert "x.description: 101" in error


def test_the_validator_reports_the_limits_the_description_leaves_out() -> None:
    validator = load_validator()
    if validator is None:
        pytest.skip(
            "Discord's OpenAPI description (../shared/discord-api-spec/openapi.json) is not beside the checkout"
        )
    # The description allows 4000 characters of content; Discord allows bots 2000.
    errors = validator.validate("POST", "/channels/1/messages", {"content": "x" * 2001})
    assert errors == ["POST /channels/{channel_id}/messages: $.content: 2001 characters, Discord allows 2000"]
    fields: dict[str, str | bytes] = {"payload_json": '{"attachments": [{"id": 0, "filename": "v.mp4"}]}'}
    assert any("files[0]" in e for e in validator.validate_multipart("POST", "/channels/1/messages", fields))


def test_the_bot_s_longest_texts_pass() -> None:
    worst = make(prompt="*" * 2048, failure_reason="r" * 3000, video_url="https://cdn.example/" + "v" * 900)
    embed: discord.Embed = status_embed(worst, note="n" * 3000)
    body = {"content": announcement(worst), "embeds": [embed.to_dict()]}
    assert limit_errors(*MESSAGE, body) == []
