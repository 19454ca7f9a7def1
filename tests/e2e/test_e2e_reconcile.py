"""Paid videos whose create answer never came, and a database that stops taking writes: the real process finds
every video the API accepted, delivers it once, and never invites a member to pay twice."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ANNOUNCEMENT_KINDS, E2E, assert_private, embed_fields

CHECKING = "checking with the video service"


def made_with_prompt(e2e: E2E, prompt: str) -> list[str]:
    return [gen.id for gen in e2e.sim.state.generations.values() if gen.prompt == prompt]


def told(e2e: E2E, text: str) -> list[str]:
    return [m.content for m in e2e.fake.message_log if m.kind in ANNOUNCEMENT_KINDS and text in m.content]


def invites_a_retry(text: str) -> bool:
    lowered = text.lower()
    # Trying again is said to be safe only once the request is known never to have arrived.
    conditional = ("then trying again is safe", "if the request never arrived, trying again is then safe")
    return "try again" in lowered or ("trying again" in lowered and not any(text in lowered for text in conditional))


async def test_lost_create_answers_are_found_in_the_list_and_each_delivered_once(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    await e2e.start_bot()
    sim.state.create_faults.append("accept_then_reset")
    lost = await e2e.generate("A heron lands on a pier")
    fields = embed_fields(lost.message)
    # The public status says what happens, and invites no second payment.
    assert fields["State"] == CHECKING and "not sent again" in fields["Reason"]
    assert not invites_a_retry(lost.text)
    [heron] = made_with_prompt(e2e, "A heron lands on a pier")
    announced = await e2e.wait_announcement(heron)
    assert fake.alice.mention in announced.content
    assert announced.payload["message_reference"]["message_id"] == str(lost.message.id)

    # Two members, the same words, both answers lost at once: each gets one video, in the order they asked.
    prompt = "Two kites in one sky"
    sim.state.create_faults.extend(["accept_then_reset", "accept_then_reset"])
    first = await e2e.generate(prompt, user=fake.alice)
    second = await e2e.generate(prompt, user=fake.bob)
    assert first.message.id != second.message.id
    kites = made_with_prompt(e2e, prompt)
    assert len(kites) == 2
    for kite, member in zip(kites, (fake.alice, fake.bob), strict=True):
        message = await e2e.wait_announcement(kite)
        assert member.mention in message.content
    await e2e.wait_until(
        lambda: e2e.db_query("SELECT COUNT(*) FROM generations WHERE announced_at IS NULL") == [(0,)], "all announced"
    )
    for generation_id in (heron, *kites):
        assert len(e2e.announcements(generation_id)) == 1
    assert e2e.creates() == 3 == sim.state.create_count
    e2e.finish()


async def test_the_list_out_of_reach_for_a_while_only_delays_the_video(e2e: E2E) -> None:
    sim = e2e.sim
    await e2e.start_bot()
    # Every read of the list fails (with its retries) for the first few looks.
    sim.state.list_faults.extend([503] * 12)
    sim.state.create_faults.append("accept_then_500")
    await e2e.generate("Snow on a red roof")
    [made] = made_with_prompt(e2e, "Snow on a red roof")
    await e2e.wait_until(lambda: not sim.state.list_faults, "the list failing for a while", timeout=15)
    await e2e.wait_announcement(made, timeout=15)
    assert len(e2e.announcements(made)) == 1 and e2e.creates() == 1
    e2e.finish()


async def test_a_request_the_service_never_received_is_reported_safe_to_retry(e2e: E2E) -> None:
    await e2e.start_bot(RECONCILE_WINDOW_MINUTES="0.1")
    e2e.sim.state.create_faults.append(502)  # refused before anything was made
    status = await e2e.generate("A boat that never sailed")
    assert not invites_a_retry(status.text)
    message = await e2e.fake.wait_for_message(
        lambda m: m.kind in ANNOUNCEMENT_KINDS and "A boat that never sailed" in m.content, 20
    )
    assert "never reached the video service" in message.content and "trying again is safe" in message.content
    assert message.payload["message_reference"]["message_id"] == str(status.message.id)
    quota = await e2e.ask("quota")
    assert "0 /" in embed_fields(quota)["Used today"]  # not charged, so not counted
    assert e2e.creates() == 1 and e2e.sim.state.create_count == 0
    e2e.finish()


async def test_an_unknown_create_on_the_current_endpoint_is_told_honestly(e2e: E2E) -> None:
    await e2e.start_bot(LUMA_MODEL="luma/ray-2")
    e2e.sim.state.create_faults.append("accept_then_500")
    answer = await e2e.ask("generate", {"prompt": "A ray of light"})
    assert_private(answer, "could not confirm", "`/status` will show it", "not sent again")
    assert not invites_a_retry(answer.text)
    assert "python -m bot.adopt" in e2e.bot.log() and e2e.creates() == 1
    e2e.finish()


# ------------------------------------------------------------------------------------------------------------
# A full disk
# ------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of its own, to fill up; skipped where this machine does not allow mounting one."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Write until the file system is full; returns the filler, to delete when space should come back."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


async def test_a_full_disk_refuses_new_videos_plainly_and_loses_no_accepted_one(e2e: E2E, tmp_path: Path) -> None:
    sim = e2e.sim
    with small_disk(tmp_path / "disk") as disk:
        e2e.db_path = disk / "bot.sqlite3"
        await e2e.start_bot(DATABASE_PATH=str(e2e.db_path))
        before = await e2e.generate("A lighthouse before the storm")
        await e2e.wait_announcement(before.generation_id)

        # The disk fills while a create is in flight: the API accepted it, its answer is still on its way.
        sim.config.slow_seconds = 1.5
        sim.state.create_faults.append("accept_then_slow")
        handle = await e2e.command("generate", {"prompt": "A paid video on a full disk"})
        await e2e.wait_until(lambda: sim.state.create_count == 2, "the API accepting the create")
        filler = fill(disk)
        status = await e2e.outcome(handle)
        # On its way: said so publicly, no apology, no retry invited.
        assert not status.private and not invites_a_retry(status.text) and "went wrong" not in status.text
        [paid] = made_with_prompt(e2e, "A paid video on a full disk")

        # New videos are refused in plain words while the disk is full: nothing sent, nothing charged.
        refused = await e2e.ask("generate", {"prompt": "One more on a full disk"})
        assert_private(refused, "can't take new videos", "Nothing was sent or charged")
        assert e2e.creates() == 2
        await e2e.ask("quota")  # reads still answer

        filler.unlink()
        await e2e.wait_announcement(paid, timeout=40)
        await e2e.wait_until(
            lambda: e2e.db_query("SELECT state FROM generations WHERE api_id = ?", [paid]) == [("completed",)],
            "the accepted id reaching the database",
        )
        assert len(e2e.announcements(paid)) == 1
        log = e2e.bot.log()
        assert log.count("The database cannot be written") == 1  # named once, not once per command
        assert "Traceback" not in log
        await e2e.terminate_bot()
    e2e.finish()
