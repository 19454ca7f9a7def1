"""Creates whose answer never came: found in the account's list, adopted once, and their requesters told honestly."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.api_client import LumaClient
from bot.generations import GenerationService, Origin
from bot.models import Generation, GenerationOptions, Kind, State
from bot.reconcile import CheckSchedule, Reconciler, _Candidate, match_in_order
from bot.simulator import RunningSimulator
from bot.storage import GenerationStore
from bot.storage.shared import new_process_id
from bot.tracker import Tracker
from tests.conftest import FakeClock
from tests.fakes import RecordingAnnouncer

ALICE = Origin(guild_id=1, channel_id=11, user_id=100)
BOB = Origin(guild_id=1, channel_id=11, user_id=200)
CREATES = ("POST", "/luma-ai/generations")
SCHEDULE = CheckSchedule(first_check_seconds=30, window_seconds=3600, max_interval_seconds=900)
# A whole read of the list fails only when every retry of the client fails too.
FAILED_READ = [500] * 4


@pytest.fixture
def store(any_store: GenerationStore) -> GenerationStore:
    """These tests run on each backend."""
    return any_store


@pytest.fixture
def service(store: GenerationStore, api: LumaClient, clock: FakeClock) -> GenerationService:
    return GenerationService(store, api, clock=clock, check_schedule=SCHEDULE)


@pytest.fixture
def announcer() -> RecordingAnnouncer:
    return RecordingAnnouncer()


@pytest.fixture
def tracker(store: GenerationStore, api: LumaClient, announcer: RecordingAnnouncer, clock: FakeClock) -> Tracker:
    reconciler = Reconciler(store, api, schedule=SCHEDULE, clock=clock)
    return Tracker(store, api, announcer, poll_interval=0.01, timeout_seconds=7200, clock=clock, reconciler=reconciler)


async def cycles(tracker: Tracker, clock: FakeClock, *, seconds: float, step: float = 30.0) -> None:
    """Let `seconds` pass, one tracker cycle every `step` seconds."""
    waited = 0.0
    while waited < seconds:
        clock.advance(step)
        waited += step
        await tracker.run_once()


def sim_ids_with_prompt(simulator: RunningSimulator, prompt: str) -> list[str]:
    return [gen.id for gen in simulator.state.generations.values() if gen.prompt == prompt]


async def insert_sending(store: GenerationStore, options: GenerationOptions, origin: Origin, now: float) -> Generation:
    """A row whose create is on its way (or was, when the process died)."""
    return await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=origin.guild_id,
        channel_id=origin.channel_id,
        requester_id=origin.user_id,
        options=options,
        parent_api_id=None,
        now=now,
    )


async def row(store: GenerationStore, row_id: int) -> Generation:
    found = await store.get(row_id)
    assert found is not None
    return found


async def test_a_create_whose_answer_was_cut_is_adopted_and_announced_once(
    service: GenerationService,
    tracker: Tracker,
    store: GenerationStore,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    simulator.state.create_faults.append("accept_then_reset")
    checking = await service.generate(ALICE, GenerationOptions("A heron lands on a pier"))
    assert checking.state is State.CHECKING and checking.api_id is None
    await tracker.run_once()
    assert (await row(store, checking.id)).state is State.CHECKING  # the first look comes after 30 s
    await cycles(tracker, clock, seconds=30)
    [made] = sim_ids_with_prompt(simulator, "A heron lands on a pier")
    adopted = await row(store, checking.id)
    assert adopted.state is State.RUNNING and adopted.api_id == made
    await cycles(tracker, clock, seconds=90)
    assert announcer.sent_ids() == [made]
    assert announcer.sent[0].state is State.COMPLETED and announcer.sent[0].video_url
    await cycles(tracker, clock, seconds=120)
    assert announcer.sent_ids() == [made]
    assert simulator.state.count(*CREATES) == 1


async def test_two_identical_prompts_lost_at_once_are_each_adopted_once_in_the_order_sent(
    service: GenerationService,
    tracker: Tracker,
    store: GenerationStore,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    prompt = "Two kites in one sky"
    simulator.state.create_faults.extend(["accept_then_reset", "accept_then_reset"])
    first = await service.generate(ALICE, GenerationOptions(prompt))
    clock.advance(4)
    second = await service.generate(BOB, GenerationOptions(prompt))
    await cycles(tracker, clock, seconds=30)
    made = sim_ids_with_prompt(simulator, prompt)
    assert len(made) == 2
    assert [(await row(store, first.id)).api_id, (await row(store, second.id)).api_id] == made
    await cycles(tracker, clock, seconds=90)
    assert sorted(announcer.sent_ids()) == sorted(made)
    assert {g.requester_id for g in announcer.sent} == {ALICE.user_id, BOB.user_id}
    assert simulator.state.count(*CREATES) == 2


async def test_the_list_unreachable_for_a_while_delays_the_video_but_does_not_lose_it(
    service: GenerationService,
    tracker: Tracker,
    store: GenerationStore,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    simulator.state.create_faults.append("accept_then_500")
    checking = await service.generate(ALICE, GenerationOptions("Snow on a red roof"))
    simulator.state.list_faults.extend(FAILED_READ * 2)
    await cycles(tracker, clock, seconds=30)
    assert (await row(store, checking.id)).state is State.CHECKING
    await cycles(tracker, clock, seconds=60)
    assert (await row(store, checking.id)).state is State.CHECKING and not simulator.state.list_faults
    await cycles(tracker, clock, seconds=300)
    [made] = sim_ids_with_prompt(simulator, "Snow on a red roof")
    assert announcer.sent_ids() == [made]


async def test_a_request_never_received_is_reported_safe_to_retry_and_gives_its_count_back(
    service: GenerationService,
    tracker: Tracker,
    store: GenerationStore,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    simulator.state.create_faults.append(500)  # refused before anything was made
    checking = await service.generate(ALICE, GenerationOptions("A boat that never sailed"))
    standing = await store.usage_now(1, ALICE.user_id, 0)
    assert (standing.user_today, standing.user_running) == (1, 1)  # counted while it may have been made
    await cycles(tracker, clock, seconds=3500, step=60)
    assert announcer.sent == []
    await cycles(tracker, clock, seconds=200, step=60)
    [told] = announcer.sent
    assert told.id == checking.id and told.state is State.NOT_RECEIVED
    assert "trying again is safe" in (told.failure_reason or "")
    standing = await store.usage_now(1, ALICE.user_id, 0)
    assert (standing.user_today, standing.user_running) == (0, 0)


async def test_a_list_never_readable_ends_unconfirmed_without_inviting_a_retry(
    service: GenerationService,
    tracker: Tracker,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    simulator.state.create_faults.append("accept_then_500")
    await service.generate(ALICE, GenerationOptions("A lamp left on"))
    simulator.state.list_faults.extend(FAILED_READ * 40)
    await cycles(tracker, clock, seconds=3700, step=60)
    [told] = announcer.sent
    assert told.state is State.UNCONFIRMED
    reason = told.failure_reason or ""
    assert "`/status` will show it" in reason and "try" not in reason.replace("trying", "").lower()
    assert simulator.state.list_faults  # it did not read the list every cycle: it backed off


async def test_one_early_read_of_the_list_is_no_proof_that_a_request_never_arrived(
    service: GenerationService,
    tracker: Tracker,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    simulator.state.create_faults.append(504)
    await service.generate(ALICE, GenerationOptions("A slow answer"))
    await cycles(tracker, clock, seconds=30)  # the one read that works, soon after the answer was lost
    simulator.state.list_faults.extend(FAILED_READ * 40)
    await cycles(tracker, clock, seconds=3700, step=60)
    [told] = announcer.sent
    assert told.state is State.UNCONFIRMED and "trying again is safe" not in (told.failure_reason or "")


async def test_a_restart_looks_for_a_cut_create_and_tells_the_requester_once(
    service: GenerationService,
    tracker: Tracker,
    store: GenerationStore,
    api: LumaClient,
    announcer: RecordingAnnouncer,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    options = GenerationOptions("A bell rings at dawn")
    # The first life: the row is written, the API accepts the create, the process dies before the answer is stored.
    cut = await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=11,
        requester_id=100,
        options=options,
        parent_api_id=None,
        now=clock(),
    )
    made = await api.create(options)
    # The second life: another process on the same database.
    store.process_id = new_process_id()
    [recovered] = await service.recover_interrupted()
    assert recovered.state is State.CHECKING and recovered.notice_sent_at is None
    await tracker.run_once()
    await tracker.run_once()
    [notice] = announcer.sent
    assert notice.state is State.CHECKING and "restarted" in (notice.failure_reason or "")
    await cycles(tracker, clock, seconds=150)
    assert [g.state for g in announcer.sent] == [State.CHECKING, State.COMPLETED]
    assert announcer.sent[1].api_id == made.id and announcer.sent[1].id == cut.id
    assert simulator.state.count(*CREATES) == 1


async def test_a_create_still_waiting_for_its_answer_keeps_its_generation(
    service: GenerationService,
    tracker: Tracker,
    store: GenerationStore,
    api: LumaClient,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> None:
    """A generation listed before its own create has returned belongs to that create, not to a lost one."""
    options = GenerationOptions("The same words twice")
    simulator.state.create_faults.append(500)  # the lost one: never made
    lost = await service.generate(ALICE, options)
    clock.advance(5)
    waiting = await store.insert_submitting(
        kind=Kind.GENERATE,
        guild_id=1,
        channel_id=11,
        requester_id=200,
        options=options,
        parent_api_id=None,
        now=clock(),
    )
    made = await api.create(options)  # accepted, its answer on its way
    await cycles(tracker, clock, seconds=60)
    assert (await row(store, lost.id)).state is State.CHECKING
    await store.mark_submitted(waiting.id, made, clock())
    await cycles(tracker, clock, seconds=3700, step=120)
    assert (await row(store, lost.id)).state is State.NOT_RECEIVED
    assert (await row(store, waiting.id)).api_id == made.id


def request(row_id: int, sent_at: float) -> Generation:
    return Generation(
        id=row_id, api_id=None, parent_api_id=None, kind=Kind.GENERATE, guild_id=1, channel_id=1, requester_id=1,
        prompt="p", aspect_ratio="16:9", expand_prompt=True, state=State.CHECKING, api_state=None, video_url=None,
        thumbnail_url=None, last_frame_url=None, failure_reason=None, status_message_id=None, created_at=sent_at,
        updated_at=sent_at, submitted_at=None, finished_at=None, announce_claimed_at=None, announced_at=None,
        announce_attempts=0, delivery=None,
    )  # fmt: skip


def paired(requests: Sequence[Generation], candidates: Sequence[_Candidate]) -> list[tuple[int, str]]:
    return [(generation.id, api_id) for generation, api_id in match_in_order(requests, candidates)]


def test_matching_follows_the_order_of_sending() -> None:
    requests = [request(2, 1000.0), request(1, 990.0)]
    candidates = [_Candidate("late", 1003.0), _Candidate("early", 991.0)]
    assert paired(requests, candidates) == [(1, "early"), (2, "late")]


def test_a_generation_made_far_from_the_request_is_not_adopted() -> None:
    assert paired([request(1, 1000.0)], [_Candidate("last-week", 1000.0 - 7 * 86400)]) == []
    assert paired([request(1, 1000.0)], [_Candidate("much-later", 1000.0 + 3600)]) == []


def test_with_fewer_generations_than_requests_the_closest_request_gets_it() -> None:
    requests = [request(1, 1000.0), request(2, 1030.0)]
    assert paired(requests, [_Candidate("made", 1031.0)]) == [(2, "made")]
    assert paired(requests, [_Candidate("made", 1001.0)]) == [(1, "made")]
