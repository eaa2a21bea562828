"""Store-backed implementations of the features' ports, bound to one transaction."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from bot.domain.content import notice_content
from bot.domain.render import Message
from bot.features.ports import RuntimeInfo, StatusReport
from bot.store import audit, inbox, outbox


class OutboxMessenger:
    """Sending = writing a row to the outbox inside the event's transaction."""

    def __init__(self, conn: aiosqlite.Connection, source_event: str | None = None) -> None:
        self._conn = conn
        self._source_event = source_event
        self.queued = 0

    async def send(
        self,
        room_id: str,
        message: Message,
        *,
        reply_to: str | None = None,
        mentions: Sequence[str] = (),
        tag: Mapping[str, Any] | None = None,
    ) -> None:
        content = notice_content(message, reply_to=reply_to, mentions=mentions, tag=tag)
        await outbox.enqueue(
            self._conn, room_id, "m.room.message", content, source_event=self._source_event
        )
        self.queued += 1


class SqlAuditLog:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def record(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        room_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await audit.record(self._conn, actor, action, target=target, room_id=room_id, detail=detail)


class TxStatusProbe:
    """Reads the status figures through the transaction that is already open."""

    def __init__(self, conn: aiosqlite.Connection, runtime: RuntimeInfo) -> None:
        self._conn = conn
        self._runtime = runtime

    async def status(self) -> StatusReport:
        now = time.time()
        stats = await outbox.stats(self._conn)
        last = self._runtime.last_sync_at
        return StatusReport(
            uptime_s=now - self._runtime.started_at,
            events_processed=await inbox.count(self._conn),
            outbox_pending=stats.pending,
            outbox_sent=stats.sent,
            outbox_failed=stats.failed,
            last_sync_age_s=None if last is None else now - last,
            homeserver=self._runtime.homeserver,
        )
