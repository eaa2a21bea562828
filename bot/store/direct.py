"""Direct chats: which rooms are the bot's one-to-one conversations with whom.

A person may have several (they opened one, the bot opened another); every one of
them counts as a direct chat, and the newest is where the bot writes first.
"""

from __future__ import annotations

from bot.store.clock import now_ms
from bot.store.db import Connection, memoised


async def room_of(conn: Connection, user_id: str) -> str | None:
    """The newest direct chat with ``user_id``."""
    cur = await conn.execute(
        "SELECT room_id FROM direct_rooms WHERE user_id = ? ORDER BY created_at DESC, rowid DESC"
        " LIMIT 1",
        (user_id,),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def user_of(conn: Connection, room_id: str) -> str | None:
    """The person a direct chat is with, or None when ``room_id`` is not a direct chat."""

    async def load() -> str | None:
        cur = await conn.execute("SELECT user_id FROM direct_rooms WHERE room_id = ?", (room_id,))
        row = await cur.fetchone()
        return str(row[0]) if row else None

    return await memoised(conn, ("direct_user", room_id), load)


async def remember(conn: Connection, user_id: str, room_id: str) -> None:
    """Record a direct chat with ``user_id`` (it becomes the newest)."""
    await conn.execute(
        "INSERT OR REPLACE INTO direct_rooms (room_id, user_id, created_at) VALUES (?, ?, ?)",
        (room_id, user_id, now_ms()),
    )


async def forget_room(conn: Connection, room_id: str) -> None:
    """The person left: that room is no direct chat any more."""
    await conn.execute("DELETE FROM direct_rooms WHERE room_id = ?", (room_id,))
