"""Fixtures of the end-to-end tests: see harness.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import E2E, running_e2e


@pytest.fixture
async def e2e(tmp_path: Path) -> AsyncIterator[E2E]:
    """The simulator and the fake Discord on loopback; the test starts the bot with ``await e2e.start_bot()``."""
    async with running_e2e(tmp_path) as harness:
        yield harness
