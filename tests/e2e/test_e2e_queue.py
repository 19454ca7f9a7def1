"""The queue on the real process: a capped burst from three servers, started fairly, each delivered exactly once;
/queue, /cancel and the Cancel button; a kill -9 while jobs wait."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .fake_discord import FakeChannel, FakeMessage, FakeUser
from .harness import E2E, assert_private, embed_fields, running_e2e, status_id
from .worlds import GENERAL_3, three_servers

WAITING = "waiting in the queue"


@pytest.fixture
async def e2e3(tmp_path: Path) -> AsyncIterator[E2E]:
    """The harness with a fake Discord of three servers."""
    async with running_e2e(tmp_path, world=three_servers()) as harness:
        yield harness


class ApiWatch:
    """Samples how many generations the simulator is making at each moment."""

    def __init__(self, e2e: E2E) -> None:
        self._e2e = e2e
        self.most = 0
        self._task: asyncio.Task[None] | None = None

    def running_now(self) -> int:
        sim = self._e2e.sim
        now = time.time()
        return sum(1 for g in sim.state.generations.values() if now - g.created_at < sim.config.complete_after)

    async def _watch(self) -> None:
        while True:
            self.most = max(self.most, self.running_now())
            await asyncio.sleep(0.005)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[ApiWatch]:
        self._task = asyncio.create_task(self._watch())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def queue_command(e2e: E2E, prompt: str, user: FakeUser, channel: FakeChannel) -> FakeMessage:
    """/generate, answered with its public status message (started or waiting)."""
    outcome = await e2e.outcome(await e2e.command("generate", {"prompt": prompt}, user=user, channel=channel))
    assert not outcome.private, f"/generate was refused: {outcome.text!r}"
    return outcome.message


def versions(e2e: E2E, message: FakeMessage) -> list[FakeMessage]:
    return [m for m in e2e.fake.message_log if m.id == message.id]


async def wait_created(e2e: E2E, prompt: str) -> None:
    def created() -> bool:
        return any(g.prompt == prompt for g in e2e.sim.state.generations.values())

    await e2e.wait_until(created, f"the create of {prompt!r}", timeout=30)


async def wait_shows_started(e2e: E2E, status: FakeMessage, generation_id: str) -> None:
    """Until the status message shows the job's generation, without the Cancel button."""

    def shown() -> bool:
        latest = e2e.fake.get_message(status.id)
        return latest is not None and latest.custom_ids == [] and generation_id in embed_fields(latest).get("Id", "")

    await e2e.wait_until(shown, f"the status message of {generation_id} shows it started")


def sim_id_of(e2e: E2E, prompt: str) -> str:
    [found] = [g.id for g in e2e.sim.state.generations.values() if g.prompt == prompt]
    return found


