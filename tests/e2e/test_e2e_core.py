"""The real bot process end to end: /generate, the announcement, /status, /extend, images; on both endpoints."""

from __future__ import annotations

import pytest

from bot.catalogue import label_of

from .harness import E2E, allowed_mentions_of, assert_private, embed_fields, status_id

RUNNING_STATES = {"pending", "queued", "processing", "generating", "dreaming"}


def video_url(e2e: E2E, generation_id: str) -> str:
    """Where the simulator serves a finished generation's video."""
    return f"{e2e.sim.base_url}/videos/{generation_id.split(':', 1)[0]}.mp4"


@pytest.mark.parametrize("model", ["legacy", "luma/ray-2"])
async def test_generate_announce_status_and_extend(e2e: E2E, model: str) -> None:
    fake = e2e.fake
    alice = fake.alice
    await e2e.start_bot(LUMA_MODEL=model)

    # /generate: acknowledged publicly within 3 s, then the status message with id, prompt, requester, state.
    prompt = "A jellyfish drifting through neon coral"
    handle = await e2e.command("generate", {"prompt": prompt}, channel=fake.videos)
    callback = await handle.wait_response(3)
    assert not callback.ephemeral and handle.ack_latency is not None and handle.ack_latency < 3
    status = (await e2e.outcome(handle)).message
    assert not status.ephemeral and status.channel_id == fake.videos.id
    generation_id = status_id(status)
    fields = embed_fields(status)
    assert prompt in status.text
    assert fields["Requested by"] == alice.mention
    assert fields["State"] in RUNNING_STATES
    if model != "legacy":
        assert generation_id.endswith(f":{model}")

    # A generation the API reports failed (started now, checked at the end).
    failing = await e2e.generate("A thunderstorm that never forms #fail", channel=fake.general)

    # The finished video: one message in the channel it was asked from, replying to the status message,
    # with the link, pinging the requester and nobody else.
    announcement = await e2e.wait_announcement(generation_id)
    assert announcement.channel_id == fake.videos.id and not announcement.is_dm
    assert video_url(e2e, generation_id) in announcement.content
    assert alice.mention in announcement.content
    assert announcement.payload["message_reference"]["message_id"] == str(status.id)
    mentions = allowed_mentions_of(e2e.announcement_request(announcement))
    assert mentions.get("parse") == []
    assert [int(user) for user in mentions.get("users", [])] == [alice.id]
    assert not mentions.get("roles") and not mentions.get("replied_user")

    # /status with the id: the state and the video link, privately.
    answer = await e2e.ask("status", {"generation_id": generation_id}, channel=fake.videos)
    assert_private(answer, "completed", video_url(e2e, generation_id), prompt)

    # /extend of the finished video: a new generation, announced, that remembers its parent.
    extension = await e2e.command(
        "extend", {"generation_id": generation_id, "prompt": "The jellyfish turns into a comet"}, channel=fake.videos
    )
    extension_status = await e2e.outcome(extension)
    assert not extension_status.private
    extension_id = extension_status.generation_id
    assert extension_id != generation_id
    assert embed_fields(extension_status.message)["Extends"] == f"`{generation_id}`"
    assert e2e.sim.state.generations[extension_id].parent_id == generation_id
    extension_announcement = await e2e.wait_announcement(extension_id)
    assert extension_announcement.payload["message_reference"]["message_id"] == str(extension_status.message.id)
    shown = await e2e.ask("status", {"generation_id": extension_id}, channel=fake.videos)
    assert_private(shown, "completed", f"`{generation_id}`", video_url(e2e, extension_id))

    # /status without an id: the caller's generations, newest first.
    listing = await e2e.ask("status", channel=fake.videos)
    assert_private(listing)
    assert listing.text.index(extension_id) < listing.text.index(generation_id)
    bobs = await e2e.ask("status", user=fake.bob)
    assert generation_id not in bobs.text and "no generations" in bobs.text.lower()

    # A generation of the other server is "not found" here, and its prompt never shows.
    secret_prompt = "A secret otter council meets at midnight"
    elsewhere = await e2e.generate(secret_prompt, user=alice, channel=fake.general2)
    await e2e.wait_announcement(elsewhere.generation_id)
    for command, options in (
        ("status", {"generation_id": elsewhere.generation_id}),
        ("extend", {"generation_id": elsewhere.generation_id, "prompt": "More otters arrive"}),
    ):
        refusal = await e2e.ask(command, options, channel=fake.general)
        assert_private(refusal, "no generation", "found in this server")
    assert not [m for m in fake.message_log if m.guild_id == fake.guild.id and "otter" in m.text.lower()]
    # Autocomplete offers this server's generations only, within Discord's 100-character labels.
    typing = await fake.send_autocomplete("status", {"generation_id": ""}, "generation_id", user=alice)
    choices = (await typing.wait_response(3)).choices
    assert {choice["value"] for choice in choices} == {generation_id, extension_id, failing.generation_id}
    assert all(len(choice["name"]) <= 100 for choice in choices)
    typing = await fake.send_autocomplete("extend", {"generation_id": "otter"}, "generation_id", user=alice)
    assert (await typing.wait_response(3)).choices == []
    # To build on: the caller's finished videos only, never the failed one.
    typing = await fake.send_autocomplete("extend", {"generation_id": ""}, "generation_id", user=alice)
    assert {choice["value"] for choice in (await typing.wait_response(3)).choices} == {generation_id, extension_id}

    # /extend of a video that is not finished yet is refused with the reason.
    e2e.sim.config.complete_after = 3600.0
    unfinished = await e2e.generate("A paper boat sails down a rain gutter", channel=fake.videos)
    refusal = await e2e.ask("extend", {"generation_id": unfinished.generation_id, "prompt": "The boat reaches the sea"})
    assert_private(refusal, "not finished yet", unfinished.generation_id)
    e2e.sim.config.complete_after = 1.0
    await e2e.wait_announcement(unfinished.generation_id)

    # Image to video: the attachment's URL reaches the API as the start frame.
    image = fake.make_attachment("start.png", content_type="image/png")
    from_image = await e2e.generate("The still picture comes alive", image=image, channel=fake.videos)
    body = e2e.create_bodies()[-1]
    if model == "legacy":
        assert body["image_url"] == image.url and "keyframes" not in body
    else:
        assert body["keyframes"]["frame0"] == {"type": "image", "url": image.url}
    await e2e.wait_announcement(from_image.generation_id)
    creates_before = e2e.creates()
    not_an_image = fake.make_attachment("notes.txt", b"just some text", content_type="text/plain")
    refusal = await e2e.ask("generate", {"prompt": "The notes come alive", "image": not_an_image})
    assert_private(refusal, "must be a PNG, JPEG or WebP image", "text/plain")

    # The last frame of a finished video as the start of a new one (the legacy endpoint gives last frames).
    if model == "legacy":
        sequel = await e2e.generate("The reef at dusk", last_frame_of=generation_id, channel=fake.videos)
        last_frame = f"{e2e.sim.base_url}/videos/{generation_id}-last.jpg"
        assert e2e.create_bodies()[-1]["image_url"] == last_frame
        await e2e.wait_announcement(sequel.generation_id)
        creates_before = e2e.creates()
    else:
        refusal = await e2e.ask("generate", {"prompt": "The reef at dusk", "last_frame_of": generation_id})
        assert_private(refusal, "no last frame", "/extend")

    if model != "legacy":
        # Options of the current models outside their choices, as a tampered client sends them.
        label = label_of(model)
        refusal = await e2e.ask("generate", {"prompt": "A long slow sunrise", "duration": 7})
        assert_private(refusal, f"{label} makes videos of 5 or 9 seconds, not 7")
        refusal = await e2e.ask("generate", {"prompt": "A long slow sunrise", "resolution": "8k"})
        assert_private(refusal, f"{label} makes videos at 540p, 720p, 1080p or 4k, not 8k")
    assert e2e.creates() == creates_before

    # Exactly once: every generation was announced once (by now the tracker ran many more cycles), and the
    # API saw one create per command.
    failure = await e2e.wait_announcement(failing.generation_id)
    assert failure.channel_id == fake.general.id and alice.mention in failure.content
    assert "could not be made" in failure.content and "The generation failed (simulated)." in failure.content
    assert "does not count toward your daily limit" in failure.content
    references = [
        generation_id,
        extension_id,
        elsewhere.generation_id,
        unfinished.generation_id,
        from_image.generation_id,
        failing.generation_id,
    ]
    if model == "legacy":
        references.append(sequel.generation_id)
    assert [len(e2e.announcements(reference)) for reference in references] == [1] * len(references)
    assert e2e.creates() == len(references) == e2e.sim.state.create_count
    e2e.finish()


