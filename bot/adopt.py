"""`python -m bot.adopt ROW GENERATION_ID`: hand a generation found by hand to the request that lost its answer.

Where the video service keeps no list of the account's generations, a create whose answer never came can only be
found by the operator (the provider's dashboard, support). The bot's log names the row; this command ties the
generation to it, and the running bot then follows it and announces it to its requester like any other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Protocol

import aiohttp
from dotenv import find_dotenv, load_dotenv

from .api_client import LumaClient, VideoApiError
from .api_v2 import RayClient
from .config import ConfigError, Settings, load_settings
from .errors import UserFacingError
from .models import ApiGeneration, State
from .prompts import clean_generation_id
from .storage import DatabaseUnusable, GenerationStore, open_store
from .video_api import VideoApiRouter, model_of

ADOPTABLE = (State.CHECKING, State.UNCONFIRMED, State.NOT_RECEIVED)


class GenerationFetcher(Protocol):
    async def fetch(self, generation_id: str) -> ApiGeneration | None: ...


async def adopt(store: GenerationStore, api: GenerationFetcher, row_id: int, generation_id: str) -> str:
    """Tie `generation_id` to row `row_id`; returns what happened, in words. Raises UserFacingError when it can't."""
    row = await store.get(row_id)
    if row is None:
        raise UserFacingError(f"There is no row {row_id}.")
    if row.state not in ADOPTABLE or row.api_id is not None:
        raise UserFacingError(f"Row {row_id} is {row.state.label}: only a request without a confirmed id can adopt.")
    if model_of(generation_id) != row.model:
        raise UserFacingError(
            f"Generation {generation_id} was made with {model_of(generation_id)}, but row {row_id} asked {row.model}."
        )
    owner = await store.get_by_api_id(generation_id)
    if owner is not None:
        raise UserFacingError(f"Generation {generation_id} already belongs to row {owner.id}.")
    found = await api.fetch(generation_id)  # a look-up: free, and it proves the id
    if found is None:
        raise UserFacingError(f"The video service does not know generation {generation_id}.")
    adopted = await store.adopt(row_id, found, time.time(), from_states=ADOPTABLE)
    return f"Row {adopted.id} now follows generation {generation_id}; the bot announces it when it is ready."


async def _run(settings: Settings, row_id: int, generation_id: str) -> int:
    try:
        store = await open_store(settings)
    except DatabaseUnusable as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    try:
        async with aiohttp.ClientSession() as session:
            legacy = LumaClient(session, settings.api_base_url, settings.aiml_api_key)
            current = RayClient(session, settings.api_base_url, settings.aiml_api_key)
            print(await adopt(store, VideoApiRouter(legacy, current, settings.luma_models), row_id, generation_id))
        return 0
    except (UserFacingError, VideoApiError) as error:
        print(error.message if isinstance(error, UserFacingError) else f"The video service: {error}", file=sys.stderr)
        return 1
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.adopt",
        description="Tie a generation found by hand to the request whose create answer never came.",
    )
    parser.add_argument("row", type=int, help="the row number the bot's log names")
    parser.add_argument("generation_id", help="the generation's id, as the video service gives it")
    args = parser.parse_args(argv)
    load_dotenv(find_dotenv(usecwd=True))
    try:
        settings = load_settings(os.environ)
        generation_id = clean_generation_id(args.generation_id)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    except UserFacingError as error:
        print(error.message, file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args.row, generation_id))


if __name__ == "__main__":
    sys.exit(main())
