"""The outbox: replies decided inside an event's transaction, sent later (exactly-once, part 2).

The row id, prefixed with a random per-database string, is the Matrix
transaction id, so a resend after a crash is deduplicated by the homeserver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bot.store.clock import now_ms


@dataclass(frozen=True)
class OutboxRow:
    id: int
    room_id: str
    event_type: str
    content: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    sent: int
    failed: int


async def enqueue(
    conn: aiosqlite.Connection,
    room_id: str,
    event_type: str,
    content: dict[str, Any],
    *,
    source_event: str | None = None,
) -> int:
    cur = await conn.execute(
        "INSERT INTO outbox (room_id, event_type, content, source_event, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (room_id, event_type, json.dumps(content, ensure_ascii=False), source_event, now_ms()),
    )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


async def pending(conn: aiosqlite.Connection, limit: int = 500) -> list[OutboxRow]:
    cur = await conn.execute(
        "SELECT id, room_id, event_type, content, attempts FROM outbox"
        " WHERE status = 'pending' ORDER BY id LIMIT ?",
        (limit,),
    )
    return [row_from_db(r) for r in await cur.fetchall()]


def row_from_db(r: Any) -> OutboxRow:
    """Build a row from ``SELECT id, room_id, event_type, content, attempts``."""
    return OutboxRow(int(r[0]), str(r[1]), str(r[2]), json.loads(r[3]), int(r[4]))


async def mark_sent(conn: aiosqlite.Connection, row_id: int, event_id: str) -> None:
    await conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, event_id = ?, attempts = attempts + 1"
        " WHERE id = ?",
        (now_ms(), event_id, row_id),
    )


async def record_attempt(
    conn: aiosqlite.Connection, row_id: int, error: str, *, give_up: bool
) -> None:
    """Count a failed attempt; ``give_up`` parks the row as 'failed' (kept, never deleted)."""
    await conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
        " status = CASE WHEN ? THEN 'failed' ELSE status END WHERE id = ?",
        (error[:500], give_up, row_id),
    )


async def stats(conn: aiosqlite.Connection) -> OutboxStats:
    cur = await conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
    counts = {r[0]: int(r[1]) for r in await cur.fetchall()}
    return OutboxStats(counts.get("pending", 0), counts.get("sent", 0), counts.get("failed", 0))
