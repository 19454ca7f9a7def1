"""The bot process under faults: crashes and restarts, an unreliable video API, Discord refusing messages,
SIGTERM, and a SIGKILL in the middle of a burst of writes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import pytest

from .harness import ANNOUNCEMENT_KINDS, E2E, LOG_PROBLEMS, assert_private, embed_fields, status_id


def video_url(e2e: E2E, generation_id: str) -> str:
    return f"{e2e.sim.base_url}/videos/{generation_id.split(':', 1)[0]}.mp4"


def delivery_of(e2e: E2E, generation_id: str) -> str | None:
    rows = e2e.db_query(
        "SELECT delivery FROM generations WHERE api_id = ? AND announced_at IS NOT NULL", [generation_id]
    )
    return rows[0][0] if rows else None


def messages_saying(e2e: E2E, text: str) -> list[str]:
    """Announcements (channel or DM, not interaction answers) whose content contains `text`."""
    return [m.content for m in e2e.fake.message_log if m.kind in ANNOUNCEMENT_KINDS and text in m.content]


# ------------------------------------------------------------------------------------------------------------
# Restarts: exactly once
# ------------------------------------------------------------------------------------------------------------


async def test_sigkill_at_any_point_announces_every_generation_exactly_once(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    # Nothing finishes while the first process runs, so that its death is what the restart has to mend.
    sim.config.complete_after = 3600.0
    sim.config.slow_seconds = 30.0

    # (b) The create returned and the public status was shown.
    shown = await e2e.generate("A lighthouse keeps watch in a storm", channel=fake.general)
    await e2e.wait_until(
        lambda: (
            e2e.db_query("SELECT status_message_id FROM generations WHERE api_id = ?", [shown.generation_id])
            == [(shown.message.id,)]
        ),
        "the status message being remembered",
    )
    # (a) A create in flight: the API accepted it, its answer has not come back.
    sim.state.create_faults.append("accept_then_slow")
    in_flight = await e2e.command("generate", {"prompt": "A comet crosses the desert sky"}, channel=fake.general)
    await in_flight.wait_response(3)
    await e2e.wait_until(lambda: sim.state.create_count == 2, "the API accepting the second create")
    await e2e.kill_bot()

    sim.config.complete_after = 1.0
    await e2e.start_bot()
    announced = await e2e.wait_announcement(shown.generation_id)
    assert announced.channel_id == fake.general.id and video_url(e2e, shown.generation_id) in announced.content
    assert announced.payload["message_reference"]["message_id"] == str(shown.message.id)
    # The create whose answer was cut off is looked for, found in the account's list and delivered, not resent.
    notice = await fake.wait_for_message(
        lambda m: m.kind in ANNOUNCEMENT_KINDS and "A comet crosses the desert sky" in m.content, 10
    )
    assert fake.alice.mention in notice.content and "checking with the video service" in notice.content
    assert "not sent again" in notice.content
    [comet] = [g.id for g in sim.state.generations.values() if g.prompt == "A comet crosses the desert sky"]
    found = await e2e.wait_announcement(comet)
    assert fake.alice.mention in found.content and video_url(e2e, comet) in found.content

    # (c) Killed while the announcement is being posted: Discord stored it, the answer never came back.
    fake.delay_next(1, f"/channels/{fake.videos.id}/messages", 60.0, method="POST")
    posting = await e2e.generate("A fox curls up in fresh snow", channel=fake.videos)
    await e2e.wait_announcement(posting.generation_id)
    await e2e.wait_until(lambda: fake.held_answers == 1, "the announcement's answer being held back")
    await e2e.kill_bot()
    # The bot comes back after Discord's nonce window: its own look at the channel must prevent a repeat.
    fake.nonce_window = 0.0
    restarted_at = len(fake.requests)
    await e2e.start_bot()
    # The restarted bot finds the message in the channel instead of posting it again.
    await e2e.wait_until(
        lambda: delivery_of(e2e, posting.generation_id) == "channel", "the restarted bot noting the announcement"
    )
    looked = [r for r in fake.requests[restarted_at:] if r.method == "GET" and r.path.endswith("/messages")]
    assert any(r.path == f"/channels/{fake.videos.id}/messages" for r in looked)
    later = await e2e.generate("A kite dances above the dunes", channel=fake.videos)
    await e2e.wait_announcement(later.generation_id)

    for reference in (shown.generation_id, posting.generation_id, later.generation_id):
        assert len(e2e.announcements(reference)) == 1, reference
    assert len(messages_saying(e2e, "A comet crosses the desert sky")) == 2  # the notice, then the video
    assert len(e2e.announcements(comet)) == 1
    # One create per command, across three processes.
    assert sim.state.create_count == 4 and e2e.creates() == 4
    e2e.finish()


# ------------------------------------------------------------------------------------------------------------
# The video API misbehaving
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["legacy", "luma/ray-2"])
async def test_unreliable_lookups_still_announce_every_video_once(e2e: E2E, model: str) -> None:
    e2e.sim.config.lookup_fault_rate = 0.2
    e2e.sim.config.slow_seconds = 1.0
    # The random faults may all be slow or malformed answers in a short run: these three fail for sure.
    e2e.sim.state.lookup_faults.extend([502, "reset", 429])
    await e2e.start_bot(LUMA_MODEL=model)
    handles = [
        await e2e.command("generate", {"prompt": f"Lantern number {n} floats over a lake"}, user=e2e.fake.bob)
        for n in range(10)
    ]
    outcomes = await asyncio.gather(*(e2e.outcome(handle) for handle in handles))
    ids = [outcome.generation_id for outcome in outcomes]
    assert len(set(ids)) == 10
    for generation_id in ids:
        await e2e.wait_announcement(generation_id, timeout=30)
    await e2e.wait_until(
        lambda: all(delivery_of(e2e, generation_id) == "channel" for generation_id in ids), "every row announced"
    )
    assert [len(e2e.announcements(generation_id)) for generation_id in ids] == [1] * 10
    assert e2e.creates() == 10 == e2e.sim.state.create_count
    lookups = [r for r in e2e.sim.state.requests if r.method == "GET" and "generation" in r.path]
    assert not e2e.sim.state.lookup_faults, "the queued look-up faults were not all met"
    assert sum(r.status != 200 for r in lookups) >= 3
    e2e.finish()


CREATE_FAULTS: list[tuple[int | str, tuple[str, ...]]] = [
    (401, ("bot is misconfigured",)),
    (403, ("out of credits",)),
    (400, ("refused this request", "Bad Request")),
]


async def test_create_refusals_and_outages_are_explained_privately(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    for number, (fault, phrases) in enumerate(CREATE_FAULTS):
        sim.state.create_faults.append(fault)
        before = e2e.creates()
        handle = await e2e.command("generate", {"prompt": f"Fault case {number}: a red balloon drifts away"})
        answer = await e2e.private_answer(handle)
        assert_private(answer, *phrases)
        assert "went wrong" not in answer.text
        # Sent once, never resent, and the public "thinking..." placeholder is gone.
        assert e2e.creates() == before + 1, fault
        original = fake.get_message(handle.original_message_id or 0)
        assert original is None or original.deleted or original.ephemeral

    # A 429 proves the create was refused: it is sent again, and the video is made once.
    sim.state.create_faults.append(429)
    before = e2e.creates()
    retried = await e2e.generate("A green balloon rises after a wait")
    assert e2e.creates() == before + 2
    await e2e.wait_announcement(retried.generation_id)

    # The legacy endpoint retired: the member is told plainly, the operator what to set.
    sim.config.legacy_enabled = False
    answer = await e2e.ask("generate", {"prompt": "A blue balloon in an empty sky"})
    assert_private(answer, "Dream Machine is unavailable")
    assert "LUMA" not in answer.text and "Remove it from LUMA_MODELS" in e2e.bot.log()
    sim.state.balance = 600_000.0  # enough for one more video (read by the bot when it starts)
    await e2e.restart_bot(LUMA_MODEL="luma/ray-2")
    current = await e2e.generate("A blue balloon in an empty sky")
    assert current.generation_id.endswith(":luma/ray-2")
    await e2e.wait_announcement(current.generation_id)
    # The balance can't cover another: refused before anything is sent.
    before = e2e.creates()
    answer = await e2e.ask("generate", {"prompt": "A yellow balloon, one too many"})
    assert_private(answer, "paused", "can't cover a video", "Nothing was sent")
    assert "balance" not in answer.text and "can't cover a video (" in e2e.bot.log()
    assert e2e.creates() == before

    # Nothing about the failed commands was announced later, and nothing of theirs was created twice.
    assert not messages_saying(e2e, "Fault case") and not messages_saying(e2e, "one too many")
    # Accepted by the API: the retried one and the ray-2 one.
    assert sim.state.create_count == 2
    e2e.finish()


# ------------------------------------------------------------------------------------------------------------
# Discord refusing messages
# ------------------------------------------------------------------------------------------------------------


async def test_closed_channels_fall_back_to_dms_and_rate_limits_are_waited_out(e2e: E2E) -> None:
    fake = e2e.fake
    alice = fake.alice
    await e2e.start_bot()

    for code in (403, 404):
        fake.set_channel_fault(fake.videos, code)
        started = await e2e.generate(f"An owl glides through fog ({code})", channel=fake.videos)
        generation_id = started.generation_id
        direct = await e2e.wait_announcement(generation_id)
        assert direct.is_dm and direct.recipient_id == alice.id
        assert video_url(e2e, generation_id) in direct.content and fake.videos.mention in direct.content
        shown = await e2e.ask("status", {"generation_id": generation_id})
        assert_private(shown, "completed", video_url(e2e, generation_id))

    # Channel and DMs closed: nothing crashes, /status shows the video as undeliverable.
    fake.close_dms(alice)
    lost = await e2e.generate("An owl lands where nobody can see", channel=fake.videos)
    await e2e.wait_until(lambda: delivery_of(e2e, lost.generation_id) == "undeliverable", "the row undeliverable")
    shown = await e2e.ask("status", {"generation_id": lost.generation_id})
    assert_private(shown, "completed", video_url(e2e, lost.generation_id), "could not be posted")
    assert e2e.bot.running and e2e.announcements(lost.generation_id) == []

    # Later generations are announced again once the channel opens.
    fake.set_channel_fault(fake.videos, None)
    back = await e2e.generate("An owl returns to the barn", channel=fake.videos)
    announcement = await e2e.wait_announcement(back.generation_id)
    assert announcement.channel_id == fake.videos.id

    # The gateway drops and resumes: commands keep working.
    await fake.disconnect_gateway(4000)
    await e2e.wait_until(lambda: fake.connected, "the gateway resumed")
    resumed = await e2e.generate("An owl after the storm", channel=fake.videos)
    await e2e.wait_announcement(resumed.generation_id)

    # A 429 (with Via) on the announcement is waited out; the message arrives once.
    route = f"/channels/{fake.general.id}/messages"
    fake.rate_limit_next(1, route, retry_after=0.5, method="POST")
    limited = await e2e.generate("An owl waits its turn", channel=fake.general)
    await e2e.wait_announcement(limited.generation_id)
    assert [r.status for r in fake.requests_to(route, "POST") if r.path == route] == [429, 200]

    for generation_id in (back.generation_id, limited.generation_id):
        assert len(e2e.announcements(generation_id)) == 1
    e2e.finish()


# ------------------------------------------------------------------------------------------------------------
# Shutdown and storage
# ------------------------------------------------------------------------------------------------------------


async def test_sigterm_stops_cleanly_and_leaves_a_sound_database(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    done = await e2e.generate("A snail crosses the finish line")
    await e2e.wait_announcement(done.generation_id)
    sim.config.complete_after = 3600.0
    running = await e2e.generate("A glacier creeps down the valley")  # tracked while the bot stops

    status, took = await e2e.terminate_bot(timeout=5.0)
    assert status == 0 and took < 5.0
    log = e2e.bot.log()
    assert "Stopped cleanly" in log
    assert [problem for problem in LOG_PROBLEMS if problem in log] == []
    assert e2e.db_query("PRAGMA integrity_check") == [("ok",)]
    await fake.wait_until_disconnected()

    # The next start picks the running generation up again.
    sim.config.complete_after = 1.0
    await e2e.start_bot()
    await e2e.wait_announcement(running.generation_id)
    assert len(e2e.announcements(done.generation_id)) == 1
    e2e.finish()


async def test_sigkill_during_a_burst_of_writes_keeps_every_acknowledged_generation(e2e: E2E) -> None:
    fake = e2e.fake
    await e2e.start_bot()
    users = [fake.alice, fake.bob, fake.moderator]
    handles = [
        await e2e.command("generate", {"prompt": f"Burst {n}: a leaf falls in autumn"}, user=users[n % 3])
        for n in range(18)
    ]

    def shown() -> list[str]:
        return [status_id(h.original) for h in handles if h.original is not None and embed_fields(h.original)]

    await e2e.wait_until(lambda: len(shown()) >= 6, "six status messages")
    await e2e.kill_bot()
    acknowledged = shown()
    assert e2e.db_query("PRAGMA integrity_check") == [("ok",)]
    assert e2e.db_query("PRAGMA journal_mode") == [("wal",)]
    stored = {row[0] for row in e2e.db_query("SELECT api_id FROM generations WHERE api_id IS NOT NULL")}
    assert set(acknowledged) <= stored
    # Every row the API accepted has its id (or is waiting for the restart to report it).
    rows = e2e.db_query("SELECT state FROM generations")
    assert len(rows) <= len(handles)

    # The database opens again, and every generation of the burst ends up announced or reported, once.
    await e2e.start_bot()
    # (Rows cut off mid-create are looked for first: found, or given up after the 15 s window.)
    await e2e.wait_until(
        lambda: e2e.db_query("SELECT COUNT(*) FROM generations WHERE announced_at IS NULL") == [(0,)],
        "every row announced or reported",
        timeout=40,
    )
    for generation_id in acknowledged:
        assert len(e2e.announcements(generation_id)) == 1
    for n in range(18):
        told = messages_saying(e2e, f"Burst {n}: a leaf")
        notices = [text for text in told if "checking with the video service" in text]
        assert len(notices) <= 1 and len(told) - len(notices) <= 1
    e2e.finish()


async def test_sigterm_during_a_create_in_flight_still_tells_the_requester(e2e: E2E) -> None:
    sim = e2e.sim
    await e2e.start_bot()
    sim.config.slow_seconds = 30.0
    sim.state.create_faults.append("accept_then_slow")
    prompt = "A comet crosses the desert sky"
    in_flight = await e2e.command("generate", {"prompt": prompt})
    await in_flight.wait_response(3)
    await e2e.wait_until(lambda: sim.state.create_count == 1, "the API accepting the create")

    status, took = await e2e.terminate_bot(timeout=5.0)
    assert status == 0 and took < 5.0
    stopped_log = e2e.bot.log()
    await e2e.start_bot()
    # Barrier: a later video is announced, so the restarted tracker has handled everything older.
    later = await e2e.generate("A kite dances above the dunes")
    await e2e.wait_announcement(later.generation_id)

    # Cut off by the stop, the create is looked for after the restart: its requester hears so, then gets the video.
    [comet] = [g.id for g in sim.state.generations.values() if g.prompt == prompt]
    await e2e.wait_announcement(comet)
    told = messages_saying(e2e, prompt)
    # Found at the first look after the restart, the video itself may be the first word the requester gets.
    notices = [text for text in told if "interrupted while sending" in text]
    assert len(notices) <= 1 and all(comet not in text for text in notices)
    assert len([text for text in told if comet in text]) == 1 == len(told) - len(notices)
    assert not [m for m in in_flight.messages if m.ephemeral and "try again" in m.text]
    assert [problem for problem in LOG_PROBLEMS if problem in stopped_log] == []
    assert sim.state.create_count == 2 and e2e.creates() == 2
    e2e.finish()


async def test_restart_finds_an_earlier_announcement_in_a_busy_channel(e2e: E2E) -> None:
    """More than a page of chatter while the video renders: the restarted bot still finds its announcement."""
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    sim.config.complete_after = 3600.0
    posting = await e2e.generate("A heron waits in the reeds", channel=fake.videos)
    # A lively channel while the video renders (a few minutes in real life).
    for n in range(101):
        await fake.send_member_message(f"chatter {n}", channel=fake.videos, user=fake.bob)
    fake.delay_next(1, f"/channels/{fake.videos.id}/messages", 60.0, method="POST")
    sim.state.generations[posting.generation_id].forced_state = "completed"
    await e2e.wait_announcement(posting.generation_id)
    await e2e.wait_until(lambda: fake.held_answers == 1, "the announcement's answer being held back")
    await e2e.kill_bot()

    fake.nonce_window = 0.0  # the bot comes back after Discord's few minutes of nonce de-duplication
    await e2e.start_bot()
    await e2e.wait_until(lambda: delivery_of(e2e, posting.generation_id) is not None, "the restarted bot's decision")
    assert len(e2e.announcements(posting.generation_id)) == 1
    e2e.finish()


# ------------------------------------------------------------------------------------------------------------
# The faults this suite added to the simulator and the fake Discord
# ------------------------------------------------------------------------------------------------------------


async def call(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, url, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def test_the_added_faults_behave_as_documented(e2e: E2E) -> None:
    """accept_then_slow (simulator), delay_next, enforce_nonce and history `after` (fake), without a bot."""
    fake, sim = e2e.fake, e2e.sim
    api_auth = {"Authorization": f"Bearer {sim.config.api_key}"}
    bot_auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as session:
        # The API accepts the create at once and answers only slow_seconds later.
        sim.config.slow_seconds = 0.3
        sim.state.create_faults.append("accept_then_slow")
        body = {"user_prompt": "Flying jellyfish"}
        answer = asyncio.ensure_future(
            call(session, "POST", f"{sim.base_url}/luma-ai/generations", api_auth, json=body)
        )
        await e2e.wait_until(lambda: sim.state.create_count == 1, "the accept before the answer")
        assert not answer.done()
        status, created = await asyncio.wait_for(answer, 5)
        assert status == 200 and created["id"] in sim.state.generations

        # Discord creates the message but holds the answer back.
        route = f"{fake.api_base}/channels/{fake.general.id}/messages"
        message = {"content": "held", "nonce": "n1", "enforce_nonce": True}
        fake.delay_next(1, f"/channels/{fake.general.id}/messages", 30.0, method="POST")
        held = asyncio.ensure_future(call(session, "POST", route, bot_auth, json=message))
        await e2e.wait_until(lambda: fake.held_answers == 1, "the held answer")
        assert [m.content for m in fake.messages_in(fake.general)] == ["held"]
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held

        # The same nonce again: the earlier message comes back; once the window has passed, a new one is made.
        status, again = await call(session, "POST", route, bot_auth, json=message)
        assert status == 200 and int(again["id"]) == fake.messages_in(fake.general)[0].id
        fake.nonce_window = 0.0
        await call(session, "POST", route, bot_auth, json=message)
        assert len(fake.messages_in(fake.general)) == 2

        # `after` pages forward from the given message, as Discord does (newest first within the page).
        for n in range(5):
            await call(session, "POST", route, bot_auth, json={"content": f"m{n}"})
        first = fake.messages_in(fake.general)[0].id
        _, listed = await call(session, "GET", route, bot_auth, params={"after": str(first), "limit": "2"})
        assert [m["content"] for m in listed] == ["m0", "held"]


async def test_changing_luma_model_keeps_running_videos_on_their_endpoint(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot(LUMA_MODEL="legacy")
    sim.config.complete_after = 3600.0
    legacy = await e2e.generate("An old film of a steam train", channel=fake.videos)
    await e2e.restart_bot(LUMA_MODEL="luma/ray-2")
    sim.config.complete_after = 1.0
    await e2e.wait_announcement(legacy.generation_id)
    # A legacy video is extended where it was made; a new video uses the new model.
    extension_id = await e2e.generate_extension(legacy.generation_id, "The train enters a tunnel")
    assert ":" not in extension_id
    assert sim.state.count("POST", "/luma-ai/generations/{id}/extend") == 1
    current = await e2e.generate("A new film of a bullet train", channel=fake.videos)
    assert current.generation_id.endswith(":luma/ray-2")
    for generation_id in (extension_id, current.generation_id):
        await e2e.wait_announcement(generation_id)
    assert [len(e2e.announcements(i)) for i in (legacy.generation_id, extension_id, current.generation_id)] == [1] * 3
    e2e.finish()


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("POLL_INTERVAL_SECONDS", "soon", "POLL_INTERVAL_SECONDS"),
        ("LUMA_MODEL", "luma/ray-9", "LUMA_MODEL"),
        ("AIML_API_BASE_URL", "ftp://example.invalid", "AIML_API_BASE_URL"),
        ("DISCORD_TOKEN", "not-the-token-of-this-bot", "DISCORD_TOKEN"),
        ("DATABASE_PATH", "/dev/null/bot.sqlite3", "DATABASE_PATH"),
    ],
)
async def test_a_bad_setting_stops_the_bot_with_one_line_naming_it(
    e2e: E2E, setting: str, value: str, named: str
) -> None:
    run = await e2e.start_bot(wait=False, **{setting: value})
    status = await asyncio.wait_for(run.process.wait(), 15)
    output = run.log()
    assert status == 2
    lines = [line for line in output.splitlines() if named in line and "WARNING" not in line]
    assert len(lines) == 1, output
    assert "Traceback" not in output and "Unclosed" not in output
    assert e2e.creates() == 0 and not e2e.fake.connected
    e2e.assert_no_secrets()
