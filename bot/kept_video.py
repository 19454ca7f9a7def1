"""Keeping a finished video: where a server asks for it, the MP4 is fetched from the provider and uploaded with the
announcement, so it outlives the provider's link (which expires).

A file is uploaded only when it fits the server's upload limit (what Discord said when the video was asked for); the
download stops at that size, at a time limit, or at a body that is not a video, and the announcement then carries
the link as before. The time limit is short (a few seconds), because announcements wait behind a download. A file
is tried at an announcement's first attempt only: a retry posts the link, so a slow or refused upload is never sent
again and again.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO

import aiohttp

from .models import Generation, State

log = logging.getLogger(__name__)

# Discord's upload limit where the interaction did not say (a server without boosts).
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Discord's largest upload limit for a server (level 3 boosts): no download goes past it, whatever was stored.
MAX_UPLOAD_LIMIT = 100 * 1024 * 1024
# The download runs inside its announcement, which holds one of the tracker's few announcement workers
# (bot.tracker.ANNOUNCE_CONCURRENCY) and its lease (bot.sharing.ANNOUNCE_LEASE_SECONDS) meanwhile: a slow provider
# must hold up neither the announcements behind it nor past the lease, so it gets a few seconds, then the link goes.
DOWNLOAD_TIMEOUT_SECONDS = 5.0
# A video is kept in memory up to this size, in a temporary file beyond it.
IN_MEMORY_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# What Discord plays inline; anything else (an error page, an image) is not uploaded as the video.
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})


class DownloadRefused(Exception):
    """The video could not be fetched within the rules; the message says why, in words for the log."""


@dataclass
class KeptVideo:
    """A downloaded video, ready to upload; close it once sent."""

    filename: str
    size: int
    content_type: str
    file: IO[bytes]

    def close(self) -> None:
        self.file.close()


class VideoDownloader:
    """Fetches a video within a size cap and a time limit, streaming it to memory or to a temporary file."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
        in_memory_bytes: int = IN_MEMORY_BYTES,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._in_memory_bytes = in_memory_bytes

    async def fetch(self, url: str, filename: str, max_bytes: int) -> KeptVideo:
        """The video at `url`, at most `max_bytes` long; raises DownloadRefused saying why not."""
        if not url.startswith(("https://", "http://")):
            raise DownloadRefused("the link is not a web address")
        spool = tempfile.SpooledTemporaryFile(max_size=self._in_memory_bytes)  # noqa: SIM115 - closed by KeptVideo
        try:
            size, content_type = await self._stream(url, spool, max_bytes)
        except DownloadRefused:
            spool.close()
            raise
        except (aiohttp.ClientError, TimeoutError) as error:
            spool.close()
            raise DownloadRefused(f"the download failed: {error!r}") from error
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return KeptVideo(filename, size, content_type, spool)

    async def _stream(self, url: str, spool: IO[bytes], max_bytes: int) -> tuple[int, str]:
        async with self._session.get(url, timeout=self._timeout) as response:
            if response.status != 200:
                raise DownloadRefused(f"the provider answered {response.status}")
            if response.content_type not in VIDEO_TYPES:
                raise DownloadRefused(f"the provider sent {response.content_type!r}, not a video")
            if response.content_length is not None and response.content_length > max_bytes:
                raise DownloadRefused(f"the video is {response.content_length} bytes, over the {max_bytes} allowed")
            size = 0
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadRefused(f"the video is over the {max_bytes} bytes allowed")
                spool.write(chunk)
            if size == 0:
                raise DownloadRefused("the provider sent an empty file")
            return size, response.content_type


class VideoKeeper:
    """Decides whether an announcement carries the video itself, and fetches it when it does."""

    def __init__(self, downloader: VideoDownloader, keeps_videos: Callable[[int], Awaitable[bool]]) -> None:
        self._downloader = downloader
        self._keeps_videos = keeps_videos

    async def file_for(self, generation: Generation) -> KeptVideo | None:
        """The video to upload with this announcement, or None to post its link."""
        if generation.state is not State.COMPLETED or not generation.video_url:
            return None
        if generation.announce_attempts > 0:
            return None  # an earlier attempt may have been the upload that failed: the link goes now
        if not await self._keeps_videos(generation.guild_id):
            return None
        limit = upload_limit_of(generation)
        try:
            kept = await self._downloader.fetch(generation.video_url, video_filename(generation), limit)
        except DownloadRefused as refusal:
            log.info("Row %d's video is posted as a link: %s", generation.id, refusal)
            return None
        log.info("Row %d's video (%d bytes) is uploaded with its announcement", generation.id, kept.size)
        return kept


def upload_limit_of(generation: Generation) -> int:
    """The most a file for this generation's server may weigh: what Discord said when it was asked for."""
    return min(generation.upload_limit or DEFAULT_UPLOAD_LIMIT, MAX_UPLOAD_LIMIT)


def video_filename(generation: Generation) -> str:
    short = (generation.api_id or str(generation.id)).split(":", 1)[0][:8]
    return f"video-{short}.mp4"
