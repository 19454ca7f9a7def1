"""Errors whose message is meant for the member who ran the command."""

from __future__ import annotations


class UserFacingError(Exception):
    """A problem the member can fix or must know about; its message is shown to them as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