async def test_a_timed_out_video_that_finishes_later_shows_in_status(e2e: E2E) -> None:
    """The requester hears the video is late; when it finishes after all, /status shows it (no second message)."""
    fake, sim = e2e.fake, e2e.sim
    sim.config.complete_after = 3600.0
    await e2e.start_bot(GENERATION_TIMEOUT_MINUTES="0.02")  # 1.2 s
    late = await e2e.generate("A tortoise climbs a mountain")
    told = await e2e.wait_announcement(late.generation_id)
    assert "late" in told.content and f"/status {late.generation_id}" in told.content
    sim.state.generations[late.generation_id].forced_state = "completed"
    answer = await e2e.ask("status", {"generation_id": late.generation_id})
    assert_private(answer, "completed", video_url(e2e, late.generation_id))
    listing = await e2e.ask("status")
    assert video_url(e2e, late.generation_id) in listing.text
    assert len(e2e.announcements(late.generation_id)) == 1 and fake.internal_errors == []
    e2e.finish()


async def test_secrets_stay_out_of_logs_and_messages_at_debug(e2e: E2E) -> None:
    """LOG_LEVEL=DEBUG through generate, status, extend, refusals, API and Discord errors: neither the bot token
    nor the API key in the log, in any request to Discord or in any message."""
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot(LOG_LEVEL="DEBUG")
    started = await e2e.generate("A heron fishing at dawn", channel=fake.videos)
    await e2e.wait_announcement(started.generation_id)
    await e2e.ask("status", {"generation_id": started.generation_id})
    await e2e.ask("status")
    extension = await e2e.generate_extension(started.generation_id, "The heron takes off")
    await e2e.wait_announcement(extension)

    # The API refusing the key, and an outage.
    for fault, phrase in ((401, "misconfigured"), (403, "out of credits")):
        sim.state.create_faults.append(fault)
        assert_private(await e2e.ask("generate", {"prompt": "A heron in the rain"}), phrase)
    assert "AIML_API_KEY" in e2e.bot.log()
    # Discord refusing the first answer: an unexpected error, logged with its traceback and an incident id.
    fake.fail_next(1, "/callback", 400, method="POST", body={"message": "Invalid Form Body", "code": 50035})
    apology = await e2e.ask("status")
    assert_private(apology, "went wrong", "error `")
    assert "Traceback" in e2e.bot.log()
    # The channel closed: the video goes by DM.
    fake.set_channel_fault(fake.videos, 403)
    closed = await e2e.generate("A heron hides in the reeds", channel=fake.videos)
    assert (await e2e.wait_announcement(closed.generation_id)).is_dm
    await e2e.ask("status", {"generation_id": "' OR 1=1 --"})

    log = e2e.log_text()
    assert "DEBUG" in log and "[redacted]" in log
    e2e.finish()


async def test_interaction_tokens_stay_out_of_the_debug_log(e2e: E2E) -> None:
    await e2e.start_bot(LOG_LEVEL="DEBUG")
    await e2e.ask("status")
    log = e2e.log_text()
    leaked = [handle.id for handle in e2e.fake.interactions.values() if handle.token in log]
    assert leaked == []
