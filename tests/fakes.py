"""Stand-ins for the Discord side of the services, recording what they were asked to do."""

from __future__ import annotations

from bot.models import Delivery, Generation


class RecordingAnnouncer:
    """Announces into a list; can be told to fail for a while or to route to DMs."""

    def __init__(self) -> None:
        self.sent: list[Generation] = []
        self.outcome: Delivery | None = Delivery.CHANNEL
        self.visible_earlier: dict[int, Delivery] = {}
        self.lookups: list[int] = []

    async def announce(self, generation: Generation) -> Delivery | None:
        if self.outcome is not None:
            self.sent.append(generation)
        return self.outcome

    async def find_announcement(self, generation: Generation) -> Delivery | None:
        self.lookups.append(generation.id)
        return self.visible_earlier.get(generation.id)

    def sent_ids(self) -> list[str | None]:
        return [generation.api_id for generation in self.sent]
