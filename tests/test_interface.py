"""The slash commands as Discord receives them: names and options are the product's interface."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.api_client import LumaClient
from bot.app import EXTENSIONS, VideoBot
from bot.config import load_settings
from bot.storage import GenerationStore
from tests.e2e.discord_schema import load_validator


@contextlib.asynccontextmanager
async def command_payloads(store: GenerationStore, models: str = "legacy") -> AsyncIterator[dict[str, dict[str, Any]]]:
    """The commands as Discord would receive them, from a bot with these LUMA_MODELS."""
    settings = load_settings({"DISCORD_TOKEN": "t", "AIML_API_KEY": "k", "LUMA_MODELS": models})
    async with aiohttp.ClientSession() as session:
        bot = VideoBot(settings, store, LumaClient(session, "http://127.0.0.1:9", settings.aiml_api_key))
        # Entered as the bot is at start (a sharded client's close needs what entering sets up), never logged in.
        async with bot:
            for extension in EXTENSIONS:
                await bot.load_extension(extension)
            yield {command.name: command.to_dict(bot.tree) for command in bot.tree.get_commands()}


@pytest.fixture
async def commands(store: GenerationStore) -> AsyncIterator[dict[str, dict[str, Any]]]:
    async with command_payloads(store) as payloads:
        yield payloads


@pytest.fixture
async def several_models(store: GenerationStore) -> AsyncIterator[dict[str, dict[str, Any]]]:
    async with command_payloads(store, "luma/ray-2,luma/ray-3.2,legacy") as payloads:
        yield payloads


def options_of(command: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {option["name"]: option for option in command.get("options", [])}


def test_the_command_names_are_as_documented(commands: dict[str, dict[str, Any]]) -> None:
    assert set(commands) == {
        "generate", "status", "extend", "limits", "quota", "usage", "queue", "cancel", "history", "help", "show",
    }  # fmt: skip


def test_history_and_help_options(commands: dict[str, dict[str, Any]]) -> None:
    history = options_of(commands["history"])
    assert list(history) == ["scope", "member"]
    assert [c["value"] for c in history["scope"]["choices"]] == ["mine", "server"]
    assert history["scope"].get("required", False) is False and history["member"]["type"] == 6  # a user
    assert options_of(commands["help"]) == {}


def test_queue_and_cancel_options(commands: dict[str, dict[str, Any]]) -> None:
    assert options_of(commands["queue"]) == {}
    cancel = options_of(commands["cancel"])
    assert list(cancel) == ["generation_id"] and cancel["generation_id"]["required"]
    assert cancel["generation_id"]["autocomplete"] is True


def test_generate_options(commands: dict[str, dict[str, Any]]) -> None:
    options = options_of(commands["generate"])
    assert list(options)[:3] == ["prompt", "aspect_ratio", "expand_prompt"]
    assert set(options) == {
        "prompt", "aspect_ratio", "expand_prompt", "resolution", "duration", "loop", "image", "end_image",
        "last_frame_of", "private",
    }  # fmt: skip
    assert options["prompt"]["required"] is True and options["prompt"]["max_length"] == 2048
    assert [c["value"] for c in options["aspect_ratio"]["choices"]] == [
        "16:9",
        "1:1",
        "9:16",
        "4:3",
        "3:4",
        "21:9",
        "9:21",
    ]
    assert options["aspect_ratio"].get("required", False) is False
    assert options["expand_prompt"]["type"] == 5
    assert [c["value"] for c in options["resolution"]["choices"]] == ["540p", "720p", "1080p", "4k"]
    assert [c["value"] for c in options["duration"]["choices"]] == [5, 9]
    assert options["image"]["type"] == options["end_image"]["type"] == 11
    assert options["private"]["type"] == 5 and options["private"].get("required", False) is False


def test_status_and_extend_options(commands: dict[str, dict[str, Any]]) -> None:
    status = options_of(commands["status"])
    assert list(status) == ["generation_id"] and status["generation_id"].get("required", False) is False
    assert status["generation_id"]["autocomplete"] is True
    extend = options_of(commands["extend"])
    assert list(extend) == ["generation_id", "prompt", "aspect_ratio", "expand_prompt", "private"]
    assert extend["generation_id"]["required"] and extend["prompt"]["required"]
    assert extend["private"]["type"] == 5


def test_show_options(commands: dict[str, dict[str, Any]]) -> None:
    show = options_of(commands["show"])
    assert list(show) == ["generation_id"] and show["generation_id"]["required"]
    assert show["generation_id"]["autocomplete"] is True


def test_moderation_commands(commands: dict[str, dict[str, Any]]) -> None:
    subcommands = options_of(commands["limits"])
    assert set(subcommands) == {
        "show", "set", "channels", "roles", "exempt", "words", "sharing", "keep_videos", "private",
    }  # fmt: skip
    assert options_of(subcommands["keep_videos"])["upload"]["type"] == 5  # a boolean
    assert options_of(subcommands["private"])["allowed"]["type"] == 5
    assert set(options_of(subcommands["set"])) == {
        "user_daily",
        "server_daily",
        "user_concurrent",
        "cooldown_seconds",
        "server_concurrent",
        "user_queued",
    }
    assert all(o.get("min_value") == 0 for o in options_of(subcommands["set"]).values())
    assert list(options_of(commands["usage"])) == ["days"]
    channel_types = options_of(subcommands["channels"])["channel"]["channel_types"]
    assert 1 not in channel_types and 0 in channel_types  # server channels only, never a DM
    assert int(commands["usage"]["default_member_permissions"]) == 1 << 5  # Manage Server
    # /limits show is for everyone, so the group carries no default permission; the bot checks moderators itself.
    assert commands["limits"].get("default_member_permissions") is None


def all_options(command: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every option of a command, subcommands' options included, with the path that names it."""
    found = []
    for option in command.get("options", []):
        found.append((f"{command['name']} {option['name']}", option))
        if option["type"] in (1, 2):  # a subcommand or a group
            found += [(f"{command['name']} {path}", inner) for path, inner in all_options(option)]
    return found


