"""Rooms whose settings must be checked against policy (someone changed them by hand)."""

from __future__ import annotations

from bot.store.db import Connection


async def queue_reconcile(conn: Connection, room_id: str, now: int) -> None:
    await conn.execute(
        "INSERT INTO reconcile_queue (room_id, requested_at) VALUES (?, ?)"
        " ON CONFLICT (room_id) DO UPDATE SET requested_at = excluded.requested_at",
        (room_id, now),
    )


async def take_reconcile_queue(conn: Connection) -> list[str]:
    """Everything queued, removed from the queue in the same transaction."""
    cur = await conn.execute("SELECT room_id FROM reconcile_queue ORDER BY requested_at")
    rooms = [str(r[0]) for r in await cur.fetchall()]
    await conn.execute("DELETE FROM reconcile_queue")
    return rooms


async def pending(conn: Connection) -> bool:
    cur = await conn.execute("SELECT 1 FROM reconcile_queue LIMIT 1")
    return await cur.fetchone() is not None
