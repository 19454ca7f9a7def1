"""What members read: announcements, status embeds, autocomplete labels, error answers, and logs."""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands

from bot.__main__ import RedactingFilter
from bot.api_client import ApiOutOfCredits
from bot.app import message_for_error
from bot.errors import UserFacingError
from bot.generations import QueueView
from bot.messages import announcement, autocomplete_label, history_embed, queue_embed, status_embed, took
from bot.models import Delivery, Generation, Kind, State
from bot.quota import GuildRules, ServerLimits
from cogs.moderation import rules_embed

URL = "https://cdn.example/videos/abc.mp4"


def make(**changes: object) -> Generation:
    values: dict[str, object] = dict(
        id=7, api_id="a4a8f1ff-e59b-4969-abcb-98b3e16f003e", parent_api_id=None, kind=Kind.GENERATE, guild_id=1,
        channel_id=2, requester_id=3, prompt="a *bold* cat", aspect_ratio="16:9", expand_prompt=True,
        state=State.COMPLETED, api_state="completed", video_url=URL, thumbnail_url=None, last_frame_url=None,
        failure_reason=None, status_message_id=None, created_at=1.8e9, updated_at=1.8e9, submitted_at=1.8e9,
        finished_at=1.8e9, announce_claimed_at=None, announced_at=None, announce_attempts=0, delivery=None,
    )  # fmt: skip
    values.update(changes)
    return Generation(**values)  # type: ignore[arg-type]


def test_a_finished_video_announcement_mentions_the_requester_and_carries_the_link() -> None:
    text = announcement(make())
    assert text.startswith("<@3>") and URL in text and "`a4a8f1ff-e59b-4969-abcb-98b3e16f003e`" in text
    assert "\\*bold\\*" in text  # the prompt's markdown is shown, not applied


def test_the_link_survives_the_longest_prompt() -> None:
    text = announcement(make(prompt="word " * 600, video_url=URL + "?" + "x" * 400))
    assert len(text) <= 2000 and text.endswith(URL + "?" + "x" * 400)


def test_failures_timeouts_and_unconfirmed_requests_say_what_happened() -> None:
    failed = announcement(make(state=State.FAILED, video_url=None, failure_reason="content policy"))
    assert "could not be made" in failed and "content policy" in failed
    assert "does not count toward your daily limit" in failed
    late = announcement(make(state=State.TIMED_OUT, video_url=None, failure_reason="not ready after 30 minutes"))
    assert "late" in late and "/status" in late
    unsure = announcement(make(state=State.UNCONFIRMED, api_id=None, video_url=None, failure_reason="restarted"))
    assert "may not have been received" in unsure and "`#7`" in unsure


def test_a_dm_says_where_the_video_was_asked_for() -> None:
    assert "(asked in <#2>)" in announcement(make(), by_direct_message=True)


def test_a_prompt_cannot_ping_through_an_announcement() -> None:
    text = announcement(make(prompt="hey @everyone and @here"))
    assert "@everyone" not in text.replace("@\u200beveryone", "") and "@here" not in text.replace("@\u200bhere", "")


def test_status_embed_fits_discord_limits() -> None:
    embed = status_embed(
        make(prompt="p" * 2048, delivery=Delivery.UNDELIVERABLE, state=State.FAILED, failure_reason="r" * 3000)
    )
    assert len(embed) <= 6000 and all(len(field.value or "") <= 1024 for field in embed.fields)
    fields = {field.name: field.value for field in embed.fields}
    assert fields["State"] == "failed" and fields["Requested by"] == "<@3>" and "Delivery" in fields


def test_history_lists_newest_first_with_links() -> None:
    embed = history_embed([make(id=2, prompt="second"), make(id=1, prompt="first", video_url=None)])
    description = embed.description or ""
    assert description.index("second") < description.index("first") and URL in description
    assert "no generations" in (history_embed([]).description or "")


def test_autocomplete_labels_fit_in_100_characters() -> None:
    label = autocomplete_label(make(prompt="long " * 50, state=State.RUNNING, api_state="dreaming"))
    assert len(label) <= 100 and label.startswith("a4a8f1ff · dreaming · long")


def test_errors_become_plain_words() -> None:
    assert message_for_error(UserFacingError("Your prompt is empty.")) == "Your prompt is empty."
    assert "out of credits" in (message_for_error(ApiOutOfCredits("HTTP 403")) or "")
    assert message_for_error(app_commands.NoPrivateMessage()) is not None
    assert message_for_error(RuntimeError("boom")) is None  # unexpected: logged with an id, apology shown


