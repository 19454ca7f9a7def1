"""`python -m bot.migrate_to_postgres`: copy the bot's SQLite database into PostgreSQL.

Reads DATABASE_PATH and DATABASE_URL like the bot (the environment, then .env), or takes them as options. Every
table is copied; rows already in PostgreSQL are left as they are, so running it again changes nothing. It ends by
counting each table's rows on both sides, and exits 1 when they differ. Stop the bot before copying.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

from .config import ConfigError, DatabaseUrl, database_path, database_url
from .storage import TABLES, DatabaseUnusable, open_postgres, open_sqlite

EXIT_COUNTS_DIFFER = 1
EXIT_CONFIG_ERROR = 2


async def copy_all(source: Path, url: DatabaseUrl) -> bool:
    """Copy every table and print the counts; True when both sides hold the same number of rows in each."""
    sqlite = await open_sqlite(source)
    try:
        postgres = await open_postgres(url)
        try:
            print(f"Copying {source} into {url.shown()}")
            same = True
            for table in TABLES:
                columns, rows = await sqlite.table_rows(table)
                added = await postgres.import_rows(table, columns, rows)
                here, there = await sqlite.row_count(table), await postgres.row_count(table)
                same = same and here == there
                verdict = "same" if here == there else "DIFFERENT"
                print(f"{table}: SQLite {here} rows, PostgreSQL {there} rows ({added} copied now) - {verdict}")
            return same
        finally:
            await postgres.close()
    finally:
        await sqlite.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.migrate_to_postgres",
        description="Copy the bot's SQLite database into PostgreSQL (again and again: rows already there are kept), "
        "then compare the tables' row counts.",
    )
    parser.add_argument("--sqlite", metavar="PATH", help="the SQLite file (default: DATABASE_PATH)")
    parser.add_argument("--database-url", metavar="URL", help="the PostgreSQL database (default: DATABASE_URL)")
    args = parser.parse_args(argv)
    load_dotenv(find_dotenv(usecwd=True))
    env = dict(os.environ)
    if args.sqlite:
        env["DATABASE_PATH"] = args.sqlite
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    try:
        source = database_path(env)
        url = database_url(env)
        if url is None:
            raise ConfigError("DATABASE_URL is not set: set it (or pass --database-url) to say where to copy to")
        if not source.is_file():
            raise ConfigError(f"DATABASE_PATH {str(source)!r} is not a file: there is nothing to copy")
        same = asyncio.run(copy_all(source, url))
    except (ConfigError, DatabaseUnusable) as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if not same:
        print("The row counts differ: rows PostgreSQL held before were kept (see above).", file=sys.stderr)
        return EXIT_COUNTS_DIFFER
    return 0


if __name__ == "__main__":
    sys.exit(main())