async def test_a_capped_burst_from_three_servers_runs_two_at_a_time_fairly_and_each_is_delivered_once(
    e2e3: E2E,
) -> None:
    e2e = e2e3
    fake = e2e.fake
    e2e.sim.config.complete_after = 3600.0  # nothing finishes until the whole burst is in
    await e2e.start_bot(MAX_RUNNING_GENERATIONS="2")
    third = fake.world.find_channel(GENERAL_3)
    assert third is not None
    places = {1: fake.general, 2: fake.general2, 3: third}
    burst = [(1, fake.alice)] * 3 + [(1, fake.bob)] * 3 + [(2, fake.alice)] * 2 + [(2, fake.bob)] * 2
    burst += [(3, fake.alice)] * 2
    counts: dict[tuple[int, str], int] = {}
    statuses: dict[str, FakeMessage] = {}
    async with ApiWatch(e2e).watching() as watch:
        for server, user in burst:
            counts[(server, user.username)] = counts.get((server, user.username), 0) + 1
            prompt = f"s{server} {user.username} {counts[(server, user.username)]} a lighthouse in fog"
            statuses[prompt] = await queue_command(e2e, prompt, user, places[server])
        assert e2e.creates() == 2
        for status in list(statuses.values())[2:]:
            fields = embed_fields(status)
            assert fields["State"] == WAITING and int(fields["Position in the queue"]) >= 1
            assert any(custom_id.startswith("queue:cancel:") for custom_id in status.custom_ids)
            assert "Cancel" in status.text
        # /queue: two running against the cap of two, ten waiting, the caller's own with their places.
        shown = await e2e.ask("queue", user=fake.bob, channel=fake.general2)
        assert_private(shown, "2 of 2", "4 here, 10 in all", "s2 bob 1", "s2 bob 2")
        assert "s2 alice" not in shown.text and "s1 bob" not in shown.text

        e2e.sim.config.complete_after = 0.5
        ids = {}
        for prompt in statuses:
            await wait_created(e2e, prompt)
            ids[prompt] = sim_id_of(e2e, prompt)
            await e2e.wait_announcement(ids[prompt], timeout=30)
    assert watch.most <= 2
    assert e2e.creates() == 12
    await asyncio.sleep(1.0)  # a second announcement would come within a few tracker cycles
    for prompt, generation_id in ids.items():
        assert len(e2e.announcements(generation_id)) == 1, prompt
        # The status message followed the job: it shows its generation now, without the Cancel button.
        await wait_shows_started(e2e, statuses[prompt], generation_id)

    started = [row[0] for row in e2e.db_query("SELECT prompt FROM generations ORDER BY started_at, id")]
    order = [" ".join(prompt.split()[:3]) for prompt in started]
    assert order == [
        "s1 alice 1",
        "s1 alice 2",  # started at once, before the cap was reached
        "s2 alice 1",  # then each turn to the server that started one least recently
        "s3 alice 1",
        "s1 bob 1",  # within a server, the member who started one least recently
        "s2 bob 1",
        "s3 alice 2",
        "s1 alice 3",
        "s2 alice 2",
        "s1 bob 2",
        "s2 bob 2",
        "s1 bob 3",
    ]

    # Waiting jobs' places were edited as others went ahead of them (edits are throttled per message, so a job the
    # queue reaches quickly may start before its next edit: look at them all).
    def places_of(prompt: str) -> set[str]:
        return {
            place for v in versions(e2e, statuses[prompt]) if (place := embed_fields(v).get("Position in the queue"))
        }

    assert any(len(places_of(prompt)) > 1 for prompt in started[2:])
    e2e.finish()


async def test_cancel_by_button_and_command_and_the_refusals(e2e: E2E) -> None:
    fake = e2e.fake
    e2e.sim.config.complete_after = 3600.0
    await e2e.start_bot(MAX_RUNNING_GENERATIONS="1")
    running = await queue_command(e2e, "A kite over the dunes", fake.alice, fake.general)
    running_id = status_id(running)
    by_button = await queue_command(e2e, "A boat in the reeds", fake.alice, fake.general)
    by_command = await queue_command(e2e, "A fox under the moon", fake.alice, fake.general)
    by_moderator = await queue_command(e2e, "A bridge in the rain", fake.alice, fake.general)
    [button] = by_button.custom_ids
    reference = embed_fields(by_command)["Id"].strip("`")

    # Autocomplete offers the caller's waiting jobs by their #number.
    typing = await fake.send_autocomplete("cancel", {"generation_id": "fox"}, "generation_id", user=fake.alice)
    assert [choice["value"] for choice in (await typing.wait_response(3)).choices] == [reference]
    typing = await fake.send_autocomplete("cancel", {"generation_id": ""}, "generation_id", user=fake.bob)
    assert (await typing.wait_response(3)).choices == []
    # /status of a waiting job by its #number: waiting, with its place.
    assert_private(await e2e.ask("status", {"generation_id": reference}), WAITING, "Position in the queue\n2")
    # Bob may not cancel Alice's job, by the button nor by the command; the job still waits.
    press = await fake.send_component(by_button, button, user=fake.bob)
    assert_private(await e2e.private_answer(press), "another member")
    assert_private(await e2e.ask("cancel", {"generation_id": reference}, user=fake.bob), "another member")
    # Alice's press removes it: the status message says so and loses its button; nothing was sent.
    press = await fake.send_component(by_button, button, user=fake.alice)
    await press.wait_response(3)
    await e2e.wait_until(lambda: (fake.get_message(by_button.id) or by_button).custom_ids == [], "button removed")
    assert embed_fields(fake.get_message(by_button.id) or by_button)["State"] == "cancelled"
    assert_private(await e2e.ask("cancel", {"generation_id": reference}), "removed from the queue", "nothing was sent")
    # A button left on a message that missed its update (pressed as a client with an old copy would): the answer
    # says the job no longer waits, and the message is brought up to date.
    [stale] = by_command.custom_ids
    press = await fake.send_component(by_command, stale, user=fake.alice, enforce_client_rules=False)
    assert_private(await press.wait_followup(), "not waiting any more", "cancelled")
    assert (fake.get_message(by_command.id) or by_command).custom_ids == []
    moderated = embed_fields(by_moderator)["Id"].strip("`")
    assert_private(await e2e.ask("cancel", {"generation_id": moderated}, user=fake.moderator), "removed")
    # A running job can't be stopped at the API, and the answer says so.
    assert_private(await e2e.ask("cancel", {"generation_id": running_id}), "can't stop a video once it has started")
    assert e2e.creates() == 1
    e2e.finish()


