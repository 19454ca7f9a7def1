"""The benchmark's table: one row per figure, today's (a stored baseline run) beside this run's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Figures = dict[str, Any]


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _cpu(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} s"


def _bytes(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} MB"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}% of a core"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}/s"


def _pair(first: str, second: str, show: Callable[[float | None], str]) -> Callable[[Figures], str]:
    return lambda f: f"{show(f.get(first))} / {show(f.get(second))}"


def _one(name: str, show: Callable[[float | None], str]) -> Callable[[Figures], str]:
    return lambda f: show(f.get(name))


def _lookups(label: str) -> Callable[[Figures], str]:
    def cell(f: Figures) -> str:
        per_cycle, per_request = f.get(f"lookups_per_cycle_{label}"), f.get(f"ids_per_lookup_{label}")
        naive = f.get(f"naive_lookups_{label}")
        if per_cycle is None or per_request is None or naive is None:
            return "–"
        return f"{per_cycle:.0f} ({per_request:.0f} ids each; naive {naive:.0f})"

    return cell


def _rss(f: Figures) -> str:
    return " / ".join(_mb(f.get(name)) for name in ("rss_idle_mb", "rss_small_mb", "rss_large_mb"))


def _first_cycle(f: Figures) -> str:
    return f"{_s(f.get('first_cycle_after_start'))} (first look-up {_s(f.get('first_lookup_after_start'))})"


def rows(settings: dict[str, Any]) -> list[tuple[str, Callable[[Figures], str]]]:
    s = settings
    burst, small, large, load = s["burst"], s["running_small"], s["running_large"], s["running_under_load"]
    rate, interval, latency = s["load_rate"], s["poll_interval"], s["latency"]
    return [
        (f"acknowledgement p50 / p99, {burst} /generate at once, 0 running", _pair("ack_0_p50", "ack_0_p99", _ms)),
        ("final answer p50 / p99, same, 0 running", _pair("final_0_p50", "final_0_p99", _ms)),
        (f"acknowledgement p50 / p99, {burst} at once, {large} running", _pair("ack_large_p50", "ack_large_p99", _ms)),
        (f"final answer p50 / p99, same, {large} running", _pair("final_large_p50", "final_large_p99", _ms)),
        (f"look-up requests per cycle, {small} running", _lookups("small")),
        (f"look-up requests per cycle, {large} running", _lookups("large")),
        (f"CPU per cycle, nothing changed, {small} running", _one("cpu_per_cycle_small", _cpu)),
        (f"CPU per cycle, nothing changed, {large} running", _one("cpu_per_cycle_large", _cpu)),
        (
            f"bytes written to storage per cycle, nothing changed, {small} / {large} running",
            _pair("storage_bytes_per_cycle_small", "storage_bytes_per_cycle_large", _bytes),
        ),
        (
            f"bytes handed to write() per cycle (database and log files), {small} / {large} running",
            _pair("written_bytes_per_cycle_small", "written_bytes_per_cycle_large", _bytes),
        ),
        (f"cycle period, {large} running, {interval:g} s interval", _one("cycle_period_large", _s)),
        (
            f"cycle period, longest / mean, {load}+ running and {rate:g} /generate a second",
            _pair("cycle_period_load", "cycle_period_load_mean", _s),
        ),
        (
            f"one cycle's look-ups, {large} running, {latency * 1000:g} ms round trip",
            _one("latency_cycle_lookups", _s),
        ),
        (
            f"announcement delay p50 / p95, at rest, {large} running",
            _pair("announce_rest_p50", "announce_rest_p95", _s),
        ),
        (
            f"announcement delay p50 / p95, {load}+ running and {rate:g} /generate a second",
            _pair("announce_load_p50", "announce_load_p95", _s),
        ),
        ("/generate sent per second under that load", _one("load_commands_per_second", _rate)),
        ("acknowledgement p50 / p99 under that load", _pair("ack_load_p50", "ack_load_p99", _ms)),
        ("final answer p50 / p99 under that load", _pair("final_load_p50", "final_load_p99", _ms)),
        (
            f"CPU busy (bot / fake Discord and simulator), {burst} at once at {large} running",
            _pair("bot_cpu_share_burst_large", "fakes_cpu_share_burst_large", _share),
        ),
        (
            "CPU busy (bot / fake Discord and simulator) under that load",
            _pair("bot_cpu_share_load", "fakes_cpu_share_load", _share),
        ),
        (f"resident memory, idle / {small} / {large} running", _rss),
        (f"first full cycle after a restart, {large} running", _first_cycle),
        (
            f"sustained /generate per second ({s['sustained_senders']} senders)",
            _one("sustained_generate_per_second", _rate),
        ),
    ]


class BadBaseline(Exception):
    """The baseline file holds something other than a JSON list of stored runs."""


def read_baselines(path: Path) -> list[dict[str, Any]]:
    """The stored runs in `path`; a missing or empty file (such as /dev/null) means no baseline."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise BadBaseline(f"{path} cannot be read: {error.strerror}") from error
    if not text.strip():
        return []
    try:
        runs = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadBaseline(f"{path} is not JSON: {error}") from error
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise BadBaseline(f"{path} is not a JSON list of stored runs (the format --save writes, in a list)")
    return runs


def table(run: dict[str, Any], baselines: list[dict[str, Any]]) -> str:
    """A Markdown table of this run, beside the stored baseline run made with the same settings, if any."""
    baseline = next((b for b in baselines if b.get("settings") == run["settings"]), None)
    before, after = run["machine"]["before"], run["machine"]["after"]
    lines = [
        f"Bot {run['bot']}, {run['date']}: {before['cores']} cores, load average (1, 5, 15 min) "
        f"{before['load_average']} before and {after['load_average']} after; the run took {run['seconds']} s.",
        "Settings: " + ", ".join(f"{key}={value}" for key, value in sorted(run["settings"].items())),
        (
            f"'today' is bot {baseline['bot']}, measured on {baseline['date']} with the same settings."
            if baseline is not None
            else "No stored baseline has these settings: 'today' is left empty."
        ),
        "",
        "| figure | today | new |",
        "|---|---|---|",
    ]
    for label, cell in rows(run["settings"]):
        today = cell(baseline["figures"]) if baseline is not None else "–"
        lines.append(f"| {label} | {today} | {cell(run['figures'])} |")
    lines += [f"\nNote: {note}" for note in run["notes"]]
    return "\n".join(lines)
