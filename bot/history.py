"""/history: a server's generations page by page, newest first, and who may see whose. Free of Discord."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from .errors import UserFacingError
from .generations import Origin
from .models import Generation
from .quota import GuildRules
from .storage import GenerationStore, HistorySlice

PAGE_SIZE = 10


class Scope(StrEnum):
    MINE = "mine"
    SERVER = "server"


class Direction(StrEnum):
    """Which page a query asks for, relative to its cursor (a row id)."""

    FIRST = "first"  # the newest page; the cursor is unused
    OLDER = "older"  # the page just older than the cursor
    NEWER = "newer"  # the page just newer than the cursor


@dataclass(frozen=True)
class HistoryQuery:
    """Everything a history list needs to show one page again: whose generations, and where in them. A Previous or
    Next button carries it, so a press works whatever happened since (a restart included)."""

    scope: Scope = Scope.MINE
    member_id: int | None = None
    direction: Direction = Direction.FIRST
    cursor: int = 0
    page: int = 1


@dataclass(frozen=True)
class HistoryPage:
    """One page: up to ten generations, newest first, and whether there are newer and older ones."""

    query: HistoryQuery
    generations: list[Generation]
    page: int
    has_newer: bool
    has_older: bool
    # Whose videos the page lists: one member's, or everyone's in the server (None); `own`: the viewer's.
    requester_id: int | None
    own: bool
    # True when the list leaves out generations of channels the viewer can't see.
    channels_narrowed: bool

    @property
    def first_number(self) -> int:
        """The place of the page's first video in the whole list (1 for the newest)."""
        return (self.page - 1) * PAGE_SIZE + 1

    def older(self) -> HistoryQuery:
        """The query of the next page (older videos)."""
        cursor = self.generations[-1].id if self.generations else self.query.cursor
        return replace(self.query, direction=Direction.OLDER, cursor=cursor, page=self.page + 1)

    def newer(self) -> HistoryQuery:
        """The query of the previous page (newer videos); from an empty page past the end, the page before it."""
        cursor = self.generations[0].id if self.generations else self.query.cursor - 1
        return replace(self.query, direction=Direction.NEWER, cursor=cursor, page=max(self.page - 1, 1))


def scope_for(scope: Scope | None, member_id: int | None) -> Scope:
    """The scope a command means: naming a member asks for the server's videos, narrowed to theirs."""
    if scope is not None:
        return scope
    return Scope.SERVER if member_id is not None else Scope.MINE


class HistoryService:
    """Reads history pages with the viewer's rights checked at every page, a button press included."""

    def __init__(self, store: GenerationStore, rules: Callable[[int], Awaitable[GuildRules]]) -> None:
        self._store = store
        self._rules = rules

    async def page(self, viewer: Origin, query: HistoryQuery, visible_channels: frozenset[int] | None) -> HistoryPage:
        """The page `query` asks for, as `viewer` may see it. `visible_channels`: the channels the viewer can read
        (None: all); another member's videos made elsewhere are left out for a member who is no moderator."""
        requester_id, channels = await self._allowed(viewer, query, visible_channels)
        rows = await self._store.history_page(
            HistorySlice(
                guild_id=viewer.guild_id,
                limit=PAGE_SIZE + 1,
                requester_id=requester_id,
                channel_ids=channels,
                before_id=query.cursor if query.direction is Direction.OLDER else None,
                after_id=query.cursor if query.direction is Direction.NEWER else None,
                # Another member's private videos stay theirs until shared (moderators see the whole server).
                private_seen_by=None if viewer.is_moderator else viewer.user_id,
            )
        )
        more = len(rows) > PAGE_SIZE
        if query.direction is Direction.NEWER:
            # Read upwards from the cursor: the extra row, if any, is the newest one.
            generations, has_newer, has_older = rows[-PAGE_SIZE:], more, True
        else:
            generations, has_newer, has_older = rows[:PAGE_SIZE], query.direction is Direction.OLDER, more
        page = query.page if has_newer else 1
        own = requester_id == viewer.user_id
        return HistoryPage(query, generations, page, has_newer, has_older, requester_id, own, channels is not None)

    async def _allowed(
        self, viewer: Origin, query: HistoryQuery, visible_channels: frozenset[int] | None
    ) -> tuple[int | None, frozenset[int] | None]:
        """Whose videos and which channels the viewer may list; raises UserFacingError when none of it."""
        if query.scope is Scope.MINE:
            if query.member_id not in (None, viewer.user_id):
                raise UserFacingError(
                    "`scope: mine` lists your own videos. To see another member's, choose `scope: server` with "
                    "`member`."
                )
            return viewer.user_id, None
        if query.member_id == viewer.user_id:
            return viewer.user_id, None
        if viewer.is_moderator:
            return query.member_id, None
        rules = await self._rules(viewer.guild_id)
        if not rules.members_share_videos:
            raise UserFacingError(
                "This server keeps members' videos to themselves, so `/history` shows you only your own "
                "(moderators can see everyone's)."
            )
        return query.member_id, visible_channels
