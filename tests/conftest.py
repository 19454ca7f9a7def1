"""Fixtures shared by the layers' tests: a real SQLite file (or, for the storage's behaviour, each backend in turn),
the simulator on loopback, a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.api_client import LumaClient, RetryPolicy
from bot.config import Secret
from bot.simulator import RunningSimulator, SimulatorConfig, run_simulator
from bot.storage import GenerationStore, SqliteStore
from tests.postgres import fresh_database

SIM_KEY = "sim-test-key-0123456789"
# Retries in tests wait milliseconds, not seconds.
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=0.01)


class FakeClock:
    """A clock the test moves by hand, shared by the simulator and the bot's services."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[GenerationStore]:
    opened = await SqliteStore.open(tmp_path / "data" / "bot.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GenerationStore]:
    """The same behaviour on each backend: a fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        opened: GenerationStore = await SqliteStore.open(tmp_path / "data" / "bot.sqlite3")
        yield opened
        await opened.close()
        return
    async with fresh_database() as url:
        from bot.storage.postgres import PostgresStore

        opened = await PostgresStore.open(url)
        try:
            yield opened
        finally:
            await opened.close()


@pytest.fixture
async def simulator(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(api_key=SIM_KEY, processing_after=5, complete_after=60, seed=7, slow_seconds=2)
    async with run_simulator(config, clock=clock) as running:
        yield running


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(simulator: RunningSimulator, http_session: aiohttp.ClientSession) -> LumaClient:
    return LumaClient(http_session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY, read_timeout=1.0)
