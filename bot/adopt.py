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
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

from .config import ConfigError, load_settings
from .errors import UserFacingError
from .models import ApiGeneration, State
from .prompts import clean_generation_id
from .storage import GenerationStore

ADOPTABLE = (State.CHECKING, State.UNCONFIRMED, State.NOT_RECEIVED)


async def adopt(store: GenerationStore, row_id: int, generation_id: str) -> str:
    """Tie `generation_id` to row `row_id`; returns what happened, in words. Raises UserFacingError when it can't."""
    row = await store.get(row_id)
    if row is None:
        raise UserFacingError(f"There is no row {row_id}.")
    if row.state not in ADOPTABLE or row.api_id is not None:
        raise UserFacingError(f"Row {row_id} is {row.state.label}: only a request without a confirmed id can adopt.")
    owner = await store.get_by_api_id(generation_id)
    if owner is not None:
        raise UserFacingError(f"Generation {generation_id} already belongs to row {owner.id}.")
    adopted = await store.adopt(row_id, ApiGeneration(generation_id, "pending"), time.time(), from_states=ADOPTABLE)
    return f"Row {adopted.id} now follows generation {generation_id}; the bot announces it when it is ready."


async def _run(database: Path, row_id: int, generation_id: str) -> int:
    store = await GenerationStore.open(database)
    try:
        print(await adopt(store, row_id, generation_id))
        return 0
    except UserFacingError as error:
        print(error.message, file=sys.stderr)
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
    return asyncio.run(_run(settings.database_path, args.row, generation_id))


if __name__ == "__main__":
    sys.exit(main())
