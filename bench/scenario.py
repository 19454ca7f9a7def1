"""The benchmark's steps: each drives the real bot process from outside and records what it measured.

Everything is observed where a member or an operator would see it: interaction callbacks and messages at the fake
Discord, requests at the simulator, and the bot process's counters in /proc.
"""

# Waits take explicit timeouts: every wait of the benchmark is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.simulator import RecordedRequest, SimulatorConfig, run_simulator
from tests.e2e.fake_discord import FakeDiscord, FakeMessage, InteractionHandle, MessageKind, run_fake_discord
from tests.e2e.harness import E2E, GENERATION_ID

from .process import sample
from .world import RunningSet, bench_world

LOOKUP = "GET /luma-ai/generation"
LOOKUP_BATCH = 50
ANNOUNCEMENT_KINDS = (MessageKind.CHANNEL, MessageKind.DM)


@dataclass(frozen=True)
class Settings:
    """The run's sizes and pace."""

    quick: bool
    poll_interval: float
    running_small: int
    running_large: int
    running_under_load: int
    burst: int
    load_rate: float
    load_seconds: float
    sustained_seconds: float
    sustained_senders: int
    latency: float
    members: int = 200
    steady_cycles: int = 3
    # Videos made to finish per second while announcement delays are measured.
    finishing_rate: float = 5.0

    def described(self) -> dict[str, Any]:
        return asdict(self)


FULL = Settings(
    quick=False,
    poll_interval=2.0,
    running_small=1_000,
    running_large=10_000,
    running_under_load=5_000,
    burst=200,
    load_rate=100.0,
    load_seconds=30.0,
    sustained_seconds=10.0,
    sustained_senders=50,
    latency=0.150,
)
QUICK = Settings(
    quick=True,
    poll_interval=1.0,
    running_small=100,
    running_large=400,
    running_under_load=200,
    burst=20,
    load_rate=10.0,
    load_seconds=3.0,
    sustained_seconds=2.0,
    sustained_senders=5,
    latency=0.150,
    members=20,
    steady_cycles=2,
)


@dataclass
class Results:
    figures: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, name: str, value: float | None) -> None:
        self.figures[name] = value