def test_secrets_are_redacted_from_every_log_record() -> None:
    redactor = RedactingFilter(["tok.en.secret", "aiml-key-123"])
    record = logging.LogRecord(
        "discord.http", logging.DEBUG, __file__, 1, "sent %s with %s", ("tok.en.secret", "x"), None
    )
    redactor.filter(record)
    assert "tok.en.secret" not in record.getMessage() and "[redacted]" in record.getMessage()
    webhook = logging.LogRecord(
        "discord.webhook",
        logging.DEBUG,
        __file__,
        1,
        "POST /webhooks/123/aW50ZXJhY3Rpb246MTIzNDU2Nzg5MA.abc-def_ghi",
        None,
        None,
    )
    redactor.filter(webhook)
    assert "aW50ZXJhY3Rpb24" not in webhook.getMessage()
    event = logging.LogRecord(
        "discord.gateway",
        logging.DEBUG,
        __file__,
        1,
        "WebSocket Event: %s",
        ({"d": {"token": "aW50ZXJhY3Rpb24tdG9rZW4"}},),
        None,
    )
    redactor.filter(event)
    assert "aW50ZXJhY3Rpb24tdG9rZW4" not in event.getMessage() and "'token': '[redacted]'" in event.getMessage()
    try:
        raise ValueError("bad key aiml-key-123")
    except ValueError:
        import sys

        failing = logging.LogRecord("bot", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    redactor.filter(failing)
    assert "aiml-key-123" not in (failing.exc_text or "")


def assert_within_discord_limits(embed: discord.Embed) -> None:
    """Discord's limits for one embed, checked here on their own (not through the helpers that keep to them)."""
    data = embed.to_dict()
    assert len(data.get("title", "")) <= 256 and len(data.get("description", "")) <= 4096
    assert len(data.get("footer", {}).get("text", "")) <= 2048
    fields = data.get("fields", [])
    assert len(fields) <= 25
    assert all(0 < len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in fields)
    assert len(embed) <= 6000


def assert_whole(text: str, urls: tuple[str, ...] = ()) -> None:
    """No mention and no link in `text` was cut."""
    assert re.findall(r"<[@#]&?[^>]*(?:>|$)", text) == re.findall(r"<[@#]&?\d+>", text)
    for link in re.findall(r"https?://\S+", text):
        assert link in urls, link


LONG_URL = URL + "?signature=" + "s" * 1200


def test_discord_limits_hold_for_embeds_built_from_the_worst_input() -> None:
    worst = make(
        prompt="*" * 2048, failure_reason="r" * 3000, video_url=LONG_URL, state=State.FAILED, parent_api_id="p" * 80
    )
    embed = status_embed(worst, note="n" * 3000)
    assert_within_discord_limits(embed)
    assert LONG_URL not in str(embed.to_dict()) and "https://" not in str(embed.to_dict())  # never half a link
    history = history_embed([make(id=n, prompt="*_~" * 700, video_url=LONG_URL) for n in range(10)])
    assert_within_discord_limits(history)
    assert_whole(history.description or "")


def test_the_queue_lists_whole_mentions_and_says_how_many_more_wait() -> None:
    jobs = [
        (n, make(id=n, requester_id=100000000000000000 + n, prompt="p" * 2048, state=State.QUEUED))
        for n in range(1, 60)
    ]
    view = QueueView(0, 0, 0, 0, 59, 59, jobs, shows_everyone=True)
    embed = queue_embed(view)
    assert_within_discord_limits(embed)
    waiting = embed.fields[-1].value or ""
    assert_whole(waiting)
    assert re.search(r"… and \d+ more$", waiting) and "<@100000000000000001>" in waiting


def test_a_server_s_rules_list_whole_mentions_however_many() -> None:
    rules = GuildRules(
        ServerLimits(),
        allowed_channels=frozenset(range(100000000000000000, 100000000000000200)),
        allowed_roles=frozenset(range(200000000000000000, 200000000000000200)),
        exempt_roles=frozenset(range(300000000000000000, 300000000000000200)),
        blocked_phrases=tuple(f"phrase {n} " + "w" * 40 for n in range(300)),
    )
    embed = rules_embed(rules, global_daily=0, show_phrases=True)
    assert_within_discord_limits(embed)
    for field in embed.fields:
        assert_whole(field.value or "")
    fields = {field.name: field.value or "" for field in embed.fields}
    assert fields["Channels"].startswith("<#100000000000000000>, ") and fields["Channels"].endswith("more")
    phrases = fields["Blocked words and phrases"]
    assert phrases.startswith("300: ||phrase 0 ") and phrases.count("||") % 2 == 0


def test_the_longest_announcements_fit_in_a_message_with_the_mention_and_the_link_whole() -> None:
    for state in State:
        text = announcement(
            make(state=state, prompt="*" * 2048, failure_reason="<@1> " * 1000, video_url=URL), by_direct_message=True
        )
        assert len(text) <= 2000 and text.startswith("<@3>")
        assert_whole(text, (URL,))


def progress_of(generation: Generation, ready_at: float | None = None) -> str | None:
    fields = {field.name: field.value for field in status_embed(generation, ready_at=ready_at).fields}
    return fields.get("Progress")


def test_the_status_message_says_where_the_job_stands_in_times_that_count_by_themselves() -> None:
    sent = 1.8e9
    waiting = make(state=State.RUNNING, api_state="pending", video_url=None, finished_at=None, submitted_at=sent)
    assert progress_of(waiting) == f"Waiting at the video service, sent <t:{int(sent)}:R>."
    dreaming = make(state=State.RUNNING, api_state="processing", video_url=None, finished_at=None, submitted_at=sent)
    assert progress_of(dreaming, ready_at=sent + 90) == (
        f"Dreaming, started <t:{int(sent)}:R>. The video service expects it ready <t:{int(sent + 90)}:R>."
    )
    # A job that waited in the queue took its time from when it left the queue, not from the command.
    done = make(created_at=sent - 600, started_at=sent, finished_at=sent + 200)
    assert progress_of(done) == "Finished in 3 min 20 s."
    assert progress_of(make(state=State.SUBMITTING, finished_at=None)) == "Being sent to the video service."
    failed = make(state=State.FAILED, failure_reason="The prompt was refused.")
    assert progress_of(failed) is None  # the reason says it, in its own field
    assert {f.name: f.value for f in status_embed(failed).fields}["Reason"] == "The prompt was refused."


def test_durations_read_as_members_say_them() -> None:
    assert [took(s) for s in (0, 45.4, 60, 200, 3600, 3900)] == [
        "0 s",
        "45 s",
        "1 min",
        "3 min 20 s",
        "1 h",
        "1 h 5 min",
    ]
