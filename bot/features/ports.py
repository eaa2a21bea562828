"""The small interfaces features depend on.

Production implementations write into the current database transaction
(``bot/store/adapters.py``); unit tests pass fakes that record calls.
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
    ) -> None:
        """Queue a message (a notice) for ``room_id``; it is sent after the commit."""


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


@dataclass(frozen=True)
class StatusReport:
    uptime_s: float
    events_processed: int
    outbox_pending: int
    outbox_sent: int
    outbox_failed: int
    last_sync_age_s: float | None
    homeserver: str


class StatusProbe(Protocol):
    async def status(self) -> StatusReport: ...


@dataclass
class RuntimeInfo:
    """Live facts about this process, updated by the app as it runs."""

    homeserver: str
    started_at: float
    last_sync_at: float | None = None
