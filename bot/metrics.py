"""Prometheus metrics, served on METRICS_PORT when it is set.

Most numbers are taken where they already pass by rather than by hooks in the services: HTTP timings and errors
from aiohttp trace configs on the two sessions (the video API's and discord.py's), command outcomes from the
command tree, and everything about generations read from the database at scrape time, so a scrape always agrees
with /usage and /status.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .models import TOKENS_PER_VIDEO, Delivery, Generation, State
from .storage import GenerationStore, StateCount
from .tracker import Announcer

log = logging.getLogger(__name__)

# The API's own words for a generation accepted but not started yet; any other running state is being made.
API_WAITING_STATES = frozenset({"pending", "queued"})
# Interaction callbacks: the acknowledgement of a command. The token in the path is never kept.
_CALLBACK_PATH = re.compile(r"/interactions/(\d+)/[^/]+/callback$")
# Interactions received but not acknowledged are forgotten after this many, oldest first.
_MAX_PENDING_ACKS = 1000
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
_ANNOUNCE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


def api_operation(method: str, path: str) -> str:
    """What a request to the video API was for, from its method and path."""
    path = path.removeprefix("/v1")
    if method == "POST":
        return "create"
    if "billing" in path:
        return "balance"
    if path == "/luma-ai/generations":
        return "list"
    if path in ("/luma-ai/generation", "/v2/video/generations"):
        return "lookup"
    return "other"


@dataclass(frozen=True)
class StoreSnapshot:
    """What the database says at scrape time."""

    counts: list[StateCount]

    def by_state(self) -> dict[str, int]:
        totals = {state.value: 0 for state in State}
        for row in self.counts:
            totals[row.state] = totals.get(row.state, 0) + row.count
        return totals

    def running_and_waiting(self) -> tuple[int, int]:
        running = waiting = 0
        for row in self.counts:
            if row.state == State.RUNNING.value:
                if row.api_state in API_WAITING_STATES:
                    waiting += row.count
                else:
                    running += row.count
        return running, waiting

    @property
    def charged(self) -> int:
        return sum(row.charged for row in self.counts)

    @property
    def unannounced(self) -> int:
        return sum(row.unannounced for row in self.counts)

    @property
    def tokens_spent(self) -> int:
        """The API's reported costs, and the documented price (the same for every model) where it gave none."""
        return sum(row.reported_tokens + (row.charged - row.reported) * TOKENS_PER_VIDEO for row in self.counts)


class _StoreCollector(Collector):
    """Exposes the last snapshot read from the database (refreshed before every scrape)."""

    def __init__(self) -> None:
        self.snapshot = StoreSnapshot([])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        by_state = GaugeMetricFamily("videobot_generations", "Generations in the database by state", labels=["state"])
        for state, count in sorted(snapshot.by_state().items()):
            by_state.add_metric([state], count)
        yield by_state
        running, waiting = snapshot.running_and_waiting()
        yield GaugeMetricFamily("videobot_generations_running", "Generations the video API is making now", running)
        yield GaugeMetricFamily(
            "videobot_generations_waiting", "Generations the video API accepted but has not started (queued)", waiting
        )
        yield GaugeMetricFamily(
            "videobot_announcements_waiting", "Finished generations not yet announced", snapshot.unannounced
        )
        yield GaugeMetricFamily(
            "videobot_videos_charged",
            "Generations the API accepted and did not report failed (what /usage counts as videos)",
            snapshot.charged,
        )
        yield GaugeMetricFamily(
            "videobot_tokens_spent",
            "AI/ML tokens spent on videos as /usage counts them: the API's reported cost, else the documented "
            f"{TOKENS_PER_VIDEO:,} a video",
            snapshot.tokens_spent,
        )


