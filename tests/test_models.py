"""Several Luma models per bot: each request checked against its model, Ray 3.2's edit and reframe, the start-up
check of each model's endpoint, and what each video really cost."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from bot.api_client import LumaClient
from bot.api_v2 import RayClient
from bot.balance import BalanceService
from bot.catalogue import CATALOGUE, check_options
from bot.config import Secret
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.model_choice import ModelChoice
from bot.models import GenerationOptions, Kind, State
from bot.moderation import ModerationService
from bot.quota import ServerLimits
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore, RuleEntry
from bot.tracker import Tracker
from bot.video_api import ModelStatus, VideoApiRouter
from tests.conftest import FAST_RETRY, SIM_KEY, FakeClock
from tests.fakes import RecordingAnnouncer

HERE = Origin(guild_id=1, channel_id=11, user_id=100)
OTHER = Origin(guild_id=1, channel_id=11, user_id=200)
ALL = ("luma/ray-2", "luma/ray-3.2", "luma/ray-flash-2", "legacy")
V2 = ("POST", "/v2/video/generations")


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


@pytest.mark.parametrize(
    ("model", "options", "refusal"),
    [
        ("luma/ray-2", GenerationOptions("p", "9:21", resolution="4k", duration=9, loop=True), None),
        ("luma/ray-2", GenerationOptions("p", duration=10), "Ray 2 makes videos of 5 or 9 seconds, not 10"),
        ("luma/ray-2", GenerationOptions("p", resolution="360p"), "Ray 2 makes videos at 540p, 720p, 1080p or 4k"),
        ("luma/ray-2", GenerationOptions("p", hdr=True), "Ray 2 doesn't make HDR videos"),
        ("luma/ray-3.2", GenerationOptions("p", "21:9", resolution="360p", duration=10, loop=True), None),
        ("luma/ray-3.2", GenerationOptions("a dear one", resolution="1080p", duration=5, hdr=True), None),
        ("luma/ray-3.2", GenerationOptions("p", "9:21"), "Ray 3.2 makes videos in 16:9, 1:1, 9:16, 4:3, 3:4 or 21:9"),
        ("luma/ray-3.2", GenerationOptions("p", resolution="4k"), "not 4k"),
        ("luma/ray-3.2", GenerationOptions("p", duration=9), "5 or 10 seconds, not 9"),
        ("luma/ray-3.2", GenerationOptions("p", duration=10, resolution="720p", hdr=True), "HDR videos of 5 seconds"),
        ("luma/ray-3.2", GenerationOptions("p", resolution="540p", hdr=True), "at 720p or 1080p only"),
        ("luma/ray-3.2", GenerationOptions("p", hdr=True), None),  # 720p by default: HDR allowed
        ("luma/ray-3.2", GenerationOptions("p", resolution="360p", hdr=True), "set `resolution`"),
        ("legacy", GenerationOptions("p", "9:21"), None),
        ("legacy", GenerationOptions("p", loop=True), "Dream Machine can't make looping videos"),
        ("legacy", GenerationOptions("p", duration=5), "Dream Machine has one length"),
    ],
)
def test_each_model_accepts_its_documented_options_and_refuses_the_rest_by_name(
    model: str, options: GenerationOptions, refusal: str | None
) -> None:
    if refusal is None:
        check_options(CATALOGUE[model], options)
        return
    with pytest.raises(UserFacingError, match=refusal) as refused:
        check_options(CATALOGUE[model], options)
    assert "LUMA" not in refused.value.message  # no operator settings in a member's answer


@pytest.fixture
def router(simulator: RunningSimulator, http_session: aiohttp.ClientSession) -> VideoApiRouter:
    legacy = LumaClient(http_session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY, read_timeout=1.0)
    current = RayClient(http_session, simulator.base_url, Secret(SIM_KEY), retry=FAST_RETRY, read_timeout=1.0)
    return VideoApiRouter(legacy, current, ALL)


@pytest.fixture
def moderation(store: GenerationStore, clock: FakeClock) -> ModerationService:
    return ModerationService(store, ServerLimits(), global_daily=0, models=ALL, clock=clock)


@pytest.fixture
def service(
    store: GenerationStore, router: VideoApiRouter, moderation: ModerationService, clock: FakeClock
) -> GenerationService:
    return GenerationService(store, router, moderation=moderation, clock=clock, models=ModelChoice(ALL))


async def finish(service: GenerationService, generation_id: str | None, clock: FakeClock) -> None:
    clock.advance(61)
    found = await service.find(HERE.guild_id, generation_id or "")
    assert (await service.refresh(found)).state is State.COMPLETED


async def test_members_choose_the_model_and_an_extension_keeps_its_parent_s(
    service: GenerationService, simulator: RunningSimulator, clock: FakeClock
) -> None:
    default = await service.generate(HERE, GenerationOptions("a default video"))
    assert default.model == "luma/ray-2" and simulator.state.requests[-1].json["model"] == "luma/ray-2"
    fast = await service.generate(HERE, GenerationOptions("a fast one", model="luma/ray-flash-2"))
    assert fast.model == "luma/ray-flash-2" and (fast.api_id or "").endswith(":luma/ray-flash-2")
    await finish(service, fast.api_id, clock)
    child = await service.extend(HERE, fast.api_id or "", GenerationOptions("and more"))
    assert child.model == "luma/ray-flash-2"
    assert simulator.state.requests[-1].json["keyframes"]["frame0"] == {"type": "generation", "id": fast.api_id}
    with pytest.raises(UserFacingError, match="doesn't offer"):
        await service.generate(HERE, GenerationOptions("a made-up model", model="luma/ray-9"))


async def test_ray_3_2_cannot_continue_a_video_and_says_what_works_instead(
    service: GenerationService, simulator: RunningSimulator, clock: FakeClock
) -> None:
    made = await service.generate(HERE, GenerationOptions("a tall tree", model="luma/ray-3.2"))
    body = simulator.state.requests[-1].json
    assert body["model"] == "luma/ray-3.2" and "keyframes" not in body
    await finish(service, made.api_id, clock)
    before = simulator.state.count(*V2)
    with pytest.raises(UserFacingError, match=r"Ray 3\.2 has no way to continue a video"):
        await service.extend(HERE, made.api_id or "", GenerationOptions("and then"))
    assert simulator.state.count(*V2) == before


async def test_ray_3_2_frames_travel_as_plain_urls(service: GenerationService, simulator: RunningSimulator) -> None:
    options = GenerationOptions(
        "from a photo",
        model="luma/ray-3.2",
        image_url="https://cdn.example/a.png",
        image_end_url="https://cdn.example/b.png",
        resolution="1080p",
        duration=5,
        hdr=True,
    )
    await service.generate(HERE, options)
    body = simulator.state.requests[-1].json
    assert (body["image_url"], body["last_image_url"], body["hdr"]) == (
        "https://cdn.example/a.png",
        "https://cdn.example/b.png",
        True,
    )


async def test_reframe_and_edit_make_new_generations_that_remember_their_source(
    service: GenerationService,
    store: GenerationStore,
    router: VideoApiRouter,
    moderation: ModerationService,
    simulator: RunningSimulator,
    clock: FakeClock,
) -> None:
    source = await service.generate(HERE, GenerationOptions("a wide beach", "16:9"))
    with pytest.raises(UserFacingError, match="not finished yet"):
        await service.transform_options(1, source.api_id or "", Kind.REFRAME, prompt=None, aspect_ratio="9:16")
    await finish(service, source.api_id, clock)
    finished = await service.find(1, source.api_id or "")

    options, parent = await service.transform_options(
        1, source.api_id or "", Kind.REFRAME, prompt=None, aspect_ratio="9:16"
    )
    reframed = await service.start(HERE, options, parent=parent)
    body = simulator.state.requests[-1].json
    assert body == {
        "model": "luma/ray-3.2",
        "prompt": "a wide beach",
        "aspect_ratio": "9:16",
        "type": "video_reframe",
        "video_url": finished.video_url,
    }
    assert (reframed.kind, reframed.parent_api_id, reframed.model) == (Kind.REFRAME, source.api_id, "luma/ray-3.2")

    options, parent = await service.transform_options(
        1, source.api_id or "", Kind.EDIT, prompt="as a watercolour", aspect_ratio=None
    )
    edited = await service.start(HERE, options, parent=parent)
    body = simulator.state.requests[-1].json
    assert (body["type"], body["prompt"], body["aspect_ratio"]) == ("video_edit", "as a watercolour", "16:9")
    assert edited.kind is Kind.EDIT and edited.parent_api_id == source.api_id

    with pytest.raises(UserFacingError, match="is 16:9 already"):
        await service.transform_options(1, source.api_id or "", Kind.REFRAME, prompt=None, aspect_ratio="16:9")

    # The same limits as any video: one a day, and the member has had three.
    await moderation.set_limits(1, {"user_daily": 3})
    options, parent = await service.transform_options(
        1, source.api_id or "", Kind.EDIT, prompt="noir", aspect_ratio=None
    )
    with pytest.raises(UserFacingError, match="daily limit"):
        await service.start(HERE, options, parent=parent)

    # And announced like any other.
    announcer = RecordingAnnouncer()
    clock.advance(61)
    await Tracker(store, router, announcer, poll_interval=1, timeout_seconds=600, clock=clock).run_once()
    made_from_it = sorted(g.kind for g in announcer.sent if g.parent_api_id == source.api_id)
    assert made_from_it == [Kind.EDIT, Kind.REFRAME]


async def test_a_server_can_narrow_the_models_its_members_use(
    service: GenerationService, moderation: ModerationService, simulator: RunningSimulator
) -> None:
    await moderation.add(1, RuleEntry.MODEL, "luma/ray-3.2")
    default = await service.generate(HERE, GenerationOptions("the server's model"))
    assert default.model == "luma/ray-3.2"
    with pytest.raises(UserFacingError, match=r"This server doesn't use Ray 2; choose Ray 3\.2"):
        await service.generate(HERE, GenerationOptions("not here", model="luma/ray-2"))
    with pytest.raises(UserFacingError, match="doesn't offer"):
        await moderation.add(1, RuleEntry.MODEL, "luma/ray-9")


async def test_the_start_up_check_reports_a_retired_or_refusing_endpoint_and_the_others_go_on(
    service: GenerationService,
    simulator: RunningSimulator,
    http_session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator.config.legacy_enabled = False
    simulator.config.retired_models = frozenset({"luma/ray-flash-2"})
    made = await service.generate(HERE, GenerationOptions("made before it was retired", model="luma/ray-2"))
    simulator.config.retired_models = frozenset({"luma/ray-flash-2", "luma/ray-2"})
    with caplog.at_level(logging.WARNING):
        statuses = await service.check_models()
    assert made.api_id is not None
    # Ray 2 has a recent video to look up, so its 404 means gone; a model never used can't be told from one id.
    assert statuses == {
        "luma/ray-2": ModelStatus.RETIRED,
        "luma/ray-3.2": ModelStatus.OK,
        "luma/ray-flash-2": ModelStatus.OK,
        "legacy": ModelStatus.RETIRED,
    }
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Dream Machine (legacy) looks retired" in logged and "LUMA_MODELS" in logged
    before = len(simulator.state.requests)
    with pytest.raises(UserFacingError, match=r"Ray 2 is unavailable right now\. Choose Ray 3\.2"):
        await service.generate(HERE, GenerationOptions("anyone?", model="luma/ray-2"))
    assert len(simulator.state.requests) == before  # nothing sent for a model known to be gone
    # A model that is gone never blocks the others: the default moves on to the next one that works.
    assert (await service.generate(HERE, GenerationOptions("still working"))).model == "luma/ray-3.2"

    refusing = RayClient(http_session, simulator.base_url, Secret("wrong-key"), retry=FAST_RETRY)
    legacy = LumaClient(http_session, simulator.base_url, Secret("wrong-key"), retry=FAST_RETRY)
    assert await VideoApiRouter(legacy, refusing, ALL).probe("luma/ray-3.2") is ModelStatus.KEY_REFUSED


async def test_the_reported_cost_is_stored_and_prices_the_next_balance_check(
    store: GenerationStore,
    router: VideoApiRouter,
    moderation: ModerationService,
    simulator: RunningSimulator,
    clock: FakeClock,
) -> None:
    balance = BalanceService(router, low_warning=0, clock=clock)
    service = GenerationService(
        store, router, moderation=moderation, balance=balance, clock=clock, models=ModelChoice(ALL)
    )
    hd = GenerationOptions("a price check", resolution="1080p", duration=5)
    assert await service.expected_price(hd) == 500_000  # nothing reported yet: the documented price
    made = await service.generate(HERE, hd)
    await finish(service, made.api_id, clock)
    stored = await store.get(made.id)
    assert stored is not None and (stored.credits_used, stored.usd_spent) == (240_000, 0.12)
    assert await service.expected_price(hd) == 240_000
    assert await service.expected_price(GenerationOptions("other settings", resolution="4k")) == 500_000

    # A balance that covers a Ray 2 video at its reported price, but not a legacy one at 500 000.
    simulator.state.balance = 300_000.0
    clock.advance(3600)  # the cached reading is stale
    await service.generate(HERE, hd)
    with pytest.raises(UserFacingError, match="can't cover a video"):
        await service.generate(HERE, GenerationOptions("classic", model="legacy"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"duration": 10, "resolution": "720p", "hdr": True}, "hdr needs duration 5"),
        ({"resolution": "4k"}, "resolution must be one of"),
        ({"aspect_ratio": "9:21"}, "aspect_ratio must be one of"),
        ({"keyframes": {"frame0": {"type": "image", "url": "https://x"}}}, "keyframes is not supported"),
        ({"type": "video_edit"}, "video_url is required for type video_edit"),
        ({"type": "video_reframe", "video_url": "https://v", "loop": True}, "only for type video"),
        ({"exr_export": True}, "exr_export needs hdr"),
    ],
)
async def test_the_simulator_holds_ray_3_2_to_its_documented_options(
    simulator: RunningSimulator, http_session: aiohttp.ClientSession, body: dict[str, object], problem: str
) -> None:
    request = {"model": "luma/ray-3.2", "prompt": "a test"} | body
    async with http_session.post(
        f"{simulator.base_url}/v2/video/generations", json=request, headers={"Authorization": f"Bearer {SIM_KEY}"}
    ) as response:
        assert response.status == 400
        assert problem in " ".join((await response.json())["details"])
    assert simulator.state.create_count == 0


async def test_the_simulator_prices_each_video_by_model_and_settings(
    router: VideoApiRouter, simulator: RunningSimulator
) -> None:
    cheap = await router.create(GenerationOptions("a cheap one", resolution="540p"), "luma/ray-flash-2")
    dear = await router.create(
        GenerationOptions("a dear one", resolution="1080p", duration=5, hdr=True), "luma/ray-3.2"
    )
    reframed = await router.create(
        GenerationOptions("a tall one", "9:16", transform="video_reframe", source_video_url="https://v"), "luma/ray-3.2"
    )
    credits = {gen.id: gen.credits for gen in simulator.state.generations.values()}
    assert (credits[cheap.id], credits[dear.id], credits[reframed.id]) == (45_000, 600_000, 200_000)
    assert simulator.state.generations[reframed.id].options["type"] == "video_reframe"
