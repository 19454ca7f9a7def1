"""One interface over both AI/ML video endpoints: each request goes where its generation belongs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .api_client import Balance, LumaClient, VideoApiError
from .api_v2 import RayClient
from .models import LEGACY_MODEL, ApiGeneration, GenerationOptions

log = logging.getLogger(__name__)


def model_of(generation_id: str) -> str:
    """The endpoint that made a generation: ids of the maintained endpoint end in `:<model>`."""
    _, separator, model = generation_id.partition(":")
    return model if separator and model else LEGACY_MODEL


class VideoApiRouter:
    """New generations use LUMA_MODEL; older ones are followed and extended where they were made, so changing
    the setting never strands a running generation."""

    def __init__(self, legacy: LumaClient, current: RayClient, model: str) -> None:
        self._legacy = legacy
        self._current = current
        self.model = model

    def model_for(self, parent_api_id: str | None) -> str:
        """The model a new generation (or an extension of `parent_api_id`) will be made with."""
        if parent_api_id is None:
            return self.model
        parent_model = model_of(parent_api_id)
        if parent_model == LEGACY_MODEL or self.model == LEGACY_MODEL:
            return parent_model
        return self.model

    async def create(self, options: GenerationOptions) -> ApiGeneration:
        if self.model == LEGACY_MODEL:
            return await self._legacy.create(options)
        return await self._current.create(options, self.model)

    async def extend(self, parent_id: str, options: GenerationOptions) -> ApiGeneration:
        model = self.model_for(parent_id)
        if model == LEGACY_MODEL:
            return await self._legacy.extend(parent_id, options)
        return await self._current.extend(parent_id, options, model)

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]:
        legacy_ids: list[str] = []
        current_ids: list[str] = []
        for generation_id in ids:
            (legacy_ids if model_of(generation_id) == LEGACY_MODEL else current_ids).append(generation_id)
        found: dict[str, ApiGeneration] = {}
        parts = await asyncio.gather(
            self._legacy.fetch_many(legacy_ids) if legacy_ids else _nothing(),
            self._current.fetch_many(current_ids) if current_ids else _nothing(),
            return_exceptions=True,
        )
        errors = [part for part in parts if isinstance(part, BaseException)]
        for part in parts:
            if not isinstance(part, BaseException):
                found.update(part)
        # An outage of one endpoint must not hide what the other one answered.
        if errors and not found:
            raise errors[0]
        for error in errors:
            if not isinstance(error, VideoApiError):
                raise error
            log.warning("One endpoint's look-ups failed this cycle: %s", error)
        return found

    async def fetch(self, generation_id: str) -> ApiGeneration | None:
        if model_of(generation_id) == LEGACY_MODEL:
            return await self._legacy.fetch(generation_id)
        return await self._current.fetch(generation_id)

    async def balance(self) -> Balance:
        return await self._legacy.balance()


async def _nothing() -> dict[str, ApiGeneration]:
    return {}
