"""Keeping a finished video: the MP4 is fetched from the provider (the simulator, over loopback) when the server asks
for it and it fits the upload limit; anything else posts the link."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.kept_video import DEFAULT_UPLOAD_LIMIT, VideoDownloader, VideoKeeper
from bot.models import Generation, Kind, State
from bot.simulator import RunningSimulator, SimulatorConfig, mp4_body, run_simulator
from tests.conftest import FakeClock

MIB = 1024 * 1024


def finished(video_url: str, **changes: object) -> Generation:
    values: dict[str, object] = dict(
        id=7, api_id="a4a8f1ff-e59b-4969-abcb-98b3e16f003e", parent_api_id=None, kind=Kind.GENERATE, guild_id=1,
        channel_id=2, requester_id=3, prompt="a cat", aspect_ratio="16:9", expand_prompt=True,
        state=State.COMPLETED, api_state="completed", video_url=video_url, thumbnail_url=None, last_frame_url=None,
        failure_reason=None, status_message_id=None, created_at=1.8e9, updated_at=1.8e9, submitted_at=1.8e9,
        finished_at=1.8e9, announce_claimed_at=None, announced_at=None, announce_attempts=0, delivery=None,
    )  # fmt: skip
    values.update(changes)
    return Generation(**values)  # type: ignore[arg-type]


@pytest.fixture
async def provider(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(), clock=clock) as running:
        yield running


def video_requests(provider: RunningSimulator) -> int:
    return sum(1 for request in provider.state.requests if request.path.startswith("/videos/"))


class Keeping:
    """A keeper for servers that keep videos (or not), downloading within `timeout` seconds."""

    def __init__(self, session: aiohttp.ClientSession, *, keeps: bool = True, timeout: float = 10.0) -> None:
        self.keeps = keeps
        downloader = VideoDownloader(session, timeout_seconds=timeout, in_memory_bytes=1 * MIB)
        self.keeper = VideoKeeper(downloader, self._keeps)

    async def _keeps(self, guild_id: int) -> bool:
        return self.keeps


async def test_a_video_under_the_upload_limit_is_kept_whole(
    provider: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    provider.config.video_bytes = 3 * MIB  # past what is kept in memory: it goes through a temporary file
    kept = await Keeping(http_session).keeper.file_for(finished(f"{provider.base_url}/videos/a4a8f1ff.mp4"))
    assert kept is not None
    try:
        assert kept.file.read() == mp4_body(3 * MIB)
        assert (kept.size, kept.filename, kept.content_type) == (3 * MIB, "video-a4a8f1ff.mp4", "video/mp4")
        assert video_requests(provider) == 1
    finally:
        kept.close()


async def test_a_video_over_the_servers_upload_limit_is_posted_as_a_link(
    provider: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    keeper = Keeping(http_session).keeper
    provider.config.video_bytes = DEFAULT_UPLOAD_LIMIT + 1
    assert await keeper.file_for(finished(f"{provider.base_url}/videos/big.mp4")) is None
    # A boosted server's bigger limit, as its interaction said, lets the same video through.
    boosted = finished(f"{provider.base_url}/videos/big.mp4", upload_limit=50 * MIB)
    kept = await keeper.file_for(boosted)
    assert kept is not None and kept.size == DEFAULT_UPLOAD_LIMIT + 1
    kept.close()
    smaller = finished(f"{provider.base_url}/videos/big.mp4", upload_limit=1 * MIB)
    provider.config.video_bytes = 2 * MIB
    assert await keeper.file_for(smaller) is None


async def test_a_download_that_grows_past_the_cap_without_saying_its_size_is_cut_off(
    http_session: aiohttp.ClientSession,
) -> None:
    sent: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})  # chunked: no Content-Length
        await response.prepare(request)
        for _ in range(64):
            await response.write(bytes(256 * 1024))
            sent.append(256 * 1024)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/video.mp4", endless)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        generation = finished(f"http://127.0.0.1:{port}/video.mp4", upload_limit=1 * MIB)
        assert await Keeping(http_session).keeper.file_for(generation) is None
    finally:
        await runner.cleanup()


async def test_a_slow_download_gives_up_and_posts_the_link(
    provider: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    provider.config.video_seconds = 30.0
    keeper = Keeping(http_session, timeout=0.3).keeper
    assert await keeper.file_for(finished(f"{provider.base_url}/videos/slow.mp4")) is None


async def test_a_download_holds_its_announcement_for_a_few_seconds_at_most_then_the_link_goes(
    provider: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    """The download runs inside an announcement worker: a provider sending the video over 20 s is given up on by
    the bot's own limit, well before, so that the announcements behind it are not held up (nor past its lease)."""
    provider.config.video_seconds = 20.0

    async def keeps(guild_id: int) -> bool:
        return True

    keeper = VideoKeeper(VideoDownloader(http_session), keeps)
    assert await keeper.file_for(finished(f"{provider.base_url}/videos/slow.mp4")) is None
    assert video_requests(provider) == 1


async def test_a_body_that_is_not_a_video_is_not_uploaded(
    provider: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    provider.config.video_content_type = "text/html"
    assert await Keeping(http_session).keeper.file_for(finished(f"{provider.base_url}/videos/page.mp4")) is None


async def test_nothing_is_downloaded_where_it_would_not_be_uploaded(
    provider: RunningSimulator, http_session: aiohttp.ClientSession
) -> None:
    url = f"{provider.base_url}/videos/a4a8f1ff.mp4"
    assert await Keeping(http_session, keeps=False).keeper.file_for(finished(url)) is None
    keeper = Keeping(http_session).keeper
    # A retry of an announcement posts the link: the first attempt may have been this upload, failing.
    assert await keeper.file_for(finished(url, announce_attempts=1)) is None
    assert await keeper.file_for(finished(url, state=State.FAILED)) is None
    assert video_requests(provider) == 0


async def test_the_simulator_serves_its_videos_as_configured(provider: RunningSimulator) -> None:
    provider.config.video_bytes = 100_000
    async with aiohttp.ClientSession() as http, http.get(f"{provider.base_url}/videos/x.mp4") as response:
        body = await response.read()
        assert response.content_type == "video/mp4"
    assert len(body) == 100_000 and body[4:8] == b"ftyp" and body[28:32] == b"free"
    assert dataclasses.asdict(provider.config)["video_seconds"] == 0.0