def percentile(values: Iterable[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def lookup_ids(request: RecordedRequest) -> list[str]:
    return [value for key, value in request.query.items() if key.startswith("ids")]


class Bench:
    """One benchmark run against one bot checkout."""

    def __init__(self, e2e: E2E, running: RunningSet, settings: Settings, bot_dir: Path, log: Callable[[str], None]):
        self.e2e = e2e
        self.fake: FakeDiscord = e2e.fake
        self.running = running
        self.settings = settings
        self.bot_dir = bot_dir
        self.results = Results()
        self.say = log
        self._members = [user for user in self.fake.world.users if user.username.startswith("member")]
        self._scanned = 0  # simulator requests already looked at by wait_for_lookup_of

    # -- the bot process ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.e2e.bot.process.pid

    def _environment(self) -> dict[str, str]:
        return {
            "PYTHONPATH": str(self.bot_dir),
            "POLL_INTERVAL_SECONDS": f"{self.settings.poll_interval:g}",
            "LOG_LEVEL": "INFO",
        }

    async def start(self) -> None:
        self.e2e.env.update(self._environment())
        await self.e2e.start_bot()

    async def stop(self) -> None:
        if self.e2e.runs and self.e2e.bot.running:
            try:
                await self.e2e.terminate_bot(timeout=15.0)
            except AssertionError:
                await self.e2e.kill_bot()
            await self.fake.wait_until_disconnected(10.0)

    # -- the steps ---------------------------------------------------------------------------------------

    async def run(self) -> Results:
        s = self.settings
        await self.start()
        await asyncio.sleep(1.0)
        self.results.put("rss_idle_mb", sample(self.pid).rss_bytes / 2**20)
        await self.burst("0")
        await self.restart_with(s.running_small)
        await self.steady("small")
        await self.restart_with(s.running_under_load)
        await self.under_load()
        await self.sustained()
        await self.first_cycle_after_restart()
        await self.steady("large")
        await self.announcements("rest")
        await self.burst("large")
        await self.lookups_at_latency()
        await self.stop()
        return self.results

    async def restart_with(self, total: int) -> None:
        await self.stop()
        added = self.running.fill_to(total)
        self.say(f"  {added} running generations added ({total} in all); restarting the bot")
        await self.start()

    async def burst(self, label: str) -> None:
        """`burst` /generate at the same moment: acknowledgement and final answer latencies."""
        count = self.settings.burst
        self.say(f"  {count} simultaneous /generate with {len(self.running.running_ids())} running")
        with self._cpu_shares(f"burst_{label}"):
            handles = await asyncio.gather(*(self._generate(n) for n in range(count)))
            finals = await self._final_answers(handles, timeout=60.0)
        acks = [latency for handle in handles if (latency := self._ack_latency(handle)) is not None]
        self._put_latencies(f"ack_{label}", acks, (0.5, 0.99))
        self._put_latencies(f"final_{label}", finals, (0.5, 0.99))
        late = sum(1 for handle in handles if handle.callback is None)
        if late or len(finals) < count:
            self.results.notes.append(
                f"burst at {label}: {late} of {count} not acknowledged in time, {count - len(finals)} without an answer"
            )

    async def steady(self, label: str) -> None:
        """Cycles with nothing changing: look-ups, CPU, bytes written, period, memory."""
        cycles = self.settings.steady_cycles
        running = self.running.running_ids()
        marker = running[0]
        self.say(f"  {cycles} quiet cycles with {len(running)} running")
        self.skip_seen_requests()
        # Three cycle starts first: the first cycle after a start may still record changes made while it was down,
        # and the first two may still hold the start-up's last log line ("Logged in as …", once the guilds came).
        for _ in range(2):
            await self.wait_for_lookup_of(marker, timeout=120.0)
        first = await self.wait_for_lookup_of(marker, timeout=120.0)
        before = sample(self.pid)
        last = first
        for _ in range(cycles):
            last = await self.wait_for_lookup_of(marker, timeout=120.0)
        cost = sample(self.pid).minus(before)
        lookups = [
            r
            for r in self.e2e.sim.state.requests
            if r.endpoint == LOOKUP and first.received_at <= r.received_at < last.received_at
        ]
        ids = sum(len(lookup_ids(r)) for r in lookups)
        # Every cycle asks for every running id once; the batches of one cycle need not arrive in order, so the
        # requests are counted per id asked for rather than between two arrivals of the first batch.
        self.results.put(f"lookups_per_cycle_{label}", len(lookups) * len(running) / ids if ids else None)
        self.results.put(f"ids_per_lookup_{label}", ids / len(lookups) if lookups else None)
        self.results.put(f"naive_lookups_{label}", len(running))
        self.results.put(f"cpu_per_cycle_{label}", cost.cpu_seconds / cycles)
        self.results.put(f"storage_bytes_per_cycle_{label}", cost.storage_bytes / cycles)
        self.results.put(f"written_bytes_per_cycle_{label}", cost.written_bytes / cycles)
        self.results.put(f"write_calls_per_cycle_{label}", cost.write_calls / cycles)
        self.results.put(f"cycle_period_{label}", (last.received_at - first.received_at) / cycles)
        self.results.put(f"rss_{label}_mb", cost.rss_bytes / 2**20)

    async def under_load(self) -> None:
        """A steady stream of /generate while videos finish: cycle period and announcement delays."""
        s = self.settings
        marker = self.running.running_ids()[0]
        self.say(f"  {s.load_rate:g} /generate a second for {s.load_seconds:g}s with {s.running_under_load} running")
        self.skip_seen_requests()
        cycle_starts = [(await self.wait_for_lookup_of(marker, timeout=120.0)).received_at]

        async def watch_cycles() -> None:
            while True:
                cycle_starts.append((await self.wait_for_lookup_of(marker, timeout=600.0)).received_at)

        watcher = asyncio.create_task(watch_cycles())
        finishing = asyncio.create_task(self._finish_videos(s.load_seconds))
        started = time.monotonic()
        with self._cpu_shares("load"):
            handles = await self._send_at_rate(s.load_rate, s.load_seconds)
        load_ended = time.monotonic()
        finished_at = await finishing
        # The cycles are watched until the announcements are in, so that a cycle longer than the load is seen whole.
        delays = await self._announcement_delays(finished_at, timeout=120.0)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        periods = [b - a for a, b in itertools.pairwise(cycle_starts) if a < load_ended]
        self.results.put("cycle_period_load", max(periods) if periods else None)
        self.results.put("cycle_period_load_mean", sum(periods) / len(periods) if periods else None)
        self.results.put("load_commands_per_second", len(handles) / (load_ended - started))
        self._put_latencies("announce_load", delays, (0.5, 0.95))
        finals = await self._final_answers(handles, timeout=60.0)
        self._put_latencies("final_load", finals, (0.5, 0.99))
        acks = [latency for handle in handles if (latency := self._ack_latency(handle)) is not None]
        self._put_latencies("ack_load", acks, (0.5, 0.99))
        if len(finals) < len(handles):
            self.results.notes.append(f"under load: {len(handles) - len(finals)} commands without an answer")

    async def announcements(self, label: str) -> None:
        """Videos finishing at a steady pace with nothing else going on: how late each is announced."""
        seconds = max(2 * self.settings.poll_interval, 4.0)
        self.say(f"  videos finishing for {seconds:g}s at rest")
        finished_at = await self._finish_videos(seconds)
        delays = await self._announcement_delays(finished_at, timeout=120.0)
        self._put_latencies(f"announce_{label}", delays, (0.5, 0.95))

    async def sustained(self) -> None:
        """As many /generate as the bot answers, `sustained_senders` at a time, each waiting for its answer."""
        s = self.settings
        self.say(f"  sustained /generate for {s.sustained_seconds:g}s, {s.sustained_senders} senders")
        done = 0
        deadline = time.monotonic() + s.sustained_seconds
        counter = iter(range(10**9))

        async def sender() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                handle = await self._generate(next(counter))
                if await self._final_answers([handle], timeout=30.0):
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(s.sustained_senders)))
        self.results.put("sustained_generate_per_second", done / (time.monotonic() - started))

    async def first_cycle_after_restart(self) -> None:
        """Start with `running_large` running, one of which finished while the bot was down: how long until every
        running generation was looked up and that one announced."""
        total = self.settings.running_large
        await self.stop()
        self.running.fill_to(total)
        running = self.running.running_ids()
        finished_while_down = running[len(running) // 2]
        finished_at = self.running.finish(finished_while_down)
        self.say(f"  restart with {len(running)} running, one finished while the bot was down")
        first_request = len(self.e2e.sim.state.requests)
        ready_before = self.e2e.ready_count()
        spawned = time.monotonic()
        self.e2e.env.update(self._environment())
        run = await self.e2e.start_bot(wait=False)
        announced = await self._announcement_delays({finished_while_down: finished_at}, timeout=120.0)
        needed = math.ceil(len(running) / LOOKUP_BATCH)
        lookups = await self._first_lookups(first_request, needed, timeout=120.0)
        self.results.put("first_lookup_after_start", lookups[0].received_at - spawned)
        last_answer = max(r.answered_at or math.inf for r in lookups)
        announced_at = finished_at + announced[0] if announced else math.inf
        self.results.put("first_cycle_after_start", max(last_answer, announced_at) - spawned)
        self.results.put("announced_after_start", announced_at - spawned)
        await self.e2e.wait_ready(run, ready_before)

    async def lookups_at_latency(self) -> None:
        """With every API request taking `latency` seconds: how long one cycle's look-ups take."""
        latency = self.settings.latency
        running = self.running.running_ids()
        self.say(f"  one cycle's look-ups at a {latency * 1000:g} ms round trip with {len(running)} running")
        self.e2e.sim.config.latency_seconds = latency
        try:
            self.skip_seen_requests()
            await self.wait_for_lookup_of(running[0], timeout=600.0)  # a cycle that may have begun before
            start = await self.wait_for_lookup_of(running[0], timeout=600.0)
            # A cycle starts once the previous one's answers are all in: its requests are those received after.
            requests = self.e2e.sim.state.requests
            previous_end = max(
                r.answered_at
                for r in requests
                if r.endpoint == LOOKUP and r.answered_at is not None and r.answered_at <= start.received_at
            )
            index = next(i for i, r in enumerate(requests) if r.endpoint == LOOKUP and r.received_at > previous_end)
            lookups = await self._first_lookups(index, math.ceil(len(running) / LOOKUP_BATCH), timeout=600.0)
        finally:
            self.e2e.sim.config.latency_seconds = 0.0
        began = min(r.received_at for r in lookups)
        self.results.put("latency_cycle_lookups", max(r.answered_at or math.inf for r in lookups) - began)
        self.results.put("latency_cycle_marker_lag", start.received_at - began)

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _generate(self, n: int) -> InteractionHandle:
        member = self._members[n % len(self._members)]
        return await self.fake.send_interaction(
            "generate",
            {"prompt": f"a benchmark scene {n} {secrets.token_hex(3)}"},
            user=member,
            channel=self.fake.general,
        )

    async def _send_at_rate(self, rate: float, seconds: float) -> list[InteractionHandle]:
        """Open loop: one /generate every 1/rate seconds, whatever the bot's answers do."""
        tasks: list[asyncio.Task[InteractionHandle]] = []
        started = time.monotonic()
        n = 0
        while (due := started + n / rate) < started + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(self._generate(n)))
            n += 1
        return list(await asyncio.gather(*tasks))

    async def _finish_videos(self, seconds: float) -> dict[str, float]:
        """Make prefilled videos finish at `finishing_rate` a second for `seconds`; returns when each finished."""
        running = self.running.running_ids()[1:]  # never the first: it marks the cycles
        rate = self.settings.finishing_rate
        chosen = random.Random(len(running)).sample(running, min(len(running), int(rate * seconds)))
        finished: dict[str, float] = {}
        started = time.monotonic()
        for n, api_id in enumerate(chosen):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            finished[api_id] = self.running.finish(api_id)
        return finished

    def skip_seen_requests(self) -> None:
        """Let wait_for_lookup_of see only requests that arrive from now on."""
        self._scanned = len(self.e2e.sim.state.requests)

    async def wait_for_lookup_of(self, api_id: str, timeout: float) -> RecordedRequest:
        """The next look-up request (not seen by an earlier call) that asks for `api_id`."""
        requests = self.e2e.sim.state.requests
        deadline = time.monotonic() + timeout
        while True:
            while self._scanned < len(requests):
                request = requests[self._scanned]
                self._scanned += 1
                if request.endpoint == LOOKUP and api_id in lookup_ids(request):
                    return request
            if time.monotonic() > deadline or not self.e2e.bot.running:
                raise TimeoutError(f"no look-up of {api_id} within {timeout}s:\n{self.e2e.bot.log()[-3000:]}")
            await asyncio.sleep(0.005)

    async def _first_lookups(self, first_index: int, count: int, timeout: float) -> list[RecordedRequest]:
        """The first `count` look-up requests from `first_index` on, once all of them were answered."""
        deadline = time.monotonic() + timeout
        while True:
            lookups = [r for r in self.e2e.sim.state.requests[first_index:] if r.endpoint == LOOKUP][:count]
            if len(lookups) == count and all(r.answered_at is not None for r in lookups):
                return lookups
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} look-ups did not happen within {timeout}s")
            await asyncio.sleep(0.01)

    async def _announcement_delays(self, finished_at: dict[str, float], timeout: float) -> list[float]:
        """Seconds from each video's end (at the API) to its announcement (at Discord), once all were announced."""
        deadline = time.monotonic() + timeout
        announced: dict[str, float] = {}
        scanned = 0
        while True:
            log = self.fake.message_log
            for message in log[scanned:]:
                if message.kind in ANNOUNCEMENT_KINDS:
                    for found in GENERATION_ID.findall(message.content):
                        if found in finished_at:
                            announced.setdefault(found, message.time)
            scanned = len(log)
            if len(announced) == len(finished_at) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        if len(announced) < len(finished_at):
            self.results.notes.append(f"{len(finished_at) - len(announced)} videos were not announced in {timeout}s")
        return [announced[api_id] - finished_at[api_id] for api_id in announced]

    async def _final_answers(self, handles: list[InteractionHandle], timeout: float) -> list[float]:
        """Seconds from each command's dispatch to its final answer (status message or private answer)."""
        wanted = {handle.id: handle for handle in handles}
        answered: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        scanned = 0
        while True:
            log = self.fake.message_log
            for message in log[scanned:]:
                handle = wanted.get(message.interaction_id or 0)
                if handle is not None and handle.id not in answered and _is_final(message, handle):
                    answered[handle.id] = message.time - handle.dispatched_at
            scanned = len(log)
            if len(answered) == len(wanted) or time.monotonic() > deadline:
                return list(answered.values())
            await asyncio.sleep(0.02)

    @contextlib.contextmanager
    def _cpu_shares(self, label: str) -> Iterator[None]:
        """How busy the bot and this process (the fake Discord, the simulator) were: CPU seconds per second."""
        bot_before, own_before, started = sample(self.pid), sample(os.getpid()), time.monotonic()
        yield
        elapsed = time.monotonic() - started
        self.results.put(f"bot_cpu_share_{label}", sample(self.pid).minus(bot_before).cpu_seconds / elapsed)
        self.results.put(f"fakes_cpu_share_{label}", sample(os.getpid()).minus(own_before).cpu_seconds / elapsed)

    @staticmethod
    def _ack_latency(handle: InteractionHandle) -> float | None:
        callback = handle.callback or handle.late_callback
        return callback.latency if callback is not None else None

    def _put_latencies(self, name: str, values: list[float], shares: tuple[float, ...]) -> None:
        for share in shares:
            self.results.put(f"{name}_p{round(share * 100)}", percentile(values, share))