def test_every_command_is_offered_in_servers_only(
    commands: dict[str, dict[str, Any]], several_models: dict[str, dict[str, Any]]
) -> None:
    for command in [*commands.values(), *several_models.values()]:
        assert command["contexts"] == [0], command["name"]  # GUILD only: no DM, no group DM
        assert command["integration_types"] == [0], command["name"]  # installed to servers, not to users
        assert command["dm_permission"] is False, command["name"]


def test_moderator_commands_are_hidden_from_members(commands: dict[str, dict[str, Any]]) -> None:
    manage_server = 1 << 5
    assert int(commands["usage"]["default_member_permissions"]) == manage_server
    # Every other top-level command has something for every member (/limits: its `show`).
    members = {name for name, command in commands.items() if command.get("default_member_permissions") is None}
    assert members == set(commands) - {"usage"}


def test_every_option_has_a_real_description(several_models: dict[str, dict[str, Any]]) -> None:
    for command in several_models.values():
        for path, option in all_options(command):
            description = option["description"]
            # discord.py fills an undescribed option with an ellipsis.
            assert description not in ("…", "...", "") and len(description) >= 10, path
            assert description != option["name"], path


def test_id_options_suggest_and_fixed_sets_are_choices(several_models: dict[str, dict[str, Any]]) -> None:
    options = dict(path_option for command in several_models.values() for path_option in all_options(command))
    ids = [path for path in options if path.endswith(("generation_id", "last_frame_of"))]
    assert len(ids) == 7 and all(options[path].get("autocomplete") is True for path in ids)
    for path in ("generate aspect_ratio", "generate model", "limits channels action", "limits models model"):
        assert options[path]["choices"], path


def test_every_command_is_valid_for_discord(commands: dict[str, dict[str, Any]]) -> None:
    validator = load_validator()
    if validator is None:
        pytest.skip(
            "Discord's OpenAPI description (../shared/discord-api-spec/openapi.json) is not beside the checkout"
        )
    errors = validator.validate("PUT", "/applications/1/commands", list(commands.values()))
    assert errors == []
    for command in commands.values():
        assert len(command["description"]) <= 100
        for option in command.get("options", []):
            assert len(option["description"]) <= 100


def test_the_model_choice_is_offered_only_when_several_models_are_enabled(
    commands: dict[str, dict[str, Any]], several_models: dict[str, dict[str, Any]]
) -> None:
    assert "model" not in options_of(commands["generate"]) and "hdr" not in options_of(commands["generate"])
    assert "reframe" not in commands and "edit" not in commands
    assert "models" not in options_of(commands["limits"])

    generate = options_of(several_models["generate"])
    assert [(c["name"], c["value"]) for c in generate["model"]["choices"]] == [
        ("Ray 2", "luma/ray-2"),
        ("Ray 3.2", "luma/ray-3.2"),
        ("Dream Machine", "legacy"),
    ]
    assert generate["hdr"]["type"] == 5
    assert [c["value"] for c in generate["resolution"]["choices"]] == ["360p", "540p", "720p", "1080p", "4k"]
    assert [c["value"] for c in generate["duration"]["choices"]] == [5, 9, 10]
    assert list(options_of(several_models["reframe"])) == ["generation_id", "aspect_ratio", "prompt"]
    assert list(options_of(several_models["edit"])) == ["generation_id", "prompt"]
    models = options_of(options_of(several_models["limits"])["models"])
    assert [c["value"] for c in models["model"]["choices"]] == ["luma/ray-2", "luma/ray-3.2", "legacy"]
    validator = load_validator()
    if validator is not None:
        assert validator.validate("PUT", "/applications/1/commands", list(several_models.values())) == []
