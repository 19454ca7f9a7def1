"""Reading the Dockerfile and an env file as Docker does, for tests that reproduce `docker run` without an engine."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path = REPO_ROOT / "Dockerfile") -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
    return found


def image_environment(steps: list[Instruction]) -> dict[str, str]:
    """What the image's ENV lines set (KEY=VALUE pairs, values as the shell would unquote them)."""
    env: dict[str, str] = {}
    for step in steps:
        if step.keyword == "ENV":
            for pair in shlex.split(step.arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def exec_form(step: Instruction) -> list[str]:
    """The JSON argument list of a CMD, or of a HEALTHCHECK's CMD after its options."""
    arguments = step.arguments
    if step.keyword == "HEALTHCHECK":
        arguments = arguments[arguments.index("CMD ") + len("CMD ") :]
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)
    return parsed


def env_file(path: Path, host: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`docker run --env-file`: KEY=VALUE taken literally (no quotes, no expansion), # comments and blank lines
    skipped, a bare KEY copied from the host's environment when set there."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if equals:
            env[key.strip()] = value
        elif key.strip() in host:
            env[key.strip()] = host[key.strip()]
    return env
