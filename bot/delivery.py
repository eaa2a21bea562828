"""The outbox worker: sends queued messages, in order per room, without blocking the sync loop.

* the Matrix transaction id is ``<per-database prefix>-<row id>``: a retry after
  a crash or a timeout reuses it, so the homeserver never posts a message twice;
* 429 → wait ``retry_after_ms`` and retry the same row (order is kept);
* network / 5xx → exponential backoff (capped), the row stays pending;
* other 4xx → counted; after ``max_attempts`` the row is parked as ``failed``
  (kept in the table and shown by ``!status``), never silently deleted.
Rooms are independent: one room waiting on a rate limit does not hold up another.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from bot.domain.backoff import Backoff
from bot.domain.matrix_model import SendResult
from bot.store import kv, outbox
from bot.store.db import Database

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> SendResult: ...


async def txn_prefix(db: Database) -> str:
    """A random prefix chosen once per database, so a fresh database never reuses txn ids."""
    async with db.transaction() as conn:
        prefix = await kv.get(conn, kv.TXN_PREFIX)
        if prefix is None:
            prefix = "nw" + secrets.token_hex(6)
            await kv.put(conn, kv.TXN_PREFIX, prefix)
        return prefix


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        sender: Sender,
        *,
        prefix: str,
        concurrency: int = 8,
        max_attempts: int = 10,
        backoff_max_s: float = 60.0,
        idle_poll_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._sender = sender
        self._prefix = prefix
        self._slots = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._idle_poll_s = idle_poll_s
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._rooms: dict[str, asyncio.Task[None]] = {}
        self.sent = 0

    def wake(self) -> None:
        """Something was enqueued: look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                for room_id in await self._rooms_with_pending():
                    task = self._rooms.get(room_id)
                    if task is None or task.done():
                        self._rooms[room_id] = asyncio.create_task(
                            self._drain_room(room_id), name=f"outbox:{room_id}"
                        )
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_poll_s)
                except TimeoutError:
                    pass
        finally:
            for task in self._rooms.values():
                task.cancel()
            await asyncio.gather(*self._rooms.values(), return_exceptions=True)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (used at shutdown and in tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not await self._rooms_with_pending():
                return True
            self.wake()
            await asyncio.sleep(0.05)
        return False

    async def _rooms_with_pending(self) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT room_id FROM outbox WHERE status = 'pending'"
        )
        return [str(r[0]) for r in rows]

    async def _drain_room(self, room_id: str) -> None:
        backoff = Backoff(cap=self._backoff_max_s)
        async with self._slots:
            while True:
                rows = await self._pending_in(room_id)
                if not rows:
                    return
                for row in rows:
                    outcome = await self._deliver(row)
                    if outcome == "sent":
                        backoff.reset()
                    elif outcome == "retry":
                        # Keep the room's order: wait, then start again from its oldest row.
                        await self._sleep(backoff.next_delay())
                        break

    async def _deliver(self, row: outbox.OutboxRow) -> Literal["sent", "parked", "retry"]:
        txn_id = f"{self._prefix}-{row.id}"
        while True:
            result = await self._sender.send_event(row.room_id, row.event_type, row.content, txn_id)
            if result.ok:
                assert result.event_id is not None
                async with self._db.transaction() as conn:
                    await outbox.mark_sent(conn, row.id, result.event_id)
                self.sent += 1
                return "sent"
            if result.retry_after_ms is not None:
                log.info("rate limited in %s; waiting %d ms", row.room_id, result.retry_after_ms)
                await self._sleep(result.retry_after_ms / 1000)
                continue
            break
        log.warning("sending outbox row %d to %s failed: %s", row.id, row.room_id, result.error)
        if not result.permanent:
            return "retry"
        give_up = row.attempts + 1 >= self._max_attempts
        async with self._db.transaction() as conn:
            await outbox.record_attempt(conn, row.id, result.error or "", give_up=give_up)
        if give_up:
            log.error(
                "gave up on outbox row %d for %s after %d attempts",
                row.id,
                row.room_id,
                row.attempts + 1,
            )
            return "parked"
        return "retry"

    async def _pending_in(self, room_id: str) -> list[outbox.OutboxRow]:
        rows = await self._db.fetchall(
            "SELECT id, room_id, event_type, content, attempts FROM outbox"
            " WHERE status = 'pending' AND room_id = ? ORDER BY id LIMIT 200",
            (room_id,),
        )
        return [outbox.row_from_db(r) for r in rows]
