"""The maintained AI/ML video endpoint (/v2/video/generations): one id per look-up, `:model` ids kept as given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from .api_client import AimlClient, ApiMalformedResponse, ApiNotFound, VideoApiError, parse_timestamp
from .catalogue import FrameStyle, spec_of
from .models import API_COMPLETED, API_FAILED, ApiGeneration, GenerationOptions

log = logging.getLogger(__name__)

GENERATIONS_PATH = "/v2/video/generations"
# The endpoint's statuses in the words the rest of the bot uses.
_STATES = {"queued": "queued", "generating": "generating", "completed": API_COMPLETED, "error": API_FAILED}
DEFAULT_LOOKUP_CONCURRENCY = 8


def _url(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) and value else None


def parse_v2_generation(data: object) -> ApiGeneration:
    """One generation of the maintained endpoint, normalised like the legacy ones."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise ApiMalformedResponse(f"expected a generation object, got {type(data).__name__}")
    generation_id = data.get("id")
    status = data.get("status")
    if not isinstance(generation_id, str) or not generation_id or not isinstance(status, str) or not status:
        raise ApiMalformedResponse("generation object without an id or a status")
    status = status.lower()
    if status not in _STATES:
        log.warning("Generation %s has a status not seen before: %r (treated as running)", generation_id, status)
    video = data.get("video")
    if isinstance(video, list):
        video = video[0] if video else None
    error = data.get("error")
    failure = None
    if isinstance(error, dict):
        message = error.get("message") or error.get("name")
        failure = message if isinstance(message, str) and message else None
    elif isinstance(error, str) and error:
        failure = error
    meta = data.get("meta")
    usage = meta.get("usage") if isinstance(meta, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    credits, usd = usage.get("credits_used"), usage.get("usd_spent")
    return ApiGeneration(
        id=generation_id,
        state=_STATES.get(status, status),
        prompt=data.get("prompt") if isinstance(data.get("prompt"), str) else None,
        video_url=_url(video),
        thumbnail_url=_url(data.get("thumbnail")),
        last_frame_url=_url(data.get("last_frame")),
        failure_reason=failure,
        raw=data,
        credits_used=None if (amount := _amount(credits)) is None else round(amount),
        usd_spent=_amount(usd),
        created_at=parse_timestamp(data.get("created_at")),
    )


def _amount(value: object) -> float | None:
    """A reported cost: a number, 0 or more (anything else is not a figure)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def v2_body(options: GenerationOptions, model: str, *, parent_id: str | None = None) -> dict[str, Any]:
    """The create body in the form the model documents; an extension starts from its parent's keyframe."""
    body: dict[str, Any] = {"model": model, "prompt": options.prompt, "aspect_ratio": options.aspect_ratio}
    for name in ("resolution", "duration", "loop", "hdr"):
        if getattr(options, name) is not None:
            body[name] = getattr(options, name)
    if spec_of(model).frames is FrameStyle.URLS:
        body.update(_frame_urls(options))
    else:
        keyframes = _keyframes(options, parent_id)
        if keyframes:
            body["keyframes"] = keyframes
    return body


def _frame_urls(options: GenerationOptions) -> dict[str, str]:
    """Ray 3.2's form: a `type`, the start and end frames and the source video as plain URLs."""
    fields = {
        "type": options.transform,
        "image_url": options.image_url,
        "last_image_url": options.image_end_url,
        "video_url": options.source_video_url,
    }
    return {name: value for name, value in fields.items() if value}


def _keyframes(options: GenerationOptions, parent_id: str | None) -> dict[str, dict[str, str]]:
    keyframes: dict[str, dict[str, str]] = {}
    if parent_id is not None:
        keyframes["frame0"] = {"type": "generation", "id": parent_id}
    elif options.image_url:
        keyframes["frame0"] = {"type": "image", "url": options.image_url}
    if options.image_end_url:
        keyframes["frame1"] = {"type": "image", "url": options.image_end_url}
    return keyframes


class RayClient(AimlClient):
    """Luma's Ray models through /v2/video/generations."""

    lookup_concurrency = DEFAULT_LOOKUP_CONCURRENCY

    async def create(self, options: GenerationOptions, model: str) -> ApiGeneration:
        return await self._create(GENERATIONS_PATH, v2_body(options, model), parse_v2_generation)

    async def extend(self, parent_id: str, options: GenerationOptions, model: str) -> ApiGeneration:
        return await self._create(GENERATIONS_PATH, v2_body(options, model, parent_id=parent_id), parse_v2_generation)

    async def fetch(self, generation_id: str) -> ApiGeneration | None:
        try:
            data = await self._read(GENERATIONS_PATH, [("generation_id", generation_id)])
        except ApiNotFound:
            return None
        return parse_v2_generation(data)

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]:
        """One request per id (the endpoint takes no batches), run concurrently under a cap."""
        gate = asyncio.Semaphore(self.lookup_concurrency)

        async def one(generation_id: str) -> ApiGeneration | None:
            async with gate:
                return await self.fetch(generation_id)

        unique_ids = list(dict.fromkeys(ids))
        results = await asyncio.gather(*(one(i) for i in unique_ids), return_exceptions=True)
        found: dict[str, ApiGeneration] = {}
        errors: list[VideoApiError] = []
        for generation_id, result in zip(unique_ids, results, strict=True):
            if isinstance(result, VideoApiError):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            elif result is not None and result.id == generation_id:
                found[generation_id] = result
        if errors and not found and len(errors) == len(unique_ids):
            # Nothing got through: report it like a failed batch, so the caller logs one outage.
            raise errors[0]
        if errors:
            log.warning("%d of %d look-ups failed this time: %s", len(errors), len(unique_ids), errors[0])
        return found
