from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.__main__ import configure_logging
from bot.config import DEFAULT_API_BASE_URL, ConfigError, load_settings
from tests.postgres import reachable_server

REQUIRED = {"DISCORD_TOKEN": "discord-secret-token", "AIML_API_KEY": "aiml-secret-key"}


def test_defaults_apply_when_only_the_secrets_are_set() -> None:
    settings = load_settings(REQUIRED)
    assert settings.api_base_url == DEFAULT_API_BASE_URL
    assert settings.database_path == Path("data/bot.sqlite3")
    assert settings.poll_interval_seconds == 10
    assert settings.generation_timeout_seconds == 30 * 60
    assert settings.dev_guild_id is None
    assert settings.log_level == "INFO"
    assert (settings.reconcile_first_check_seconds, settings.reconcile_window_minutes) == (30, 60)
    assert (settings.max_running_generations, settings.queue_timeout_seconds) == (0, 60 * 60)


def test_values_are_read_and_fractions_allowed() -> None:
    settings = load_settings(
        REQUIRED
        | {
            "AIML_API_BASE_URL": "http://127.0.0.1:8787/",
            "DATABASE_PATH": "/tmp/x/bot.db",
            "POLL_INTERVAL_SECONDS": "0.5",
            "GENERATION_TIMEOUT_MINUTES": "2.5",
            "DEV_GUILD_ID": "123456789012345678",
            "LOG_LEVEL": "debug",
            "MAX_RUNNING_GENERATIONS": "2",
            "QUEUE_TIMEOUT_MINUTES": "0.5",
        }
    )
    assert (settings.max_running_generations, settings.queue_timeout_seconds) == (2, 30)
    assert settings.api_base_url == "http://127.0.0.1:8787"
    assert settings.poll_interval_seconds == 0.5
    assert settings.generation_timeout_seconds == 150
    assert settings.dev_guild_id == 123456789012345678
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISCORD_TOKEN", ""),
        ("AIML_API_KEY", "   "),
        ("AIML_API_BASE_URL", "not a url"),
        ("POLL_INTERVAL_SECONDS", "fast"),
        ("POLL_INTERVAL_SECONDS", "0"),
        ("GENERATION_TIMEOUT_MINUTES", "-1"),
        ("DEV_GUILD_ID", "my-server"),
        ("LOG_LEVEL", "LOUD"),
        ("RECONCILE_FIRST_CHECK_SECONDS", "0"),
        ("RECONCILE_FIRST_CHECK_SECONDS", "61"),
        ("RECONCILE_WINDOW_MINUTES", "forever"),
        ("RECONCILE_WINDOW_MINUTES", "1441"),
        ("MAX_RUNNING_GENERATIONS", "-1"),
        ("MAX_RUNNING_GENERATIONS", "two"),
        ("QUEUE_TIMEOUT_MINUTES", "0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(REQUIRED | {name: value})


@pytest.mark.parametrize(
    ("env", "count", "ids", "syncs"),
    [
        ({}, None, None, True),
        ({"SHARD_COUNT": "4"}, 4, None, True),
        ({"SHARD_COUNT": "8", "SHARD_IDS": "0-3"}, 8, (0, 1, 2, 3), True),
        ({"SHARD_COUNT": "8", "SHARD_IDS": " 4, 5 "}, 8, (4, 5), False),
        ({"SHARD_COUNT": "8", "SHARD_IDS": "6,1-2"}, 8, (1, 2, 6), False),
    ],
)
def test_shards_are_read_and_only_shard_0_syncs_the_commands(
    env: dict[str, str], count: int | None, ids: tuple[int, ...] | None, syncs: bool
) -> None:
    settings = load_settings(REQUIRED | env)
    assert (settings.shard_count, settings.shard_ids, settings.syncs_commands) == (count, ids, syncs)


def test_processes_sharing_the_bot_split_discord_s_global_limit_by_their_shards() -> None:
    from bot.pacing import ANNOUNCEMENTS_PER_SECOND, share_of
    from bot.progress import GLOBAL_EDITS

    alone = load_settings(REQUIRED)
    parts = [load_settings(REQUIRED | {"SHARD_COUNT": "8", "SHARD_IDS": ids}) for ids in ("0-3", "4,5", "6-7")]
    assert alone.discord_share == 1.0 and [p.discord_share for p in parts] == [0.5, 0.25, 0.25]
    for limit in (ANNOUNCEMENTS_PER_SECOND, GLOBAL_EDITS):
        assert share_of(limit, alone.discord_share) == limit
        assert sum(share_of(limit, p.discord_share) for p in parts) <= limit
    # A process with one of many shards still gets its work out.
    assert share_of(ANNOUNCEMENTS_PER_SECOND, 1 / 64) == 1


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT"),
        ({"SHARD_COUNT": "many"}, "SHARD_COUNT"),
        ({"SHARD_IDS": "0-1"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "4"}, "SHARD_IDS must be under SHARD_COUNT"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "3-1"}, "SHARD_IDS"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,0-1"}, "SHARD_IDS names a shard twice"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "one"}, "SHARD_IDS"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "1,,2"}, "SHARD_IDS"),
    ],
)
def test_bad_shard_settings_are_refused_in_one_line(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as refused:
        load_settings(REQUIRED | env)
    assert "\n" not in str(refused.value)


def test_secrets_never_show_in_a_repr() -> None:
    settings = load_settings(REQUIRED)
    text = repr(settings) + str(settings.discord_token) + f"{settings.aiml_api_key}"
    assert "discord-secret-token" not in text
    assert "aiml-secret-key" not in text
    assert settings.discord_token.reveal() == "discord-secret-token"


def run_bot(env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    """Start `python -m bot` in `folder` with only `env` (it exits before reaching Discord in these tests)."""
    return subprocess.run(
        [sys.executable, "-m", "bot"], env=env, cwd=folder, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_process_exits_2_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AIML_API_KEY": "k", "HOME": str(tmp_path)}
    result = run_bot(env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_environment_variables_win_over_the_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=from-file\nAIML_API_KEY=k\nPOLL_INTERVAL_SECONDS=oops\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "POLL_INTERVAL_SECONDS": "also-bad"}
    result = run_bot(env, tmp_path)
    assert result.returncode == 2
    assert "'also-bad'" in result.stderr


def test_an_unusable_database_path_is_named_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DISCORD_TOKEN": "t",
        "AIML_API_KEY": "k",
        "DATABASE_PATH": str(tmp_path / "a-file" / "bot.sqlite3"),
    }
    result = run_bot(env, tmp_path)
    assert result.returncode == 2
    assert "DATABASE_PATH" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["not a database", "unopenable"])
def test_a_database_sqlite_cannot_open_stops_the_bot_with_its_one_line_and_nothing_after(
    tmp_path: Path, kind: str
) -> None:
    if kind == "not a database":
        path = tmp_path / "notes.txt"
        path.write_text("these are notes, not a database\n" * 200)
    else:
        path = Path("/proc/version")  # a file, but not one SQLite can open
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DISCORD_TOKEN": "t0ken", "AIML_API_KEY": "k3y"}
    for _ in range(3):  # the leftover thread's noise was a race: look more than once
        result = run_bot(env | {"DATABASE_PATH": str(path)}, tmp_path)
        assert result.returncode == 2
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("Configuration error: DATABASE_PATH") and str(path) in last
        assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr


def test_database_url_is_read_and_its_password_never_shows() -> None:
    settings = load_settings(REQUIRED | {"DATABASE_URL": "postgresql://bot:pa55-w0rd@db.example:5433/videos"})
    assert settings.database_url is not None
    assert settings.database_url.reveal() == "postgresql://bot:pa55-w0rd@db.example:5433/videos"
    assert settings.database_url.shown() == "postgresql://bot:***@db.example:5433/videos"
    text = repr(settings) + str(settings.database_url) + f"{settings.database_url!r}"
    assert "pa55-w0rd" not in text
    assert load_settings(REQUIRED).database_url is None


@pytest.mark.parametrize(
    "url",
    [
        "mysql://bot:pa55-w0rd@db/videos",
        "postgresql://bot:pa55-w0rd@db:port/videos",
        "postgresql://bot:pa55-w0rd@db:5432",
        "bot:pa55-w0rd@db/videos",
        "postgresql://bot:pa55-w0rd@[::1/videos",
    ],
)
def test_a_malformed_database_url_is_refused_naming_it_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as refused:
        load_settings(REQUIRED | {"DATABASE_URL": url})
    assert "pa55-w0rd" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        (
            "postgresql://bot@db.example/videos?sslmode=require&password=s3cret",
            "postgresql://bot@db.example/videos?sslmode=require&password=***",
            {"s3cret"},
        ),
        (
            "postgresql://bot:p%40ss%2Fw0rd@db.example/videos",
            "postgresql://bot:***@db.example/videos",
            {"p%40ss%2Fw0rd", "p@ss/w0rd"},
        ),
        (
            "postgresql://bot:f1rst-pw@db.example/videos?password=s%33cond",
            "postgresql://bot:***@db.example/videos?password=***",
            {"f1rst-pw", "s%33cond", "s3cond"},
        ),
    ],
)
def test_a_password_given_in_the_query_or_percent_encoded_never_shows(url: str, shown: str, secrets: set[str]) -> None:
    settings = load_settings(REQUIRED | {"DATABASE_URL": url})
    assert settings.database_url is not None and settings.database_url.reveal() == url
    assert settings.database_url.shown() == shown
    assert set(settings.database_url.secrets) == secrets
    text = repr(settings) + str(settings.database_url) + f"{settings.database_url!r}"
    assert not any(secret in text for secret in secrets)


