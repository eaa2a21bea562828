"""The inbox: which Matrix events have already been handled (exactly-once, part 1)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.clock import now_ms
from bot.store.db import Connection, in_parts


async def is_processed(conn: Connection, event_id: str) -> bool:
    return bool(await processed_among(conn, [event_id]))


async def processed_among(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` were already handled (one query for a whole /sync batch)."""
    found: set[str] = set()
    for part, marks in in_parts(event_ids):
        cur = await conn.execute(
            f"SELECT event_id FROM processed_events WHERE event_id IN ({marks})", part
        )
        found.update(str(row[0]) for row in await cur.fetchall())
    return found


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
