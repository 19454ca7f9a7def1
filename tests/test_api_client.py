"""The API client against the simulator over loopback: shapes, batching, errors, and the no-resend rule."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from bot.api_client import (
    ApiMalformedResponse,
    ApiOutOfCredits,
    ApiRateLimited,
    ApiRequestInvalid,
    ApiServerError,
    ApiUnauthorized,
    ApiUnavailable,
    CreateOutcomeUnknown,
    LumaClient,
    error_for_response,
    parse_generation,
    parse_generation_list,
)
from bot.config import Secret
from bot.models import GenerationOptions
from bot.simulator import RunningSimulator
from tests.conftest import FAST_RETRY, FakeClock

CREATE = ("POST", "/luma-ai/generations")
LOOKUP = ("GET", "/luma-ai/generation")


async def test_create_then_follow_to_completion(api: LumaClient, simulator: RunningSimulator, clock: FakeClock) -> None:
    created = await api.create(GenerationOptions("Flying jellyfish", "9:16", False))
    assert created.state == "pending" and created.video_url is None
    clock.advance(10)
    assert (await api.fetch(created.id)).state == "processing"  # type: ignore[union-attr]
    clock.advance(60)
    done = await api.fetch(created.id)
    assert done is not None and done.is_completed
    assert done.video_url and done.video_url.endswith(".mp4")
    assert simulator.state.generations[created.id].aspect_ratio == "9:16"


async def test_look_ups_are_batched_by_fifty(api: LumaClient, simulator: RunningSimulator) -> None:
    ids = [(await api.create(GenerationOptions(f"scene number {n}"))).id for n in range(120)]
    before = simulator.state.count(*LOOKUP)
    found = await api.fetch_many([*ids, "00000000-0000-0000-0000-000000000000"])
    assert set(found) == set(ids)  # matched by id although the simulator shuffles, unknown one absent
    assert simulator.state.count(*LOOKUP) - before == 3


async def test_extend_makes_a_new_generation(api: LumaClient, simulator: RunningSimulator, clock: FakeClock) -> None:
    parent = await api.create(GenerationOptions("a red kite"))
    with pytest.raises(ApiRequestInvalid, match="completed"):
        await api.extend(parent.id, GenerationOptions("it flies away"))
    clock.advance(61)
    child = await api.extend(parent.id, GenerationOptions("it flies away"))
    assert child.id != parent.id
    assert simulator.state.generations[child.id].parent_id == parent.id


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [(400, ApiRequestInvalid), (401, ApiUnauthorized), (403, ApiOutOfCredits)],
)
async def test_refusals_are_typed_and_not_retried(
    api: LumaClient, simulator: RunningSimulator, fault: int, error_type: type[Exception]
) -> None:
    simulator.state.create_faults.append(fault)
    with pytest.raises(error_type):
        await api.create(GenerationOptions("a quiet lake"))
    assert simulator.state.count(*CREATE) == 1
    assert simulator.state.create_count == 0


async def test_a_wrong_key_is_unauthorized(simulator: RunningSimulator, http_session: aiohttp.ClientSession) -> None:
    client = LumaClient(http_session, simulator.base_url, Secret("wrong"), retry=FAST_RETRY)
    with pytest.raises(ApiUnauthorized) as caught:
        await client.create(GenerationOptions("a quiet lake"))
    assert "misconfigured" in caught.value.user_message


async def test_validation_reason_reaches_the_member(api: LumaClient) -> None:
    with pytest.raises(ApiRequestInvalid) as caught:
        await api.create(GenerationOptions("ok prompt", aspect_ratio="5:4"))
    assert "aspect_ratio" in caught.value.user_message


@pytest.mark.parametrize("fault", [500, 502, 503, 504, "accept_then_500", "accept_then_reset", "reset"])
async def test_a_create_that_may_have_been_accepted_is_never_resent(
    api: LumaClient, simulator: RunningSimulator, fault: int | str
) -> None:
    simulator.state.create_faults.append(fault)
    with pytest.raises(CreateOutcomeUnknown):
        await api.create(GenerationOptions("a costly video"))
    assert simulator.state.count(*CREATE) == 1


async def test_a_rate_limited_create_is_retried_because_it_was_refused(
    api: LumaClient, simulator: RunningSimulator
) -> None:
    simulator.state.create_faults.extend([429, 429])
    created = await api.create(GenerationOptions("patience"))
    assert simulator.state.count(*CREATE) == 3
    assert simulator.state.create_count == 1 and created.id in simulator.state.generations


async def test_rate_limits_that_persist_surface_as_rate_limited(api: LumaClient, simulator: RunningSimulator) -> None:
    simulator.state.create_faults.extend([429] * 4)
    with pytest.raises(ApiRateLimited):
        await api.create(GenerationOptions("patience"))
    assert simulator.state.create_count == 0


async def test_a_create_that_never_connected_is_retried_then_reported(http_session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    client = LumaClient(http_session, f"http://127.0.0.1:{port}", Secret("k"), retry=FAST_RETRY)
    with pytest.raises(ApiUnavailable) as caught:
        await client.create(GenerationOptions("nobody home"))
    assert caught.value.request_sent is False


@pytest.mark.parametrize("fault", [429, 500, 502, 504, "malformed", "slow"])
async def test_look_ups_retry_through_passing_faults(
    api: LumaClient, simulator: RunningSimulator, fault: int | str
) -> None:
    created = await api.create(GenerationOptions("steady"))
    simulator.state.lookup_faults.append(fault)
    assert (await api.fetch_many([created.id])).keys() == {created.id}
    assert simulator.state.count(*LOOKUP) == 2


async def test_look_ups_give_up_after_the_retry_budget(api: LumaClient, simulator: RunningSimulator) -> None:
    created = await api.create(GenerationOptions("steady"))
    simulator.state.lookup_faults.extend([500] * 4)
    with pytest.raises(ApiServerError):
        await api.fetch_many([created.id])


def test_parsing_accepts_a_one_element_list_and_thumbnail_objects() -> None:
    generation = parse_generation(
        [
            {
                "id": "g1",
                "state": "completed",
                "video": {"url": "https://v/1.mp4", "thumbnail": {"url": "https://v/1.jpg", "width": 1}},
                "last_frame": {"url": "https://v/last.jpg"},
            }
        ]
    )
    assert generation.video_url == "https://v/1.mp4"
    assert generation.thumbnail_url == "https://v/1.jpg"
    assert generation.last_frame_url == "https://v/last.jpg"


def test_parsing_unknown_states_as_running_and_failures_with_reason() -> None:
    dreaming = parse_generation({"id": "g", "state": "Dreaming", "video": None})
    assert dreaming.state == "dreaming" and not dreaming.is_final
    odd = parse_generation({"id": "g", "state": "teleporting"})
    assert not odd.is_final
    failed = parse_generation({"id": "g", "state": "failed", "failure_reason": "nsfw"})
    assert failed.is_failed and failed.failure_reason == "nsfw"


def test_parsing_rejects_objects_without_id_or_state() -> None:
    for bad in [{}, {"id": "x"}, {"state": "pending"}, [1, 2], "text"]:
        with pytest.raises(ApiMalformedResponse):
            parse_generation(bad)
    assert [g.id for g in parse_generation_list([{"id": "a", "state": "pending"}, {"junk": 1}])] == ["a"]


@pytest.mark.parametrize(
    ("status", "body", "expected_type", "detail"),
    [
        (400, '{"message": "Body validation error!", "statusCode": "400"}', ApiRequestInvalid, "Body validation"),
        (401, '{"detail": "Invalid key"}', ApiUnauthorized, "Invalid key"),
        (403, "You've run out of credits", ApiOutOfCredits, "out of credits"),
        (429, "", ApiRateLimited, None),
        (504, '{"message": "Generation timeout"}', ApiServerError, "Generation timeout"),
    ],
)
def test_status_codes_map_to_one_error_family(
    status: int, body: str, expected_type: type[Exception], detail: str | None
) -> None:
    error = error_for_response(status, body, {"Retry-After": "3"})
    assert isinstance(error, expected_type)
    assert error.detail == detail or (detail and detail in (error.detail or ""))
    if isinstance(error, ApiRateLimited):
        assert error.retry_after == 3


async def test_a_create_accepted_with_an_unreadable_answer_is_unknown_not_refused(
    api: LumaClient, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def garbled(*args: object, **kwargs: object) -> object:
        raise ApiMalformedResponse("POST /luma-ai/generations: answer is not JSON")

    monkeypatch.setattr(api, "_request", garbled)
    with pytest.raises(CreateOutcomeUnknown):
        await api.create(GenerationOptions("paid for, answer lost"))
