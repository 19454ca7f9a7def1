"""What a result's buttons and /show do against the simulator: the same rules and limits as the commands."""

from __future__ import annotations

import pytest

from bot.api_client import LumaClient
from bot.errors import UserFacingError
from bot.generations import GenerationService, Origin
from bot.models import ApiGeneration, Generation, GenerationOptions, Kind, State
from bot.moderation import ModerationService
from bot.presses import Presser, ResultAction
from bot.quota import LimitReached, ServerLimits
from bot.results import VIDEO_GONE, ResultService
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore, RuleEntry
from tests.conftest import FakeClock

HERE = Origin(guild_id=1, channel_id=11, user_id=100)
OTHER_MEMBER = Origin(guild_id=1, channel_id=11, user_id=200)
CREATES = ("POST", "/luma-ai/generations")


@pytest.fixture
def moderation(store: GenerationStore, clock: FakeClock) -> ModerationService:
    return ModerationService(store, ServerLimits(), global_daily=0, clock=clock)


@pytest.fixture
def service(
    store: GenerationStore, api: LumaClient, clock: FakeClock, moderation: ModerationService
) -> GenerationService:
    return GenerationService(store, api, clock=clock, moderation=moderation)


@pytest.fixture
def results(
    store: GenerationStore, api: LumaClient, service: GenerationService, moderation: ModerationService, clock: FakeClock
) -> ResultService:
    return ResultService(store, api, service, moderation, clock=clock)


async def finished(service: GenerationService, clock: FakeClock, prompt: str = "A fox in snow") -> Generation:
    started = await service.generate(HERE, GenerationOptions(prompt, "4:3", False))
    clock.advance(61)
    done = await service.refresh(started)
    assert done.state is State.COMPLETED
    return done


async def start_as_the_command_would(
    service: GenerationService, origin: Origin, options: GenerationOptions, parent: Generation | None
) -> Generation:
    """What cogs.generation.start_publicly does with a press's request: check, then the one atomic reservation."""
    _, options = await service.check(origin, options, parent)
    return await service.start(origin, options, parent=parent)


async def test_reroll_sends_the_same_prompt_and_options_once_more(
    service: GenerationService, results: ResultService, simulator: RunningSimulator, clock: FakeClock
) -> None:
    video = await finished(service, clock)
    pressed = await results.pressed(Presser(100, 1), video.id, ResultAction.REROLL)
    options, parent = await results.reroll_request(pressed)
    again = await start_as_the_command_would(service, OTHER_MEMBER, options, parent)
    first, second = [r.json for r in simulator.state.requests if (r.method, r.path) == CREATES]
    assert first == second == {"user_prompt": "A fox in snow", "aspect_ratio": "4:3", "expand_prompt": False}
    assert again.api_id != video.api_id and again.requester_id == OTHER_MEMBER.user_id


async def test_reroll_of_an_extension_extends_the_same_video_again(
    service: GenerationService, results: ResultService, simulator: RunningSimulator, clock: FakeClock
) -> None:
    video = await finished(service, clock)
    extension = await service.extend(HERE, video.api_id or "", GenerationOptions("the fox jumps", "4:3"))
    options, parent = await results.reroll_request(extension)
    again = await start_as_the_command_would(service, HERE, options, parent)
    assert again.kind is Kind.EXTEND and again.parent_api_id == video.api_id and again.prompt == "the fox jumps"
    extends = [r for r in simulator.state.requests if r.endpoint == "POST /luma-ai/generations/{id}/extend"]
    assert [r.path.rsplit("/", 2)[-2] for r in extends] == [video.api_id, video.api_id]


async def test_every_limit_applies_to_a_press_as_to_the_command(
    service: GenerationService,
    results: ResultService,
    moderation: ModerationService,
    simulator: RunningSimulator,
    clock: FakeClock,
) -> None:
    video = await finished(service, clock)
    await moderation.set_limits(1, {"user_daily": 1, "user_queued": 0})
    options, parent = await results.reroll_request(video)
    with pytest.raises(LimitReached, match="1"):
        await start_as_the_command_would(service, HERE, options, parent)
    extend_options, extended = await results.extend_request(video, "the fox sleeps")
    with pytest.raises(LimitReached):
        await start_as_the_command_would(service, HERE, extend_options, extended)
    assert simulator.state.count(*CREATES) == 1


async def test_a_blocked_phrase_added_since_stops_a_reroll(
    service: GenerationService, results: ResultService, moderation: ModerationService, clock: FakeClock
) -> None:
    video = await finished(service, clock, "A fox in the snow")
    await moderation.add(1, RuleEntry.BLOCKED_PHRASE, "fox")
    options, parent = await results.reroll_request(video)
    with pytest.raises(UserFacingError, match="moderators don't allow"):
        await start_as_the_command_would(service, HERE, options, parent)


async def test_extend_by_form_continues_the_video_in_its_own_shape(
    service: GenerationService, results: ResultService, clock: FakeClock
) -> None:
    video = await finished(service, clock)
    options, parent = await results.extend_request(video, "  the fox   runs home ")
    assert (options.prompt, options.aspect_ratio, parent.id) == ("the fox runs home", "4:3", video.id)
    with pytest.raises(UserFacingError, match="too short"):
        await results.extend_request(video, "no")
    running = await service.generate(HERE, GenerationOptions("a hare"))
    with pytest.raises(UserFacingError, match="not finished yet"):
        await results.extend_request(running, "the hare runs")


