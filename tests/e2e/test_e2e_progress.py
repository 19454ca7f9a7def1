"""Live progress and kept videos on the real process: the status message follows its job (also once the command's
interaction token is dead), a deleted one is left alone, a 429 is waited out; a server that keeps videos gets the MP4
when it fits, the link otherwise, and never twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.simulator import mp4_body

from .fake_discord import API_PREFIX, FakeMessage, FakeOverwrite, MessageKind, Perm, RateLimits
from .fake_discord.ratelimits import EDIT_MESSAGE
from .harness import E2E, STEP, embed_fields, running_e2e
from .worlds import studio_channels


async def wait_version(
    e2e: E2E, status: FakeMessage, what: str, check: Callable[[dict[str, str]], bool], within: float = STEP
) -> FakeMessage:
    """The first version of the status message (made already, or from now on) whose embed fields match."""
    for message in e2e.fake.message_log:
        if message.id == status.id and check(embed_fields(message)):
            return message
    try:
        return await e2e.fake.wait_for_message(lambda m: m.id == status.id and check(embed_fields(m)), within)
    except TimeoutError:
        latest = e2e.fake.get_message(status.id)
        raise AssertionError(f"the status message never showed {what}; it shows {latest and latest.text!r}") from None


def ending_recorded(e2e: E2E, generation_id: str) -> bool:
    """The bot is done with this job's status message: its ending is shown (or can never be)."""
    query = "SELECT status_shown_at IS NOT NULL FROM generations WHERE api_id = ?"
    return e2e.db_query(query, (generation_id,)) == [(1,)]


def edits_of(e2e: E2E, message_id: int) -> list[int]:
    """The answers Discord gave to the bot's channel edits of one message, in order."""
    return [
        request.status
        for request in e2e.fake.requests
        if request.method == "PATCH"
        and request.path.endswith(f"/messages/{message_id}")
        and "webhooks" not in request.path
    ]


async def test_the_status_message_follows_its_job_to_the_end_after_the_interaction_token_died(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    fake.token_lifetime = 2.0  # Discord refuses the command's token after 2 s here (15 minutes in life)
    sim.config.processing_after, sim.config.complete_after = 0.3, 5.0
    await e2e.start_bot()
    started = await e2e.generate("a lighthouse in a storm")
    status, generation_id = started.message, started.generation_id

    dreaming = await wait_version(e2e, status, "the job dreaming", lambda f: "Dreaming" in f.get("Progress", ""))
    assert "expects it ready <t:" in dreaming.text, "the video service's wait estimate is not shown"
    finished = await wait_version(e2e, status, "the finished job", lambda f: f.get("State") == "completed")

    assert finished.time - started.handle.dispatched_at > fake.token_lifetime
    assert finished.kind is MessageKind.MESSAGE_EDIT, "edited through the interaction, which no longer works"
    fields = embed_fields(finished)
    assert fields["Progress"].startswith("Finished in ") and fields["Video"].endswith(".mp4")
    assert all(status == 200 for status in edits_of(e2e, status.id))
    # Discord refuses the dead token itself, as it would have refused the bot.
    url = f"{fake.base_url}{API_PREFIX}/webhooks/{fake.application_id}/{started.handle.token}/messages/@original"
    async with aiohttp.ClientSession() as http, http.patch(url, json={"content": "late"}) as refused:
        assert refused.status == 401

    announcement = await e2e.wait_announcement(generation_id)
    assert announcement.payload["message_reference"]["message_id"] == str(status.id)
    assert [int(user["id"]) for user in announcement.payload["mentions"]] == [fake.alice.id]
    assert fields["Video"] in announcement.content
    e2e.finish()


async def test_a_deleted_status_message_is_tried_once_and_then_left_alone(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    sim.config.processing_after, sim.config.complete_after = 0.3, 2.0
    await e2e.start_bot()
    started = await e2e.generate("a snow globe")
    # Someone deletes the status message while the job runs.
    url = f"{fake.base_url}{API_PREFIX}/channels/{started.message.channel_id}/messages/{started.message.id}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bot {fake.token}"}) as http,
        http.delete(url) as deleted,
    ):
        assert deleted.status == 204

    await e2e.wait_announcement(started.generation_id)
    await e2e.wait_until(lambda: ending_recorded(e2e, started.generation_id), "the gone message's ending recorded")
    # Another job runs to its end meanwhile: any retry of the gone message would have come by then.
    later = await e2e.generate("a second snow globe")
    await wait_version(e2e, later.message, "the second job finished", lambda f: f.get("State") == "completed")

    assert edits_of(e2e, started.message.id) == [404]
    e2e.finish()


