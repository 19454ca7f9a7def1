"""`docker run --env-file .env -v luma-data:/data luma-video-bot`, reproduced without a Docker engine.

The process gets the environment the container would: the image's ENV lines, then the env file's values (which
win), as `docker run` builds it. The container's /data volume is a folder of the test, and the working directory
stands for /app, where the bot must write nothing: a database there would vanish with the container.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.dockerfile import REPO_ROOT, env_file, exec_form, image_environment, instructions

from .harness import E2E, STEP

VOLUME = "/data"


def container_environment() -> dict[str, str]:
    return image_environment(instructions()) | env_file(REPO_ROOT / ".env.example")


def in_volume(value: str, volume: Path) -> str:
    """A path of the container under /data, as the volume's folder on this machine."""
    return str(volume / value.removeprefix(VOLUME + "/")) if value.startswith(VOLUME + "/") else value


def command(keyword: str) -> list[str]:
    [step] = [step for step in instructions() if step.keyword == keyword]
    argv = exec_form(step)
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


async def test_the_example_env_file_alone_names_the_missing_token(e2e: E2E) -> None:
    e2e.env = container_environment()
    run = await e2e.start_bot(wait=False)
    status = await asyncio.wait_for(run.process.wait(), STEP)
    assert status == 2
    assert run.log().strip() == "Configuration error: DISCORD_TOKEN is required but not set (see .env.example)"


async def test_docker_run_with_the_example_env_file_keeps_the_database_in_the_volume(e2e: E2E) -> None:
    env = container_environment()
    # The image's database path wins over anything .env.example could say.
    assert env["DATABASE_PATH"] == "/data/bot.sqlite3"
    # The README's edits to .env: the two secrets, and (to try it for free) the simulator; plus this test's Discord.
    env |= {
        "DISCORD_TOKEN": e2e.fake.token,
        "AIML_API_KEY": e2e.sim.config.api_key,
        "AIML_API_BASE_URL": e2e.sim.base_url,
        "DISCORD_API_BASE_URL": e2e.fake.base_url,
    }
    volume = e2e.tmp_path / "volume"
    volume.mkdir()
    e2e.env = {name: in_volume(value, volume) for name, value in env.items()}
    e2e.db_path = volume / "bot.sqlite3"
    assert command("CMD") == [sys.executable, "-m", "bot"]  # what the harness starts

    run = await e2e.start_bot()
    started = await e2e.generate("A crane folding itself from paper")
    # .env.example polls every 10 s: the video is announced at the first look-up after it finished.
    await e2e.wait_announcement(started.generation_id, timeout=30)
    assert e2e.db_query("SELECT state FROM generations") == [("completed",)]
    assert not (e2e.tmp_path / "data").exists(), "the bot wrote a database outside the volume"

    # The image's HEALTHCHECK, run as Docker would, in the running container.
    heartbeat = volume / "bot.sqlite3.heartbeat"
    await e2e.wait_until(
        lambda: heartbeat.exists() and '"discord_connected": true' in heartbeat.read_text(encoding="utf-8"),
        "a heartbeat of a connected bot",
        15,
    )
    health = await asyncio.create_subprocess_exec(
        *command("HEALTHCHECK"), cwd=e2e.tmp_path, env=e2e._process_env(), stdout=asyncio.subprocess.PIPE
    )
    output, _ = await asyncio.wait_for(health.communicate(), STEP)
    assert health.returncode == 0, output.decode()

    assert "Traceback" not in run.log() and "PyNaCl" not in run.log()
    e2e.finish()
