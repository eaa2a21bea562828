"""The small interfaces features depend on.

Production implementations write into the current database transaction
(``bot/store/adapters.py``): nothing reaches Matrix before the transaction
commits, and everything that commits reaches Matrix (the outbox). Unit tests
may pass fakes that record calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.domain.render import Message


class Messenger(Protocol):
    async def send(
        self,
        room_id: str,
        message: Message,
        *,
        reply_to: str | None = None,
        mentions: Sequence[str] = (),
        tag: Mapping[str, Any] | None = None,
        thread_root: str | None = None,
    ) -> int:
        """Queue a notice for ``room_id``; returns its outbox row id."""

    async def edit(
        self,
        room_id: str,
        message_row: int,
        message: Message,
        tag: Mapping[str, Any] | None = None,
    ) -> int:
        """Replace the text of the queued (or sent) message ``message_row`` in place."""

    async def react(self, room_id: str, event_id: str, key: str) -> int:
        """Queue a reaction (e.g. ✅) to ``event_id``."""

    async def send_dm(
        self, user_id: str, message: Message, *, tag: Mapping[str, Any] | None = None
    ) -> int:
        """Queue a notice in the direct chat with ``user_id`` (opened if there is none)."""

    async def send_media(self, user_id: str, content: Mapping[str, Any]) -> int:
        """Queue ready-made media content (see ``content.attachment_content``) in the
        direct chat with ``user_id``."""

    async def send_image(
        self,
        room_id: str | None,
        image: bytes,
        *,
        filename: str,
        mimetype: str,
        width: int,
        height: int,
        caption: str,
        dm_user: str | None = None,
        tag: Mapping[str, Any] | None = None,
    ) -> int:
        """Upload ``image`` and post it to a room or (``dm_user``) a direct chat."""


class RoomActions(Protocol):
    """Membership and settings changes, queued like messages (in order per room)."""

    async def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None: ...

    async def kick(self, room_id: str, user_id: str, reason: str) -> None: ...

    async def put_state(
        self, room_id: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> int: ...

    async def pin(self, room_id: str, message_rows: Sequence[int]) -> None:
        """Pin these queued messages (in this order), replacing what was pinned."""

    async def create_room(
        self, key: str, body: Mapping[str, Any], *, on_done: str, args: Mapping[str, Any]
    ) -> None: ...

    async def join(
        self,
        room_id: str,
        via: Sequence[str] = (),
        *,
        on_done: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        """Join a room (an id or an alias); ``on_done`` names a hook run with the outcome."""

    async def leave(self, room_id: str) -> None: ...

    async def creating(self, key: str) -> bool:
        """Whether a room with this key is already queued for creation."""


class AuditLog(Protocol):
    async def record(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        room_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append to the audit trail, in the same transaction as the change."""


class RoomStateReader(Protocol):
    async def room_state(self, room_id: str) -> list[dict[str, Any]] | None:
        """The room's state events as the homeserver has them, or None if unreadable now."""


@dataclass(frozen=True)
class StatusReport:
    uptime_s: float
    events_processed: int
    outbox_pending: int
    outbox_sent: int
    outbox_failed: int
    last_sync_age_s: float | None
    homeserver: str
    unreadable_waiting: int = 0
    unreadable_given_up: int = 0


class StatusProbe(Protocol):
    async def status(self) -> StatusReport: ...


@dataclass
class RuntimeInfo:
    """Live facts about this process, updated by the app as it runs."""

    homeserver: str
    started_at: float
    last_sync_at: float | None = None
