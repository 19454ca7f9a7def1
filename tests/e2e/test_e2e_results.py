"""The finished result on the real process: its card and buttons (also after a kill -9 and a restart), who may press
them, /show, and private mode with DMs open and closed, and Share."""

from __future__ import annotations

import asyncio

import pytest

from .fake_discord import FakeMessage, InteractionHandle, MessageKind
from .harness import E2E, assert_private, embed_fields, status_id

MODAL = 9
SHARED = "Shared"


def buttons(message: FakeMessage) -> dict[str, str]:
    """The message's buttons, label → custom id, in order."""
    found: dict[str, str] = {}
    for row in message.components:
        for component in row.get("components", []):
            if component.get("type") == 2:
                found[str(component.get("label"))] = str(component.get("custom_id"))
    return found


def latest(e2e: E2E, message: FakeMessage) -> FakeMessage:
    return e2e.fake.get_message(message.id) or message


def video_link(message: FakeMessage) -> str:
    [link] = [line for line in message.content.splitlines() if "/videos/" in line]
    return link


def row_of(e2e: E2E, generation_id: str) -> int:
    [(row,)] = e2e.db_query("SELECT id FROM generations WHERE api_id = ?", [generation_id])
    return int(row)


async def started_by(e2e: E2E, handle: InteractionHandle) -> str:
    """The generation a press or a form started: its public status message's id."""
    outcome = await e2e.outcome(handle)
    assert not outcome.private, f"the press was refused: {outcome.text!r}"
    return outcome.generation_id