async def test_a_429_on_an_edit_is_waited_out(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    sim.config.processing_after, sim.config.complete_after = 0.3, 3.0
    await e2e.start_bot()
    started = await e2e.generate("a paper lantern")
    fake.rate_limit_next(1, f"/messages/{started.message.id}", retry_after=1.5, method="PATCH")
    await wait_version(e2e, started.message, "the finished job", lambda f: f.get("State") == "completed")

    edits = [
        request
        for request in fake.requests
        if request.method == "PATCH" and request.path.endswith(f"/messages/{started.message.id}")
    ]
    assert edits[0].status == 429
    assert edits[1].time - edits[0].time >= 1.5, "the next edit did not wait for the time Discord asked"
    e2e.finish()


async def test_a_server_that_keeps_videos_gets_the_file_when_it_fits_and_the_link_otherwise(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    sim.config.complete_after = 1.0
    await e2e.start_bot()
    linked = await e2e.generate("a balloon, before the setting")
    before = await e2e.wait_announcement(linked.generation_id)
    assert before.attachments == []

    answer = await e2e.ask("limits keep_videos", {"upload": True}, user=fake.moderator)
    assert "uploaded" in answer.text
    sim.config.video_bytes = 200_000
    kept = await e2e.generate("a paper boat")
    announcement = await e2e.wait_announcement(kept.generation_id)
    [attachment] = announcement.attachments
    assert fake.attachment_bytes(attachment["id"]) == mp4_body(200_000)
    assert attachment["filename"].endswith(".mp4") and attachment["content_type"] == "video/mp4"
    video_url = f"{sim.base_url}/videos/{kept.generation_id}.mp4"
    assert f"<{video_url}>" in announcement.content, "the provider's link is gone, or shows a second player"
    assert announcement.payload["message_reference"]["message_id"] == str(kept.message.id)

    # Past what this server may upload (its interaction said 256 KiB): the link.
    fake.upload_limit = 256 * 1024
    sim.config.video_bytes = 300_000
    too_big = await e2e.generate("a paper plane")
    linked_again = await e2e.wait_announcement(too_big.generation_id)
    assert (
        linked_again.attachments == [] and f"{sim.base_url}/videos/{too_big.generation_id}.mp4" in linked_again.content
    )

    # Discord refuses the file after all (the limit dropped since the command): posted again, with the link only.
    fake.upload_limit = 10 * 1024 * 1024
    sim.config.video_bytes = 200_000
    refused = await e2e.generate("a paper crane")
    fake.upload_limit = 100_000
    announced = await e2e.wait_announcement(refused.generation_id)
    assert announced.attachments == []
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages") and r.files]
    assert [r.status for r in posts] == [200, 413]

    # Without Attach Files in the channel: the link.
    fake.upload_limit = 10 * 1024 * 1024
    fake.general.overwrites.append(FakeOverwrite(fake.bot_user.id, type=1, deny=Perm.ATTACH_FILES))
    no_files = await e2e.generate("a paper fan")
    without = await e2e.wait_announcement(no_files.generation_id)
    assert without.attachments == []
    assert without.payload["message_reference"]["message_id"] == str(no_files.message.id)  # still the reply
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages") and r.files]
    assert [r.status for r in posts] == [200, 413, 403]

    for started in (linked, kept, too_big, refused, no_files):
        assert len(e2e.announcements(started.generation_id)) == 1
    e2e.finish()


async def test_an_upload_whose_answer_was_lost_is_not_sent_again_after_a_crash(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    sim.config.complete_after = 1.0
    await e2e.start_bot()
    await e2e.ask("limits keep_videos", {"upload": True}, user=fake.moderator)
    started = await e2e.generate("a clockwork bird")
    # Discord makes the message but its answer never reaches the bot, which dies waiting.
    fake.delay_next(1, f"/channels/{started.message.channel_id}/messages", 60.0, method="POST")
    await e2e.wait_until(lambda: fake.held_answers == 1, "the upload reaching Discord")
    await e2e.restart_bot()
    query = "SELECT announced_at IS NOT NULL FROM generations WHERE api_id = ?"
    await e2e.wait_until(
        lambda: e2e.db_query(query, (started.generation_id,)) == [(1,)], "the announcement recorded after the restart"
    )

    [announcement] = e2e.announcements(started.generation_id)
    assert len(announcement.attachments) == 1
    uploads = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages") and r.files]
    assert len(uploads) == 1
    e2e.finish()


async def test_two_hundred_running_jobs_keep_their_status_messages_current_within_discords_rate_limits(
    tmp_path: Path,
) -> None:
    limits = RateLimits()
    async with running_e2e(tmp_path, world=studio_channels(20), rate_limits=limits) as e2e:
        e2e.sim.config.processing_after, e2e.sim.config.complete_after = 1.0, 12.0
        await e2e.start_bot()
        channels = [channel for channel in e2e.fake.guild.channels if channel.name.startswith("studio-")]
        handles = await asyncio.gather(
            *(
                e2e.command("generate", {"prompt": f"scene {n}"}, channel=channels[n % len(channels)])
                for n in range(200)
            )
        )
        outcomes = await asyncio.gather(*(e2e.outcome(handle, timeout=60) for handle in handles))
        assert not any(outcome.private for outcome in outcomes)
        statuses = [outcome.message for outcome in outcomes]

        def all_finished() -> bool:
            return all(
                embed_fields(e2e.fake.get_message(status.id) or status).get("State") == "completed"
                for status in statuses
            )

        await e2e.wait_until(all_finished, "every status message showing its finished video", timeout=120)

        # No edit refused, and the bot as a whole never went past Discord's global limit.
        refused = Counter(
            hit.route for hit in limits.hits if not hit.allowed and (hit.is_global or hit.route == EDIT_MESSAGE)
        )
        assert refused == {}, f"Discord refused these requests: {refused}"
        edits = Counter(
            request.path.rsplit("/", 1)[1] for request in e2e.fake.requests if request.route == EDIT_MESSAGE
        )
        # Each visible state at most once (waiting, dreaming, finished); most jobs moved on before their turn.
        assert max(edits.values()) <= 3
        assert sum(edits.values()) < 3 * len(statuses)
        for outcome in outcomes:
            assert len(e2e.announcements(outcome.generation_id)) == 1
        e2e.finish()