async def test_a_members_press_follows_the_sharing_setting_and_never_crosses_servers(
    service: GenerationService, results: ResultService, moderation: ModerationService, clock: FakeClock
) -> None:
    video = await finished(service, clock)
    assert (await results.pressed(Presser(200, 1), video.id, ResultAction.EXTEND)).id == video.id
    await moderation.set_sharing(1, False)
    with pytest.raises(UserFacingError, match="only their own"):
        await results.pressed(Presser(200, 1), video.id, ResultAction.REROLL)
    assert (await results.pressed(Presser(200, 1, is_moderator=True), video.id, ResultAction.REROLL)).id == video.id
    with pytest.raises(UserFacingError, match="No generation `#1` was found in this server"):
        await results.pressed(Presser(100, 2, is_moderator=True), video.id, ResultAction.REFRESH)
    with pytest.raises(UserFacingError, match="No generation `#99`"):
        await results.pressed(Presser(100, 1), 99, ResultAction.REFRESH)


async def test_refresh_stores_and_gives_a_fresh_link(
    service: GenerationService,
    results: ResultService,
    store: GenerationStore,
    simulator: RunningSimulator,
    clock: FakeClock,
) -> None:
    simulator.config.link_lifetime_seconds = 3600
    video = await finished(service, clock)
    clock.advance(4000)  # the link has expired
    fresh = await results.refetch(video)
    assert fresh.video_url and fresh.video_url != video.video_url and fresh.state is State.COMPLETED
    assert (await store.get(video.id)) == fresh
    del simulator.state.generations[video.api_id or ""]
    with pytest.raises(UserFacingError) as gone:
        await results.refetch(fresh)
    assert gone.value.message == VIDEO_GONE
    assert (await results.fresh_or_stored(fresh)).video_url == fresh.video_url  # /show posts the stored link


async def test_refresh_of_a_late_video_shows_it_if_it_finished_after_all(
    service: GenerationService, results: ResultService, store: GenerationStore, clock: FakeClock
) -> None:
    started = await service.generate(HERE, GenerationOptions("a slow owl"))
    await store.mark_timed_out(started.id, "not ready after 30 minutes", clock())
    late = await store.get(started.id)
    assert late is not None and late.state is State.TIMED_OUT
    clock.advance(61)
    assert (await results.refetch(late)).state is State.COMPLETED


async def test_show_takes_finished_videos_of_this_server_only(
    service: GenerationService, results: ResultService, moderation: ModerationService, clock: FakeClock
) -> None:
    video = await finished(service, clock)
    assert (await results.showable(OTHER_MEMBER, video.api_id or "")).id == video.id
    with pytest.raises(UserFacingError, match="No generation"):
        await results.showable(Origin(guild_id=2, channel_id=22, user_id=100), video.api_id or "")
    running = await service.generate(HERE, GenerationOptions("a hare"))
    with pytest.raises(UserFacingError, match="not a finished video"):
        await results.showable(HERE, running.api_id or "")
    await moderation.add(1, RuleEntry.CHANNEL, "12")
    with pytest.raises(UserFacingError, match="<#12>"):
        await results.showable(HERE, video.api_id or "")


async def test_private_requests_are_refused_where_moderators_turned_private_mode_off(
    service: GenerationService, moderation: ModerationService, simulator: RunningSimulator
) -> None:
    options = service.prepare(GenerationOptions("a private fox"))
    kept = await service.start(HERE, options, parent=None, private=True)
    assert kept.private is True
    await moderation.set_private_mode(1, False)
    for attempt in (
        service.check(HERE, options, None, private=True),
        service.start(HERE, options, parent=None, private=True),
    ):
        with pytest.raises(UserFacingError, match="turned private mode off"):
            await attempt
    assert (await service.start(HERE, options, parent=None)).private is False  # asked publicly, it goes on
    assert simulator.state.count(*CREATES) == 2


async def test_another_members_private_videos_are_never_offered_nor_shown(
    service: GenerationService, results: ResultService, clock: FakeClock
) -> None:
    options = service.prepare(GenerationOptions("a secret garden"))
    private = await service.start(HERE, options, parent=None, private=True)
    clock.advance(61)
    private = await service.refresh(private)
    for finished_only in (False, True):
        assert [g.id for g in await service.suggest(HERE, "garden", finished_only=finished_only)] == [private.id]
        assert await service.suggest(OTHER_MEMBER, "garden", finished_only=finished_only) == []
    with pytest.raises(UserFacingError, match="No generation"):
        await results.showable(OTHER_MEMBER, private.api_id or "")
    assert (await results.showable(HERE, private.api_id or "")).id == private.id


async def test_the_extend_form_is_not_offered_for_a_video_its_model_cannot_continue(
    results: ResultService, store: GenerationStore, service: GenerationService, clock: FakeClock
) -> None:
    await results.check_extendable(await finished(service, clock))  # Dream Machine continues its videos
    row = await store.reserve(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=11,
        requester_id=100,
        options=GenerationOptions("a ray video"),
        parent_api_id=None,
        now=clock(),
        model="luma/ray-3.2",
        counted_since=0.0,
        decide=None,
    )
    api_id = "7c88e1e2-0000-4000-8000-000000000001:luma/ray-3.2"
    await store.mark_submitted(row.id, ApiGeneration(id=api_id, state="queued"), clock())
    done = await store.apply_api_update(
        row.id,
        ApiGeneration(
            id=api_id,
            state="completed",
            video_url="https://cdn.example/v.mp4",
            last_frame_url="https://cdn.example/l.jpg",
        ),
        clock(),
    )
    with pytest.raises(UserFacingError, match="no way to continue a video"):
        await results.check_extendable(done)
