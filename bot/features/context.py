"""What a command handler gets: the event, the caller's roles, and the ports to act through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.commands import CommandRegistry
from bot.domain.matrix_model import RoomEvent
from bot.domain.render import Language, render
from bot.domain.roles import Role
from bot.features.ports import AuditLog, Messenger, StatusProbe


@dataclass
class CommandContext:
    event: RoomEvent
    roles: frozenset[Role]
    lang: Language
    prefix: str
    messenger: Messenger
    audit: AuditLog
    registry: CommandRegistry
    status: StatusProbe
    now_ms: int

    async def reply(self, key: str, **params: Any) -> None:
        """Answer the caller in the room, as a reply to their message, mentioning them."""
        await self.messenger.send(
            self.event.room_id,
            render(self.lang, key, **params),
            reply_to=self.event.event_id,
            mentions=[self.event.sender],
            tag={"kind": key},
        )