def _is_final(message: FakeMessage, handle: InteractionHandle) -> bool:
    if message.loading or message.deleted:
        return False
    return message.ephemeral or (message.id == handle.original_message_id and bool(message.embeds))


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "load_average": [round(value, 2) for value in load],
        "python": sys.version.split()[0],
    }


def simulator_config() -> SimulatorConfig:
    # Prefilled videos stay "processing" for hours unless the benchmark finishes them; new ones leave "pending"
    # after half a second, so that the quiet cycles measured later find nothing changing.
    # The balance covers every video a run makes, so that no command is refused for want of credits.
    return SimulatorConfig(
        api_key="sim-" + secrets.token_hex(16),
        processing_after=0.5,
        complete_after=36_000.0,
        seed=1,
        slow_seconds=1.0,
        balance=1e15,
    )


@contextlib.asynccontextmanager
async def bench_environment(workdir: Path, settings: Settings) -> AsyncIterator[tuple[E2E, RunningSet]]:
    """The simulator and the fake Discord on loopback, and the harness that starts the bot against them."""
    world = bench_world(settings.members)
    # Request bodies are not checked against Discord's schema here: the tests do that, and it costs CPU.
    async with run_simulator(simulator_config()) as sim, run_fake_discord(world=world, validate_schema=False) as fake:
        e2e = E2E(workdir, fake, sim)
        members = [user.id for user in world.users if user.username.startswith("member")]
        try:
            yield e2e, RunningSet(e2e.db_path, sim.state, members)
        finally:
            await e2e.close()
