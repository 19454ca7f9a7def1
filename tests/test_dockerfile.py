"""The Dockerfile: hadolint clean, dependencies in a layer before the code, a numeric user, a health check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.dockerfile import REPO_ROOT, exec_form, instructions


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extra installs it on Linux x86-64)")
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependencies_are_installed_from_pyproject_before_the_code_is_copied(tmp_path: Path) -> None:
    steps = instructions()
    keywords = [f"{step.keyword} {step.arguments}" for step in steps]
    first_code_copy = next(i for i, line in enumerate(keywords) if line.startswith("COPY bot"))
    dependency_step = next(i for i, line in enumerate(keywords) if "pip install --no-cache-dir -r" in line)
    assert dependency_step < first_code_copy
    assert all(not line.startswith("COPY") or "pyproject.toml" in line for line in keywords[:dependency_step])
    # The requirements that layer installs are exactly what pyproject lists for it: run its script here.
    script = re.search(r'python -c "(.+?)"\s*>', keywords[dependency_step])
    assert script is not None
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    listed = subprocess.run(
        [sys.executable, "-c", script.group(1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    # The runtime dependencies and the PostgreSQL driver, so that the image can use DATABASE_URL.
    assert listed == project["dependencies"] + project["optional-dependencies"]["postgres"]
    # The code itself is installed without touching the dependencies again.
    assert any("pip install --no-cache-dir --no-deps ." in line for line in keywords[first_code_copy:])


def test_the_bot_runs_as_a_numeric_non_root_user_with_a_health_check() -> None:
    steps = instructions()
    [user] = [step.arguments for step in steps if step.keyword == "USER"]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)
    [health] = [step for step in steps if step.keyword == "HEALTHCHECK"]
    assert exec_form(health) == ["python", "-m", "bot.health"]