async def test_a_kill_while_jobs_wait_loses_none_and_sends_each_once(e2e: E2E) -> None:
    fake = e2e.fake
    e2e.sim.config.complete_after = 3600.0
    await e2e.start_bot(MAX_RUNNING_GENERATIONS="1")
    prompts = [f"A crane over the harbour {n}" for n in range(4)]
    statuses = [await queue_command(e2e, prompt, fake.alice, fake.general) for prompt in prompts]
    assert e2e.creates() == 1

    def every_status_message_stored() -> bool:
        return e2e.db_query("SELECT COUNT(*) FROM generations WHERE status_message_id IS NULL") == [(0,)]

    # Killed while three wait (after each status message's id reached the database).
    await e2e.wait_until(every_status_message_stored, "the status messages' ids stored")
    await e2e.kill_bot()
    await e2e.start_bot()
    # The Cancel button of a message posted before the restart still reaches its job.
    [button] = statuses[3].custom_ids
    press = await fake.send_component(statuses[3], button, user=fake.alice)
    assert_private(await press.wait_followup(), "removed from the queue")

    def shown_cancelled() -> bool:
        message = fake.get_message(statuses[3].id)
        return message is not None and embed_fields(message)["State"] == "cancelled" and message.custom_ids == []

    await e2e.wait_until(shown_cancelled, "the status message shows the job cancelled, without its button")
    kept = prompts[:3]
    e2e.sim.config.complete_after = 0.5
    for prompt in kept:
        await wait_created(e2e, prompt)
        await e2e.wait_announcement(sim_id_of(e2e, prompt), timeout=30)
    await asyncio.sleep(1.0)
    assert e2e.creates() == 3  # each waiting job sent once, the cancelled one never
    for prompt, status in zip(kept, statuses, strict=False):
        assert len(e2e.announcements(sim_id_of(e2e, prompt))) == 1
        await wait_shows_started(e2e, status, sim_id_of(e2e, prompt))
    e2e.finish()


async def test_a_kill_while_a_queued_job_is_being_sent_never_resends_it_and_announces_each_once(e2e: E2E) -> None:
    fake = e2e.fake
    e2e.sim.config.complete_after = 3600.0
    await e2e.start_bot(MAX_RUNNING_GENERATIONS="1")
    prompts = [f"A heron by the canal {n}" for n in range(3)]
    for prompt in prompts:
        await queue_command(e2e, prompt, fake.alice, fake.general)
    # The next job leaves the queue; the API makes it but holds its answer, and the bot dies meanwhile.
    e2e.sim.config.slow_seconds = 5.0
    e2e.sim.state.create_faults.append("accept_then_slow")
    e2e.sim.config.complete_after = 0.5
    await wait_created(e2e, prompts[1])
    await e2e.kill_bot()
    await e2e.start_bot()
    for prompt in prompts:
        await wait_created(e2e, prompt)
        await e2e.wait_announcement(sim_id_of(e2e, prompt), timeout=30)
    await asyncio.sleep(1.0)
    assert e2e.creates() == 3  # the one cut off was found in the account's list, not sent again
    for prompt in prompts:
        assert len(e2e.announcements(sim_id_of(e2e, prompt))) == 1
    assert "Row 2 was being sent when its process stopped" in e2e.log_text()
    e2e.finish()
