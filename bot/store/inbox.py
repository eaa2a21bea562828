"""The inbox: which Matrix events have already been handled (exactly-once, part 1)."""

from __future__ import annotations

from bot.store.clock import now_ms
from bot.store.db import Connection


async def is_processed(conn: Connection, event_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,))
    return await cur.fetchone() is not None


async def mark_processed(
    conn: Connection, event_id: str, room_id: str, sender: str, outcome: str
) -> None:
    await conn.execute(
        "INSERT INTO processed_events (event_id, room_id, sender, outcome, processed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (event_id, room_id, sender, outcome, now_ms()),
    )


async def count(conn: Connection) -> int:
    cur = await conn.execute("SELECT COUNT(*) FROM processed_events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
