"""A database of its own for each PostgreSQL test, on the server this project's machines run on 127.0.0.1:5432.

Where no server answers, the tests that need one are skipped, saying why; under CI (the CI variable set) they fail
instead, since CI starts the server (.ci/run) and a skip there would hide a broken backend."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

SERVER_URL = "postgresql://postgres@127.0.0.1:5432"
# The database that always exists, from which the tests' own databases are made and dropped.
ADMIN_URL = f"{SERVER_URL}/postgres"
CONNECT_TIMEOUT = 5.0

_unreachable: list[str] = []


def _give_up(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"no PostgreSQL server to test against: {reason}")


async def _admin_connection():  # type: ignore[no-untyped-def]
    """A connection to the server's `postgres` database, or a skip (a failure under CI) saying why there is none."""
    if _unreachable:
        _give_up(_unreachable[0])
    try:
        import asyncpg
    except ImportError:
        _unreachable.append("asyncpg is not installed (pip install -e '.[test]')")
        _give_up(_unreachable[0])
    try:
        return await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        _unreachable.append(f"{ADMIN_URL} did not answer ({error or type(error).__name__})")
        _give_up(_unreachable[0])


async def reachable_server() -> str:
    """The server's URL (without a database), once it answered; a skip (a failure under CI) where it does not."""
    admin = await _admin_connection()
    await admin.close()
    return SERVER_URL


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped (with any connection left to it) when the block ends."""
    name = f"bot_test_{uuid.uuid4().hex}"
    admin = await _admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{SERVER_URL}/{name}"
    finally:
        admin = await _admin_connection()
        try:
            await asyncio.wait_for(admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 30)
        finally:
            await admin.close()


async def databases_of_tests() -> list[str]:
    """The databases of these tests now on the server."""
    admin = await _admin_connection()
    try:
        rows = await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bot\\_test\\_%'")
    finally:
        await admin.close()
    return [row[0] for row in rows]
