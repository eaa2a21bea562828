"""What feature handlers get: the transaction-bound services, the event and who sent it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.config import Config
from bot.domain.matrix_model import RoomEvent
from bot.domain.org import ManagedRoom
from bot.domain.render import Language, Message, render
from bot.domain.roles import Role
from bot.features.ports import AuditLog, Messenger, RoomActions, StatusProbe
from bot.store.db import Connection

if TYPE_CHECKING:
    from bot.commands import CommandRegistry


@dataclass
class Deps:
    """Everything a feature works with, bound to the current database transaction."""

    conn: Connection
    config: Config
    messenger: Messenger
    actions: RoomActions
    audit: AuditLog
    now_ms: int

    @property
    def bot_id(self) -> str:
        return self.config.bot.user_id

    @property
    def server_name(self) -> str:
        return self.bot_id.split(":", 1)[1]

    @property
    def lang(self) -> Language:
        return self.config.language

    def render(self, key: str, lang: Language | None = None, **params: Any) -> Message:
        params.setdefault("prefix", self.config.command_prefix)
        return render(lang or self.config.language, key, **params)


@dataclass
class EventContext:
    """One incoming event, where it happened and who sent it."""

    deps: Deps
    event: RoomEvent
    roles: frozenset[Role]
    lang: Language
    room: ManagedRoom | None
    dm_with: str | None  # set when the event is in the bot's direct chat with its sender

    @property
    def sender(self) -> str:
        return self.event.sender

    @property
    def in_dm(self) -> bool:
        return self.dm_with is not None

    @property
    def prefix(self) -> str:
        return self.deps.config.command_prefix

    @property
    def messenger(self) -> Messenger:
        return self.deps.messenger

    @property
    def audit(self) -> AuditLog:
        return self.deps.audit

    @property
    def now_ms(self) -> int:
        return self.deps.now_ms

    def render(self, key: str, **params: Any) -> Message:
        return self.deps.render(key, self.lang, **params)

    async def reply(self, key: str, **params: Any) -> None:
        """Answer the sender where they wrote, as a reply to their message, mentioning them."""
        await self.deps.messenger.send(
            self.event.room_id,
            self.render(key, **params),
            reply_to=self.event.event_id,
            mentions=[self.event.sender],
            tag={"kind": key},
        )


@dataclass
class CommandContext(EventContext):
    registry: CommandRegistry
    status: StatusProbe
