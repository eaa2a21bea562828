"""Direct chats: which room is the bot's one-to-one conversation with which user."""

from __future__ import annotations

from bot.store.clock import now_ms
from bot.store.db import Connection


async def room_of(conn: Connection, user_id: str) -> str | None:
    cur = await conn.execute("SELECT room_id FROM direct_rooms WHERE user_id = ?", (user_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def user_of(conn: Connection, room_id: str) -> str | None:
    """The person a direct chat is with, or None when ``room_id`` is not a direct chat."""
    cur = await conn.execute("SELECT user_id FROM direct_rooms WHERE room_id = ?", (room_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def remember(conn: Connection, user_id: str, room_id: str) -> None:
    """Record (or replace) the direct chat with ``user_id``."""
    await conn.execute(
        "DELETE FROM direct_rooms WHERE room_id = ? OR user_id = ?", (room_id, user_id)
    )
    await conn.execute(
        "INSERT INTO direct_rooms (user_id, room_id, created_at) VALUES (?, ?, ?)",
        (user_id, room_id, now_ms()),
    )


async def forget_room(conn: Connection, room_id: str) -> None:
    """The person left: the next direct message opens a new chat."""
    await conn.execute("DELETE FROM direct_rooms WHERE room_id = ?", (room_id,))
