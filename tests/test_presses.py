"""A finished result's buttons: which a result carries, who may press each, and custom ids that survive restarts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import discord
import pytest

from bot.announcer import PrivateAnswers
from bot.models import Generation, Kind, State
from bot.presses import Presser, ResultAction, press_refusal, result_actions
from bot.result_messages import dm_closed_text, private_ready_text, result_embed, shown_again_text
from cogs.generation import CancelButton
from cogs.results import (
    EXTEND_FORM_TEMPLATE,
    ResultButton,
    extend_form,
    extend_form_custom_id,
    refreshed_content,
    result_custom_id,
    result_view,
)

GUILD = 1
OTHER_GUILD = 2
REQUESTER = 3
MEMBER = 4
URL = "https://cdn.example/videos/abc.mp4"


def make(**changes: object) -> Generation:
    values: dict[str, object] = dict(
        id=7, api_id="a4a8f1ff-e59b-4969-abcb-98b3e16f003e", parent_api_id=None, kind=Kind.GENERATE, guild_id=GUILD,
        channel_id=20, requester_id=REQUESTER, prompt="a *bold* cat", aspect_ratio="16:9", expand_prompt=True,
        state=State.COMPLETED, api_state="completed", video_url=URL, thumbnail_url="https://cdn.example/t.jpg",
        last_frame_url=None, failure_reason=None, status_message_id=None, created_at=1.8e9, updated_at=1.8e9,
        submitted_at=1.8e9 + 2, finished_at=1.8e9 + 75, announce_claimed_at=None, announced_at=None,
        announce_attempts=0, delivery=None,
    )  # fmt: skip
    values.update(changes)
    return Generation(**values)  # type: ignore[arg-type]


IN_SERVER_BUTTONS = (ResultAction.EXTEND, ResultAction.REROLL, ResultAction.REFRESH)


@pytest.mark.parametrize("action", IN_SERVER_BUTTONS)
def test_the_requester_and_moderators_may_always_press(action: ResultAction) -> None:
    for sharing in (True, False):
        requester = Presser(REQUESTER, GUILD)
        moderator = Presser(MEMBER, GUILD, is_moderator=True)
        assert press_refusal(action, make(), requester, members_share_videos=sharing) is None
        assert press_refusal(action, make(), moderator, members_share_videos=sharing) is None


@pytest.mark.parametrize("action", IN_SERVER_BUTTONS)
def test_other_members_may_press_as_the_sharing_setting_says(action: ResultAction) -> None:
    other = Presser(MEMBER, GUILD)
    assert press_refusal(action, make(), other, members_share_videos=True) is None
    refusal = press_refusal(action, make(), other, members_share_videos=False)
    assert refusal is not None and f"<@{REQUESTER}>" in refusal and "moderator" in refusal


@pytest.mark.parametrize("action", [*IN_SERVER_BUTTONS, ResultAction.SHARE])
def test_a_press_in_another_server_never_reaches_the_generation(action: ResultAction) -> None:
    # Not even for its requester, nor a moderator there, whatever the sharing setting.
    for presser in (Presser(REQUESTER, OTHER_GUILD), Presser(MEMBER, OTHER_GUILD, is_moderator=True)):
        refusal = press_refusal(action, make(), presser, members_share_videos=True)
        assert refusal is not None and "No generation `#7` was found in this server" in refusal
        assert "cat" not in refusal  # nothing of the other server's video is shown


@pytest.mark.parametrize("action", IN_SERVER_BUTTONS)
def test_server_buttons_do_nothing_in_a_direct_message(action: ResultAction) -> None:
    assert press_refusal(action, make(), Presser(REQUESTER, None), members_share_videos=True) is not None


def test_share_is_the_requesters_alone() -> None:
    video = make(private=True)
    assert press_refusal(ResultAction.SHARE, video, Presser(REQUESTER, None), members_share_videos=False) is None
    # From the ephemeral answer in the server, where a closed DM left it.
    assert press_refusal(ResultAction.SHARE, video, Presser(REQUESTER, GUILD), members_share_videos=False) is None
    for presser in (Presser(MEMBER, None), Presser(MEMBER, GUILD, is_moderator=True)):
        refusal = press_refusal(ResultAction.SHARE, video, presser, members_share_videos=True)
        assert refusal == "Only the member who asked for this video can share it."


def test_which_buttons_a_result_carries() -> None:
    assert result_actions(make()) == IN_SERVER_BUTTONS
    for ended in (State.FAILED, State.REJECTED, State.NOT_RECEIVED, State.EXPIRED):
        assert result_actions(make(state=ended, video_url=None)) == (ResultAction.REROLL,)
    # A late video may still arrive and be paid for: nothing invites a new request, Refresh shows it if it came.
    assert result_actions(make(state=State.TIMED_OUT, video_url=None)) == (ResultAction.REFRESH,)
    for unsure in (State.UNCONFIRMED, State.CHECKING, State.RUNNING, State.QUEUED):
        assert result_actions(make(state=unsure, video_url=None)) == ()
    assert result_actions(make(private=True), private_copy=True) == (ResultAction.SHARE,)
    assert result_actions(make(private=True, state=State.FAILED, video_url=None), private_copy=True) == ()


def labels(view: discord.ui.View | None) -> list[str | None]:
    assert view is not None
    return [item.item.label for item in view.children if isinstance(item, ResultButton)]


async def test_the_buttons_are_labelled_as_members_know_them() -> None:
    assert labels(result_view(make())) == ["Extend", "Re-roll", "Refresh"]
    assert labels(result_view(make(state=State.FAILED, video_url=None))) == ["Try again"]
    assert labels(result_view(make(private=True), True)) == ["Share"]
    assert result_view(make(state=State.CHECKING)) is None


@pytest.mark.parametrize("row_id", [1, 7, 123_456_789, 10**18 - 1])
async def test_every_custom_id_names_its_action_and_generation_and_round_trips(row_id: int) -> None:
    template: re.Pattern[str] = ResultButton.__discord_ui_compiled_template__
    cancel_template: re.Pattern[str] = CancelButton.__discord_ui_compiled_template__
    for action in ResultAction:
        custom_id = result_custom_id(action, row_id)
        assert len(custom_id) <= 100
        match = template.fullmatch(custom_id)
        assert match is not None and cancel_template.fullmatch(custom_id) is None
        button = await ResultButton.from_custom_id(None, None, match)  # type: ignore[arg-type]
        assert (button.action, button.row_id, button.custom_id) == (action, row_id, custom_id)
    form_id = extend_form_custom_id(row_id)
    form = EXTEND_FORM_TEMPLATE.fullmatch(form_id)
    assert len(form_id) <= 100 and form is not None and int(form["row"]) == row_id
    assert template.fullmatch(form_id) is None  # a form's id is never taken for a button's
    assert template.fullmatch(f"queue:cancel:{row_id}") is None


async def test_the_extend_form_asks_for_the_continuation_and_is_answered_by_its_id() -> None:
    form = extend_form(make())
    payload = form.to_dict()
    assert payload["custom_id"] == "result:extend-prompt:7" and len(payload["title"]) <= 45
    [row] = payload["components"]
    [field] = row.get("components", [row])
    assert field["custom_id"] == "prompt" and field["min_length"] == 3 and field["max_length"] == 2048
    assert form.is_finished()  # no copy kept in memory: the form is answered by its custom id, also after a restart


def test_the_result_card_says_what_the_video_is() -> None:
    embed = result_embed(make(parent_api_id="f00d", kind=Kind.EXTEND, model="luma/ray-2"))
    fields = {field.name: field.value for field in embed.fields}
    assert embed.description == "a \\*bold\\* cat"
    assert fields["Requested by"] == f"<@{REQUESTER}>" and fields["Aspect ratio"] == "16:9"
    assert fields["Model"] == "Ray 2" and fields["Extends"] == "`f00d`"
    assert fields["Time taken"] == "1 min 15 s" and fields["Id"] == "`a4a8f1ff`"
    assert embed.thumbnail.url == "https://cdn.example/t.jpg"
    failed = result_embed(make(state=State.FAILED, video_url=None, failure_reason="content policy"))
    failed_fields = {field.name: field.value for field in failed.fields}
    assert "Time taken" not in failed_fields and failed_fields["Reason"] == "content policy"
    assert "failed" in (failed.title or "")


def test_the_result_card_fits_discords_limits_from_the_worst_input() -> None:
    worst = make(prompt="p" * 2048, failure_reason="r" * 5000, state=State.FAILED, parent_api_id="x" * 2000)
    embed = result_embed(worst)
    assert len(embed) <= 6000 and len(embed.description or "") <= 4096 and len(embed.title or "") <= 256
    assert all(len(field.value or "") <= 1024 for field in embed.fields) and len(embed.fields) <= 25


def test_a_post_again_names_people_without_the_marker_of_an_announcement() -> None:
    text = shown_again_text(make(), shown_by=MEMBER)
    assert text.endswith(URL) and f"<@{REQUESTER}>" in text and f"<@{MEMBER}>" in text
    # A restart looks for "`<id>`" to find an earlier announcement: a re-post must never be taken for one.
    assert "`a4a8f1ff-e59b-4969-abcb-98b3e16f003e`" not in text
    long_link = URL + "?" + "x" * 1900
    assert shown_again_text(make(video_url=long_link, prompt="w " * 900), MEMBER).endswith(long_link)


def test_private_texts_keep_the_link_whole_and_say_where_to_find_it() -> None:
    ready = private_ready_text(make(private=True))
    assert "`a4a8f1ff-e59b-4969-abcb-98b3e16f003e`" in ready and ready.endswith(URL) and "Share" in ready
    closed = dm_closed_text(make(private=True))
    assert "/status a4a8f1ff-e59b-4969-abcb-98b3e16f003e" in closed and "/history" in closed and closed.endswith(URL)
    failed = dm_closed_text(make(private=True, state=State.FAILED, video_url=None, failure_reason="policy"))
    assert "policy" in failed and len(failed) <= 2000


def test_refresh_swaps_the_old_link_for_the_fresh_one_and_keeps_the_rest() -> None:
    before = make(video_url=URL + "?expires=1")
    after = make(video_url=URL + "?expires=2")
    assert refreshed_content(f"<@3> ready\n{URL}?expires=1", before, after) == f"<@3> ready\n{URL}?expires=2"
    late = make(state=State.TIMED_OUT, video_url=None)
    assert refreshed_content("<@3> your video is late.", late, after) == f"<@3> your video is late.\n{URL}?expires=2"
    assert refreshed_content(f"x {URL}?expires=2", after, after) == f"x {URL}?expires=2"


def test_a_private_commands_answer_is_kept_only_while_discord_accepts_follow_ups() -> None:
    asked = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    now = [asked.timestamp()]
    answers = PrivateAnswers(clock=lambda: now[0])
    followup = object()
    answers.remember(7, SimpleNamespace(created_at=asked, followup=followup))  # type: ignore[arg-type]
    now[0] += 14 * 60
    assert answers.followup(7) is followup
    now[0] += 60  # 15 minutes after the command: Discord refuses its token, so it is no use any more
    assert answers.followup(7) is None
    answers.remember(8, SimpleNamespace(created_at=asked, followup=followup))  # type: ignore[arg-type]
    assert answers.followup(8) is None  # an answer already too old is not kept at all
