"""`python -m bench`: run the benchmark and print its table (see docs/benchmark.md)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import BadBaseline, read_baselines, table
from .scenario import FULL, QUICK, Bench, bench_environment, machine

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = PROJECT / "bench" / "baseline.json"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Start the real bot against the fake Discord and the API simulator on loopback, and measure it.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and short windows (about a minute)")
    parser.add_argument("--interval", type=float, help="POLL_INTERVAL_SECONDS of the bot (default 2, quick 1)")
    parser.add_argument("--latency", type=float, help="simulated API round trip in seconds (default 0.15)")
    parser.add_argument("--bot-dir", type=Path, default=PROJECT, help="the checkout whose bot is measured")
    parser.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help="stored runs (JSON list) shown as 'today'"
    )
    parser.add_argument("--save", type=Path, help="write this run's figures to this JSON file")
    parser.add_argument("--workdir", type=Path, help="keep the database and the bot's logs here")
    return parser.parse_args(argv)


def _revision(directory: Path) -> str:
    try:
        found = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return found.stdout.strip()


async def _measure(settings: Any, bot_dir: Path, workdir: Path) -> dict[str, Any]:
    started = time.time()
    before = machine()
    async with bench_environment(workdir, settings) as (e2e, running):
        bench = Bench(e2e, running, settings, bot_dir, log=lambda line: print(line, file=sys.stderr, flush=True))
        results = await bench.run()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "bot": _revision(bot_dir),
        "settings": settings.described(),
        "machine": {"before": before, "after": machine()},
        "seconds": round(time.time() - started, 1),
        "figures": results.figures,
        "notes": results.notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    settings = QUICK if args.quick else FULL
    overrides = {"poll_interval": args.interval, "latency": args.latency}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    bot_dir = args.bot_dir.resolve()
    if not (bot_dir / "bot" / "__main__.py").exists():
        print(f"No bot in {bot_dir} (expected bot/__main__.py there)", file=sys.stderr)
        return 2
    try:
        # Read before the run, so that a bad file is named at once rather than after minutes of measuring.
        baselines = read_baselines(args.baseline)
    except BadBaseline as error:
        print(f"--baseline: {error}", file=sys.stderr)
        return 2
    print(f"Measuring the bot in {bot_dir} ({'quick' if settings.quick else 'full'} run)", file=sys.stderr)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run = asyncio.run(_measure(settings, bot_dir, args.workdir.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="bot-bench-") as workdir:
            run = asyncio.run(_measure(settings, bot_dir, Path(workdir)))
    if args.save is not None:
        args.save.write_text(json.dumps(run, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(table(run, baselines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