def test_every_form_of_the_database_password_is_redacted_from_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://bot:p%40ss@db.example/videos?password=s%33cret"
    settings = load_settings(REQUIRED | {"DATABASE_URL": url})
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(settings)
        logging.getLogger("bot.test").error("tried %s, %s, %s and %s", "p@ss", "p%40ss", "s3cret", "s%33cret")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    logged = capsys.readouterr().err
    assert "tried [redacted], [redacted], [redacted] and [redacted]" in logged


def test_a_url_naming_several_hosts_is_accepted_and_a_bad_port_among_them_named() -> None:
    url = "postgresql://bot:pa55-w0rd@db1.example:5432,db2.example:5433/videos"
    settings = load_settings(REQUIRED | {"DATABASE_URL": url})
    assert settings.database_url is not None and settings.database_url.reveal() == url
    assert settings.database_url.shown() == "postgresql://bot:***@db1.example:5432,db2.example:5433/videos"
    with pytest.raises(ConfigError, match="port") as refused:
        load_settings(REQUIRED | {"DATABASE_URL": "postgresql://bot:pa55-w0rd@db1:5432,db2:port/videos"})
    assert "db2:port" in str(refused.value) and "pa55-w0rd" not in str(refused.value)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("where", ["user info", "query"])
def test_a_database_server_that_refuses_the_connection_stops_the_bot_with_one_line_and_exit_2(
    tmp_path: Path, where: str
) -> None:
    url = f"postgresql://bot:pa55-w0rd@127.0.0.1:{_closed_port()}/videos"
    if where == "query":
        url = f"postgresql://bot@127.0.0.1:{_closed_port()}/videos?password=pa55-w0rd"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DISCORD_TOKEN": "t", "AIML_API_KEY": "k"}
    result = run_bot(env | {"DATABASE_URL": url, "DATABASE_PATH": str(tmp_path / "bot.sqlite3")}, tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Configuration error: DATABASE_URL") and "127.0.0.1" in last
    assert "pa55-w0rd" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert not (tmp_path / "bot.sqlite3").exists()  # nothing fell back to SQLite


async def test_a_database_the_server_does_not_have_stops_the_bot_with_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = await reachable_server() + "/no_such_database_here"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DISCORD_TOKEN": "t", "AIML_API_KEY": "k"}
    result = run_bot(env | {"DATABASE_URL": missing}, tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Configuration error: DATABASE_URL") and "no_such_database_here" in last
    assert "Traceback" not in result.stderr
