"""What each Luma model accepts and costs, as data: the one place the bot learns a model's rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .errors import UserFacingError
from .models import ASPECT_RATIOS, LEGACY_MODEL, TOKENS_PER_VIDEO, GenerationOptions


class Continuation(StrEnum):
    """How a model continues a finished video, if it does."""

    LEGACY_EXTEND = "legacy_extend"  # POST /luma-ai/generations/<id>/extend
    KEYFRAME = "keyframe"  # /v2 with keyframes.frame0 = {"type": "generation", "id": ...}
    NONE = "none"  # no documented way: start a new video from the last frame instead


class FrameStyle(StrEnum):
    """How start and end frames (and source videos) travel in a create body."""

    LEGACY = "legacy"  # image_url, image_end_url
    KEYFRAMES = "keyframes"  # keyframes.frame0 / frame1 of type "image"
    URLS = "urls"  # image_url, last_image_url, video_url, with a `type`


@dataclass(frozen=True)
class ModelSpec:
    """One model's documented options (API.md §1, §3, §4)."""

    id: str
    label: str
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...] = ()
    durations: tuple[int, ...] = ()
    loop: bool = False
    # What the API uses where a request names no resolution.
    default_resolution: str | None = None
    # HDR, where offered, only for these durations and resolutions.
    hdr_durations: tuple[int, ...] = ()
    hdr_resolutions: tuple[str, ...] = ()
    continuation: Continuation = Continuation.NONE
    frames: FrameStyle = FrameStyle.KEYFRAMES
    # Restyling a video by a prompt (video_edit) and re-composing it for another aspect ratio (video_reframe).
    transforms: bool = False
    # Tokens a video is expected to cost before the API has reported a real figure for this model.
    documented_price: int = TOKENS_PER_VIDEO

    @property
    def hdr(self) -> bool:
        return bool(self.hdr_durations)


_RAY_2 = ModelSpec(
    "luma/ray-2",
    "Ray 2",
    ASPECT_RATIOS,
    resolutions=("540p", "720p", "1080p", "4k"),
    durations=(5, 9),
    loop=True,
    continuation=Continuation.KEYFRAME,
)
CATALOGUE: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            LEGACY_MODEL,
            "Dream Machine",
            ASPECT_RATIOS,
            continuation=Continuation.LEGACY_EXTEND,
            frames=FrameStyle.LEGACY,
        ),
        _RAY_2,
        # The same options as Ray 2, faster.
        dataclasses.replace(_RAY_2, id="luma/ray-flash-2", label="Ray Flash 2 (fast)"),
        ModelSpec(
            "luma/ray-3.2",
            "Ray 3.2",
            ("16:9", "1:1", "9:16", "4:3", "3:4", "21:9"),
            resolutions=("360p", "540p", "720p", "1080p"),
            default_resolution="720p",
            durations=(5, 10),
            loop=True,
            hdr_durations=(5,),
            hdr_resolutions=("720p", "1080p"),
            frames=FrameStyle.URLS,
            transforms=True,
        ),
    )
}
# Every resolution some model offers, lowest first.
ALL_RESOLUTIONS: tuple[str, ...] = tuple(
    r for r in ("360p", "540p", "720p", "1080p", "4k") if any(r in spec.resolutions for spec in CATALOGUE.values())
)
ALL_DURATIONS: tuple[int, ...] = tuple(sorted({d for spec in CATALOGUE.values() for d in spec.durations}))


def spec_of(model: str) -> ModelSpec:
    """The rules of a model; an id the catalogue does not know (an older or newer model) gets permissive ones."""
    return CATALOGUE.get(model) or ModelSpec(model, model, ASPECT_RATIOS)


def label_of(model: str) -> str:
    return spec_of(model).label


def _words(values: Iterable[object], unit: str = "") -> str:
    items = [f"{value}{unit}" for value in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def check_options(spec: ModelSpec, options: GenerationOptions) -> None:
    """Refuse, in a member's words naming the model and what it accepts, an option the model does not take."""
    name = spec.label
    if options.aspect_ratio not in spec.aspect_ratios:
        raise UserFacingError(f"{name} makes videos in {_words(spec.aspect_ratios)}, not {options.aspect_ratio}.")
    if options.resolution is not None and options.resolution not in spec.resolutions:
        if not spec.resolutions:
            raise UserFacingError(f"{name} has one resolution: leave `resolution` out.")
        raise UserFacingError(f"{name} makes videos at {_words(spec.resolutions)}, not {options.resolution}.")
    if options.duration is not None and options.duration not in spec.durations:
        if not spec.durations:
            raise UserFacingError(f"{name} has one length: leave `duration` out.")
        raise UserFacingError(f"{name} makes videos of {_words(spec.durations)} seconds, not {options.duration}.")
    if options.loop and not spec.loop:
        raise UserFacingError(f"{name} can't make looping videos: leave `loop` out.")
    if options.hdr:
        _check_hdr(spec, options)


def _check_hdr(spec: ModelSpec, options: GenerationOptions) -> None:
    if not spec.hdr:
        raise UserFacingError(f"{spec.label} doesn't make HDR videos.")
    duration = options.duration or spec.durations[0]
    resolution = options.resolution or spec.default_resolution
    if duration not in spec.hdr_durations or resolution not in spec.hdr_resolutions:
        raise UserFacingError(
            f"{spec.label} makes HDR videos of {_words(spec.hdr_durations, ' seconds')} at "
            f"{_words(spec.hdr_resolutions)} only: set `resolution` to one of those."
            if resolution not in spec.hdr_resolutions
            else f"{spec.label} makes HDR videos of {_words(spec.hdr_durations, ' seconds')} only."
        )
