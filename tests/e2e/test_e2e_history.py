"""/history and /help on the real process: pages that turn, also after a kill -9 and restart; the server's list as
its sharing setting says; help per role."""

from __future__ import annotations

from .fake_discord import FakeMessage
from .harness import E2E, assert_private

STEP = 10.0


def description(message: FakeMessage) -> str:
    return str(message.embeds[0].get("description") or "") if message.embeds else ""


def footer(message: FakeMessage) -> str:
    return str((message.embeds[0].get("footer") or {}).get("text") or "") if message.embeds else ""


def buttons(message: FakeMessage) -> dict[str, tuple[str, bool]]:
    """The message's buttons by label: (custom id, disabled)."""
    found = {}
    for row in message.components:
        for component in row.get("components", []):
            found[str(component.get("label"))] = (str(component["custom_id"]), bool(component.get("disabled")))
    return found


async def press(e2e: E2E, message: FakeMessage, label: str, user: object = None) -> FakeMessage:
    """Press a button of an ephemeral list and return the list as it is after the bot's update."""
    custom_id, disabled = buttons(message)[label]
    assert not disabled, f"{label} is disabled"
    before = e2e.fake.get_message(message.id) or message
    handle = await e2e.fake.send_component(message, custom_id, user=user or e2e.fake.alice)
    callback = await handle.wait_response(3)
    assert callback.type == 7, f"the press was not answered by updating the list: {callback}"  # UPDATE_MESSAGE

    def updated() -> bool:
        current = e2e.fake.get_message(message.id)
        return current is not None and current.payload != before.payload

    await e2e.wait_until(updated, "the list updated by the press", STEP)
    updated_message = e2e.fake.get_message(message.id)
    assert updated_message is not None and updated_message.ephemeral
    return updated_message


async def test_history_pages_turn_and_keep_turning_after_a_restart(e2e: E2E) -> None:
    fake = e2e.fake
    await e2e.start_bot()
    made = []
    for take in range(12):
        outcome = await e2e.generate(f"A lantern drifts over the lake, take {take}", channel=fake.videos)
        made.append(outcome.generation_id)
    bobs = (await e2e.generate("A kite above the dunes", user=fake.bob)).generation_id
    short = [generation_id[:8] for generation_id in made]

    listing = await e2e.ask("history")
    assert_private(listing, "Your videos in this server", "Page 1")
    text = description(listing)
    # Ten, newest first, each with its short id, prompt, requester and state; Bob's is not among Alice's.
    positions = [text.index(f"`{reference}`") for reference in short[::-1][:10]]
    assert positions == sorted(positions) and short[1] not in text and bobs[:8] not in text
    assert "A lantern drifts over the lake, take 11" in text and f"<@{fake.alice.id}>" in text
    assert buttons(listing)["Previous"][1] is True and buttons(listing)["Next"][1] is False

    second = await press(e2e, listing, "Next")
    assert f"`{short[1]}`" in description(second) and f"`{short[0]}`" in description(second)
    assert short[2] not in description(second) and "Page 2" in footer(second)
    assert buttons(second)["Next"][1] is True

    # After a kill -9 and a restart, the list's buttons still turn its pages.
    await e2e.kill_bot()
    await e2e.start_bot()
    first_again = await press(e2e, second, "Previous")
    assert [description(first_again).index(f"`{r}`") for r in short[::-1][:10]] == sorted(
        description(first_again).index(f"`{r}`") for r in short[::-1][:10]
    )
    assert "Page 1" in footer(first_again)

    # The short id a list shows names the video in /status.
    status = await e2e.ask("status", {"generation_id": short[11]})
    assert_private(status, made[11])

    # The server's list: Bob sees Alice's videos (sharing is on), narrowed to her with `member`.
    server = await e2e.ask("history", {"scope": "server"}, user=fake.bob)
    assert_private(server, "Videos of this server", f"`{bobs[:8]}`", f"`{short[11]}`")
    only_alice = await e2e.ask("history", {"member": fake.alice}, user=fake.bob)
    assert_private(only_alice, "A member's videos", f"`{short[11]}`")
    assert bobs[:8] not in description(only_alice)
    # With sharing off, Bob sees only his own; the moderator still sees everyone's.
    assert_private(await e2e.ask("limits sharing", {"allowed": False}, user=fake.moderator), "Sharing updated")
    refused = await e2e.ask("history", {"scope": "server"}, user=fake.bob)
    assert_private(refused, "keeps members' videos to themselves")
    assert_private(await e2e.ask("history", user=fake.bob), f"`{bobs[:8]}`")
    moderators = await e2e.ask("history", {"scope": "server"}, user=fake.moderator)
    assert_private(moderators, f"`{bobs[:8]}`", f"`{short[11]}`")
    # A press on the server's list is checked again: Bob's list from before no longer turns for him.
    handle = await fake.send_component(server, buttons(server)["Next"][0], user=fake.bob)
    assert_private(await e2e.private_answer(handle), "keeps members' videos to themselves")
    assert (fake.get_message(server.id) or server).payload == server.payload
    e2e.finish()


async def test_help_shows_the_moderators_part_to_moderators_only(e2e: E2E) -> None:
    fake = e2e.fake
    await e2e.start_bot()
    members = await e2e.ask("help")
    assert_private(members, "video studio", "/generate prompt", "/history", "/limits show")
    assert "For moderators" not in members.text and "/limits set" not in members.text and "/usage" not in members.text
    moderators = await e2e.ask("help", user=fake.moderator)
    assert_private(moderators, "For moderators", "/limits set", "/usage")
    # A member who can't make videos in this channel reads why, in the help itself.
    await e2e.ask("limits channels", {"action": "add", "channel": fake.videos}, user=fake.moderator)
    assert_private(await e2e.ask("help", channel=fake.general), "can't be made in this channel")
    e2e.finish()
