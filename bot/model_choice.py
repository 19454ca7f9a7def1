"""Which model makes a request: the member's pick among the models the operator enabled and the server allows, the
video's own model for an extension, and none that the video service has shown to be gone."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .catalogue import Continuation, ModelSpec, label_of, spec_of
from .errors import UserFacingError
from .models import Generation

log = logging.getLogger(__name__)


def _names(models: Sequence[str]) -> str:
    labels = [label_of(model) for model in models]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


class ModelChoice:
    """The enabled models (the default first) and which of them are unavailable now."""

    def __init__(self, enabled: Sequence[str]) -> None:
        self.enabled = tuple(enabled)
        self._unavailable: set[str] = set()

    @property
    def default(self) -> str:
        return self.enabled[0]

    def transformers(self) -> tuple[str, ...]:
        """Enabled models that can edit and reframe a finished video."""
        return tuple(model for model in self.enabled if spec_of(model).transforms)

    def mark_unavailable(self, model: str) -> None:
        self._unavailable.add(model)

    def is_unavailable(self, model: str) -> bool:
        return model in self._unavailable

    def choose(self, requested: str | None, parent: Generation | None, allowed: frozenset[str]) -> ModelSpec:
        """The model for a request (`allowed`: the server's choice, empty for every enabled model); raises
        UserFacingError, in a member's words, when none can make it."""
        if parent is not None:
            return self._continuing(parent)
        offered = self._offered(self.enabled, allowed)
        if requested is not None:
            if requested not in self.enabled:
                raise UserFacingError(f"This bot doesn't offer {label_of(requested)}; choose {_names(self.enabled)}.")
            if requested not in offered:
                raise UserFacingError(f"This server doesn't use {label_of(requested)}; choose {_names(offered)}.")
            return self._available(requested, offered)
        ready = [model for model in offered if model not in self._unavailable]
        return self._available(ready[0] if ready else offered[0], offered)

    def for_transform(self, allowed: frozenset[str]) -> ModelSpec:
        """The model that edits or reframes a video here."""
        offered = self._offered(self.transformers(), allowed)
        if not offered:
            raise UserFacingError("This server doesn't use a model that can edit or reframe videos.")
        return self._available(offered[0], offered)

    def _offered(self, models: Sequence[str], allowed: frozenset[str]) -> list[str]:
        """`models` as the server narrowed them. A choice naming none of the enabled models (the operator changed
        them since) narrows nothing, so that no server is locked out."""
        narrowed = [model for model in models if model in allowed]
        return narrowed if allowed & set(self.enabled) else list(models)

    def _continuing(self, parent: Generation) -> ModelSpec:
        spec = spec_of(parent.model)
        if spec.continuation is Continuation.NONE:
            raise UserFacingError(
                f"{spec.label} has no way to continue a video. To carry `{parent.reference}` on, start a new video "
                "from its last frame: `/generate` with `last_frame_of`."
                if parent.last_frame_url
                else f"{spec.label} has no way to continue a video, and the video service gave no last frame of "
                f"`{parent.reference}` to start from. Make a new one with `/generate`."
            )
        if parent.model in self._unavailable:
            raise UserFacingError(
                f"{spec.label}, which made `{parent.reference}`, is unavailable right now, so it can't be extended."
            )
        return spec

    def _available(self, model: str, offered: Sequence[str]) -> ModelSpec:
        if model in self._unavailable:
            others = [other for other in offered if other != model and other not in self._unavailable]
            raise UserFacingError(
                f"{label_of(model)} is unavailable right now."
                + (f" Choose {_names(others)} instead." if others else " The bot's operator has been told.")
            )
        return spec_of(model)
