"""The README's promises that can be checked without Discord: the invite link asks for the permissions it lists."""

from __future__ import annotations

import re
from pathlib import Path

import discord

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
# The names the Developer Portal shows, and discord.py's flags for them.
PERMISSION_FLAGS = {
    "View Channels": "view_channel",
    "Send Messages": "send_messages",
    "Send Messages in Threads": "send_messages_in_threads",
    "Embed Links": "embed_links",
    "Read Message History": "read_message_history",
    "Add Reactions": "add_reactions",
    "Attach Files": "attach_files",
    "Mention Everyone": "mention_everyone",
    "Manage Messages": "manage_messages",
}


def test_the_invite_link_asks_for_exactly_the_permissions_the_readme_lists() -> None:
    step = README[README.index("**OAuth2 → URL Generator**") :]
    step = step[: step.index("\n4. ")]
    listed = re.findall(r"\*\*([^*]+)\*\*", step.split("bot permissions", 1)[1].split("(", 1)[0])
    assert listed and all(name in PERMISSION_FLAGS for name in listed), listed
    link = re.search(r"permissions=(\d+)", step)
    assert link is not None
    asked = discord.Permissions(int(link.group(1)))
    expected = discord.Permissions(**dict.fromkeys((PERMISSION_FLAGS[name] for name in listed), True))
    assert asked == expected, f"the link asks for {sorted(n for n, v in asked if v)}"