class BotMetrics:
    """Every metric of the bot, in a registry of its own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._store_collector = _StoreCollector()
        self.registry.register(self._store_collector)
        self.commands = Counter(
            "videobot_commands", "Slash commands by outcome", ["command", "outcome"], registry=self.registry
        )
        self.ack_seconds = Histogram(
            "videobot_command_ack_seconds",
            "From receiving a command to Discord accepting its first answer (Discord's limit is 3 s)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "videobot_api_request_seconds",
            "Video API requests by operation (create, lookup, list, balance)",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.api_errors = Counter(
            "videobot_api_errors",
            "Video API requests that failed, by HTTP status (or 'connection' when no answer came)",
            ["operation", "status"],
            registry=self.registry,
        )
        self.discord_rate_limited = Counter(
            "videobot_discord_rate_limited", "Discord answers with status 429", registry=self.registry
        )
        self.announcement_delay = Histogram(
            "videobot_announcement_delay_seconds",
            "From the bot seeing a generation finished to its announcement reaching Discord",
            buckets=_ANNOUNCE_BUCKETS,
            registry=self.registry,
        )
        self._pending_acks: dict[int, float] = {}

    # -- commands -------------------------------------------------------------------------------------------

    def command_finished(self, command: str, outcome: str) -> None:
        self.commands.labels(command, outcome).inc()

    def interaction_received(self, interaction_id: int) -> None:
        if len(self._pending_acks) >= _MAX_PENDING_ACKS:
            self._pending_acks.pop(next(iter(self._pending_acks)))
        self._pending_acks[interaction_id] = self._clock()

    # -- HTTP traces ----------------------------------------------------------------------------------------

    def api_trace(self) -> aiohttp.TraceConfig:
        """Timings and errors of every request on the video API's session."""
        trace = aiohttp.TraceConfig()

        async def start(_: aiohttp.ClientSession, context: SimpleNamespace, __: object) -> None:
            context.started = self._clock()

        async def end(
            _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            operation = api_operation(params.method, params.url.path)
            self.api_seconds.labels(operation).observe(self._clock() - context.started)
            if params.response.status >= 400:
                self.api_errors.labels(operation, str(params.response.status)).inc()

        async def failed(
            _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
        ) -> None:
            operation = api_operation(params.method, params.url.path)
            self.api_seconds.labels(operation).observe(self._clock() - context.started)
            self.api_errors.labels(operation, "connection").inc()

        trace.on_request_start.append(start)
        trace.on_request_end.append(end)
        trace.on_request_exception.append(failed)
        return trace

    def discord_trace(self) -> aiohttp.TraceConfig:
        """Discord's 429s and the acknowledgement of commands, from discord.py's own session."""
        trace = aiohttp.TraceConfig()

        async def end(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status == 429:
                self.discord_rate_limited.inc()
            callback = _CALLBACK_PATH.search(params.url.path)
            if callback is not None and params.response.status < 400:
                received = self._pending_acks.pop(int(callback.group(1)), None)
                if received is not None:
                    self.ack_seconds.observe(self._clock() - received)

        trace.on_request_end.append(end)
        return trace

    # -- scraping -------------------------------------------------------------------------------------------

    async def render(self, store: GenerationStore) -> bytes:
        """The text a Prometheus scrape gets, with the database's numbers read now."""
        self._store_collector.snapshot = StoreSnapshot(await store.state_counts())
        return generate_latest(self.registry)


class TimedAnnouncer:
    """The announcer, timing how long after a generation finished its announcement reached Discord."""

    def __init__(self, inner: Announcer, metrics: BotMetrics, clock: Callable[[], float] = time.time) -> None:
        self._inner = inner
        self._metrics = metrics
        self._clock = clock

    async def announce(self, generation: Generation) -> Delivery | None:
        delivery = await self._inner.announce(generation)
        if delivery is not None and delivery is not Delivery.UNDELIVERABLE and generation.finished_at is not None:
            self._metrics.announcement_delay.observe(max(0.0, self._clock() - generation.finished_at))
        return delivery

    async def find_announcement(self, generation: Generation) -> Delivery | None:
        return await self._inner.find_announcement(generation)


class MetricsServer:
    """GET /metrics on METRICS_HOST:METRICS_PORT, inside the bot's event loop."""

    def __init__(self, metrics: BotMetrics, store: GenerationStore) -> None:
        self._metrics = metrics
        self._store = store
        self._runner: web.AppRunner | None = None

    async def _scrape(self, _: web.Request) -> web.Response:
        body = await self._metrics.render(self._store)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> None:
        """Raises OSError when the port can't be bound (in use, or not allowed)."""
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:
            await self.stop()
            raise
        log.info("Serving Prometheus metrics on http://%s:%d/metrics", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
