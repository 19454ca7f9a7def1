"""One interface over both AI/ML video endpoints: each request goes where its generation belongs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from enum import StrEnum

from .api_client import ApiNotFound, ApiOutOfCredits, ApiUnauthorized, Balance, LumaClient, VideoApiError
from .api_v2 import RayClient
from .models import LEGACY_MODEL, ApiGeneration, GenerationOptions, ListedGeneration

log = logging.getLogger(__name__)


# An id no generation has: looking it up costs nothing and shows whether the endpoint answers at all.
PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"


class ModelStatus(StrEnum):
    """What a free look-up says of a model's endpoint."""

    OK = "ok"
    RETIRED = "retired"
    KEY_REFUSED = "key refused"
    UNREACHABLE = "unreachable"


def model_of(generation_id: str) -> str:
    """The endpoint that made a generation: ids of the maintained endpoint end in `:<model>`."""
    _, separator, model = generation_id.partition(":")
    return model if separator and model else LEGACY_MODEL


class VideoApiRouter:
    """Each request goes to the endpoint of its model; a stored generation is followed and extended where it was
    made, so changing the enabled models never strands one."""

    def __init__(self, legacy: LumaClient, current: RayClient, models: Sequence[str] = (LEGACY_MODEL,)) -> None:
        self._legacy = legacy
        self._current = current
        self.models = tuple(models)

    def model_for(self, parent_api_id: str | None) -> str:
        """The default model, or the endpoint's model that made `parent_api_id`."""
        return self.models[0] if parent_api_id is None else model_of(parent_api_id)

    async def create(self, options: GenerationOptions, model: str) -> ApiGeneration:
        if model == LEGACY_MODEL:
            return await self._legacy.create(options)
        return await self._current.create(options, model)

    async def extend(self, parent_id: str, options: GenerationOptions, model: str) -> ApiGeneration:
        if model == LEGACY_MODEL:
            return await self._legacy.extend(parent_id, options)
        return await self._current.extend(parent_id, options, model)

    async def probe(self, model: str, known_id: str | None = None) -> ModelStatus:
        """Whether `model`'s endpoint answers this key, by a look-up (free): of `known_id`, a recent generation of
        that model, where there is one (an endpoint that has forgotten it is gone), else of an id nobody has."""
        try:
            if model == LEGACY_MODEL:
                await self._legacy.fetch_many([known_id or PLACEHOLDER_ID])
                return ModelStatus.OK
            found = await self._current.fetch(known_id or f"{PLACEHOLDER_ID}:{model}")
        except ApiNotFound:
            return ModelStatus.RETIRED
        except ApiUnauthorized:
            return ModelStatus.KEY_REFUSED
        except ApiOutOfCredits:
            return ModelStatus.OK  # the model is there; the balance check speaks of credits
        except VideoApiError:
            return ModelStatus.UNREACHABLE
        return ModelStatus.RETIRED if found is None and known_id is not None else ModelStatus.OK

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

    def can_list(self, model: str) -> bool:
        """Whether generations of `model` can be found in a list of the account's generations (legacy only)."""
        return model == LEGACY_MODEL

    async def list_generations(self) -> list[ListedGeneration]:
        return await self._legacy.list_generations()


async def _nothing() -> dict[str, ApiGeneration]:
    return {}
