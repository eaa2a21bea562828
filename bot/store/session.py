"""The bot's Matrix login: restored on every start so the device id never changes."""

from __future__ import annotations

from bot.domain.matrix_model import BotSession
from bot.store.clock import now_ms
from bot.store.db import Connection


async def load(conn: Connection) -> BotSession | None:
    cur = await conn.execute("SELECT user_id, device_id, access_token FROM session WHERE id = 1")
    row = await cur.fetchone()
    if row is None:
        return None
    return BotSession(user_id=row[0], device_id=row[1], access_token=row[2])


async def save(conn: Connection, session: BotSession) -> None:
    await conn.execute(
        "INSERT INTO session (id, user_id, device_id, access_token, created_at)"
        " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " user_id = excluded.user_id, device_id = excluded.device_id,"
        " access_token = excluded.access_token",
        (session.user_id, session.device_id, session.access_token, now_ms()),
    )