async def test_a_results_buttons_work_after_a_kill_and_restart(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    sim.config.link_lifetime_seconds = 3600  # the provider's links expire, as pre-signed links do
    await e2e.start_bot()
    prompt = "A lantern drifts over a still lake"
    status = await e2e.generate(prompt)
    announcement = await e2e.wait_announcement(status.generation_id)

    # The announcement: the requester pinged, a reply to the status message, the link in its text, and its card.
    assert announcement.payload["message_reference"]["message_id"] == str(status.message.id)
    assert fake.alice.mention in announcement.content and "/videos/" in announcement.content
    assert announcement.pinged_user_ids == (fake.alice.id,)
    card = embed_fields(announcement)
    assert announcement.embeds[0]["description"] == prompt
    assert card["Requested by"] == fake.alice.mention and card["Aspect ratio"] == "16:9"
    assert card["Model"] == "Dream Machine" and card["Id"] == f"`{status.generation_id[:8]}`"
    assert card["Time taken"].endswith(" s")
    assert announcement.embeds[0]["thumbnail"]["url"].endswith(".jpg")
    row = row_of(e2e, status.generation_id)
    assert buttons(announcement) == {
        "Extend": f"result:extend:{row}",
        "Re-roll": f"result:reroll:{row}",
        "Refresh": f"result:refresh:{row}",
    }

    # Extend opens a form asking what happens next; Alice is still typing when the bot is killed.
    opened = await fake.send_component(announcement, buttons(announcement)["Extend"], user=fake.alice)
    form = await opened.wait_response(3)
    assert form.type == MODAL and form.data is not None
    assert form.data["custom_id"] == f"result:extend-prompt:{row}" and form.data["title"] == "Extend this video"
    with pytest.raises(ValueError, match="takes 3 to 2048 characters"):
        await fake.submit_form(opened, {"prompt": "no"})  # the form itself asks for a real prompt

    await e2e.kill_bot()
    await e2e.start_bot()

    # Refresh, pressed on a message the first process posted: the message gets a fresh link, the rest stays.
    old_link = video_link(announcement)
    sim.config.link_lifetime_seconds = 7200
    press = await fake.send_component(announcement, buttons(announcement)["Refresh"], user=fake.alice)
    await press.wait_response(3)
    await e2e.wait_until(lambda: latest(e2e, announcement).content != announcement.content, "the fresh link")
    refreshed = latest(e2e, announcement)
    assert old_link not in refreshed.content and video_link(refreshed) != old_link
    assert refreshed.content.replace(video_link(refreshed), old_link) == announcement.content
    assert buttons(refreshed) == buttons(announcement) and embed_fields(refreshed)["Id"] == card["Id"]
    assert e2e.db_query("SELECT video_url FROM generations WHERE id = ?", [row]) == [(video_link(refreshed),)]

    # Re-roll, by another member (the server lets members share): a new video with the same prompt and options.
    press = await fake.send_component(announcement, buttons(announcement)["Re-roll"], user=fake.bob)
    rerolled = await started_by(e2e, press)
    assert rerolled != status.generation_id
    again = await e2e.wait_announcement(rerolled)
    assert again.pinged_user_ids == (fake.bob.id,)  # the new video is Bob's, and pings him
    first, second = e2e.create_bodies()[:2]
    assert first == second and first["user_prompt"] == prompt

    # Extend, on the form Alice opened before the kill: the video is continued as /extend would.
    submitted = await fake.submit_form(opened, {"prompt": "The lantern lands on the far shore"})
    assert submitted.payload["message"]["id"] == str(announcement.id)
    extension = await started_by(e2e, submitted)
    assert sim.state.generations[extension].parent_id == status.generation_id
    extended = await e2e.wait_announcement(extension)
    assert embed_fields(extended)["Extends"] == f"`{status.generation_id}`"

    await asyncio.sleep(1.0)  # a second announcement would come within a few tracker cycles
    for generation_id in (status.generation_id, rerolled, extension):
        assert len(e2e.announcements(generation_id)) == 1
    assert e2e.creates() == 3
    e2e.finish()


async def test_presses_follow_the_servers_rules_and_limits(e2e: E2E) -> None:
    fake = e2e.fake
    await e2e.start_bot()
    status = await e2e.generate("A paper boat in the rain")
    announcement = await e2e.wait_announcement(status.generation_id)
    assert_private(await e2e.ask("limits sharing", {"allowed": False}, user=fake.moderator), "updated")

    # With sharing off, another member's presses are refused privately, with the reason; nothing is sent.
    for label in ("Re-roll", "Extend", "Refresh"):
        press = await fake.send_component(announcement, buttons(announcement)[label], user=fake.bob)
        assert_private(await e2e.private_answer(press), "only their own", fake.alice.mention)
    assert e2e.creates() == 1
    # A moderator may press any video's buttons.
    press = await fake.send_component(announcement, buttons(announcement)["Re-roll"], user=fake.moderator)
    await e2e.wait_announcement(await started_by(e2e, press))
    assert e2e.creates() == 2

    # A failed video offers "Try again", which starts a new one like the command.
    failed = await e2e.generate("A glass bird that shatters #fail")
    failure = await e2e.wait_announcement(failed.generation_id)
    assert list(buttons(failure)) == ["Try again"] and "could not be made" in failure.content
    press = await fake.send_component(failure, buttons(failure)["Try again"], user=fake.alice)
    await started_by(e2e, press)
    assert e2e.creates() == 4

    # Every limit applies to a press exactly as to the command.
    assert_private(await e2e.ask("limits set", {"user_daily": 1}, user=fake.moderator), "updated")
    press = await fake.send_component(announcement, buttons(announcement)["Re-roll"], user=fake.alice)
    assert_private(await e2e.private_answer(press), "daily limit")
    assert_private(await e2e.ask("generate", {"prompt": "One more boat"}), "daily limit")
    press = await fake.send_component(announcement, buttons(announcement)["Extend"], user=fake.alice)
    await press.wait_response(3)
    submitted = await fake.submit_form(press, {"prompt": "The boat sails on"})
    assert_private(await e2e.private_answer(submitted), "daily limit")
    assert e2e.creates() == 4
    e2e.finish()


async def test_show_posts_a_finished_video_again_with_its_buttons_pinging_nobody(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    status = await e2e.generate("A heron lifts off the marsh")
    await e2e.wait_announcement(status.generation_id)

    handle = await e2e.command("show", {"generation_id": status.generation_id}, user=fake.bob)
    shown = (await e2e.outcome(handle)).message
    assert not shown.ephemeral and shown.channel_id == fake.general.id
    assert fake.alice.mention in shown.content and fake.bob.mention in shown.content and "/videos/" in shown.content
    assert latest(e2e, shown).pinged_user_ids == ()
    assert list(buttons(shown)) == ["Extend", "Re-roll", "Refresh"]
    assert embed_fields(shown)["Requested by"] == fake.alice.mention
    # Not an announcement: the restart's search for an earlier one would never take it for one.
    assert f"`{status.generation_id}`" not in shown.content
    # Its buttons work like the announcement's.
    press = await fake.send_component(shown, buttons(shown)["Re-roll"], user=fake.bob)
    await started_by(e2e, press)

    sim.config.complete_after = 3600.0
    running = await e2e.generate("A heron still in flight")
    assert_private(await e2e.ask("show", {"generation_id": running.generation_id}), "not a finished video")
    assert_private(
        await e2e.ask("show", {"generation_id": status.generation_id}, channel=fake.general2), "No generation"
    )
    e2e.finish()


async def test_private_mode_delivers_by_dm_and_share_posts_it_crediting_the_requester(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    prompt = "A secret garden at dawn"
    handle = await e2e.command("generate", {"prompt": prompt, "private": True})
    answer = await e2e.private_answer(handle)  # the status, shown to the requester only
    generation_id = status_id(answer)
    dm = await e2e.wait_announcement(generation_id)
    assert dm.kind == MessageKind.DM and dm.channel_id == (fake.dm_channel_of(fake.alice) or dm).id
    assert "/videos/" in dm.content and list(buttons(dm)) == ["Share"]
    assert embed_fields(dm)["Requested by"] == fake.alice.mention
    # Nothing of it in the channel: no public status message, no announcement.
    public = [m for m in fake.messages_in(fake.general) if not m.ephemeral and prompt in m.text]
    assert public == [] and e2e.announcements(generation_id) == [dm]

    # Share posts it in the channel it was asked from, crediting Alice and pinging nobody, with its buttons.
    press = await fake.send_component(dm, buttons(dm)["Share"], user=fake.alice)
    assert_private(await press.wait_followup(), f"Shared in {fake.general.mention}")
    [post] = [m for m in fake.messages_in(fake.general) if not m.ephemeral and "shared a video" in m.content]
    assert fake.alice.mention in post.content and "/videos/" in post.content
    assert post.pinged_user_ids == ()
    assert list(buttons(post)) == ["Extend", "Re-roll", "Refresh"]
    assert list(buttons(latest(e2e, dm))) == [SHARED]  # greyed out, so it is not posted twice

    # Exactly once by DM too: killed while the DM is on its way, the restarted bot finds it instead of resending.
    sim.config.complete_after = 3600.0
    handle = await e2e.command("generate", {"prompt": "A second secret", "private": True})
    second = status_id(await e2e.private_answer(handle))
    dm_channel = fake.dm_channel_of(fake.alice)
    assert dm_channel is not None
    fake.delay_next(1, f"/channels/{dm_channel.id}/messages", 60.0, method="POST")
    sim.state.generations[second].forced_state = "completed"
    await e2e.wait_announcement(second)
    await e2e.wait_until(lambda: fake.held_answers == 1, "the DM's answer being held back")
    await e2e.kill_bot()
    fake.nonce_window = 0.0  # back after Discord's few minutes of nonce de-duplication
    await e2e.start_bot()
    await e2e.wait_until(
        lambda: e2e.db_query("SELECT delivery FROM generations WHERE api_id = ?", [second]) == [("dm",)],
        "the restarted bot finding the DM",
    )
    assert len(e2e.announcements(second)) == 1
    e2e.finish()


async def test_private_mode_with_dms_closed_and_turned_off(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    fake.close_dms(fake.bob)

    # While the command's token lives, Bob is shown the video privately and told where to find it later.
    handle = await e2e.command("generate", {"prompt": "A quiet owl", "private": True}, user=fake.bob)
    generation_id = status_id(await e2e.private_answer(handle))
    told = await handle.wait_followup(lambda m: "/videos/" in m.content, timeout=10)
    assert_private(told, "DMs are closed", f"/status {generation_id}", "/history")
    assert list(buttons(told)) == ["Share"]
    assert e2e.announcements(generation_id) == [] and fake.dm_messages_to(fake.bob) == []
    await e2e.wait_until(
        lambda: e2e.db_query("SELECT delivery FROM generations WHERE api_id = ?", [generation_id]) == [("ephemeral",)],
        "the delivery recorded",
    )

    # After the token has expired, the log says so; the video is still there for /status.
    sim.config.complete_after = 3600.0
    handle = await e2e.command("generate", {"prompt": "A second quiet owl", "private": True}, user=fake.bob)
    late = status_id(await e2e.private_answer(handle))
    handle.expire()
    sim.state.generations[late].forced_state = "completed"
    await e2e.wait_until(lambda: "its command's answer has expired" in e2e.log_text(), "the log saying so")
    assert e2e.announcements(late) == [] and not any("/videos/" in m.content for m in handle.followups)
    assert_private(await e2e.ask("status", {"generation_id": late}, user=fake.bob), "completed", "/videos/")

    # Moderators can turn private mode off: a private request is then refused, and nothing is sent.
    assert_private(await e2e.ask("limits private", {"allowed": False}, user=fake.moderator), "Private mode")
    creates = e2e.creates()
    refused = await e2e.ask("generate", {"prompt": "A third owl", "private": True})
    assert_private(refused, "turned private mode off")
    assert e2e.creates() == creates
    e2e.finish()
