"""The example docker-compose.yml: PostgreSQL and bot processes that together run every shard once, on one database,
with valid settings and no secret written in the file; `docker compose config` accepts it where the client exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PLACEHOLDER_PASSWORD = "example"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def bot_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in spec["services"].items() if service.get("build") == "."}


def interpolated(value: str) -> str:
    """A value as compose gives it to the container, with the password compose reads from .env."""
    return re.sub(r"\$\{POSTGRES_PASSWORD(:\?[^}]*)?\}", PLACEHOLDER_PASSWORD, value)


def test_postgresql_keeps_its_data_in_a_named_volume_and_says_when_it_is_ready() -> None:
    spec = compose()
    [database] = [
        service for service in spec["services"].values() if str(service.get("image", "")).startswith("postgres:")
    ]
    volume = next(v.split(":")[0] for v in database["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert volume in spec["volumes"]
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert database["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")


def test_the_bot_processes_share_one_database_and_run_every_shard_once() -> None:
    spec = compose()
    bots = bot_services(spec)
    assert len(bots) >= 2
    required = {"DISCORD_TOKEN": "token", "AIML_API_KEY": "key"}
    shards: list[int] = []
    counts: set[int | None] = set()
    urls: set[str] = set()
    syncing = []
    for name, service in bots.items():
        environment = {key: interpolated(str(value)) for key, value in service["environment"].items()}
        assert service["env_file"] == ".env" and not required.keys() & environment.keys(), f"{name} names a secret"
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        settings = load_settings(required | environment)
        assert settings.shard_ids is not None, f"{name} runs no shards of its own"
        shards += settings.shard_ids
        counts.add(settings.shard_count)
        urls.add(environment["DATABASE_URL"])
        if settings.syncs_commands:
            syncing.append(name)
    [count] = counts
    assert count is not None and sorted(shards) == list(range(count))
    assert len(syncing) == 1
    [url] = urls
    assert re.fullmatch(rf"postgresql://bot:{PLACEHOLDER_PASSWORD}@db:5432/videos", url)


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode:
        pytest.skip("the docker compose client is not installed here")
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(
        f"DISCORD_TOKEN=token\nAIML_API_KEY=key\nPOSTGRES_PASSWORD={PLACEHOLDER_PASSWORD}\n", encoding="utf-8"
    )
    result = subprocess.run(
        [docker, "compose", "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
