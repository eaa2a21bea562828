"""Pinned identities (whose master key the bot trusts) and events waiting for their keys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.db import Connection


@dataclass(frozen=True)
class Identity:
    user_id: str
    master_key: str
    changed_to: str | None


async def identity(conn: Connection, user_id: str) -> Identity | None:
    cur = await conn.execute(
        "SELECT user_id, master_key, changed_to FROM identities WHERE user_id = ?", (user_id,)
    )
    row = await cur.fetchone()
    return Identity(row[0], row[1], row[2]) if row else None


async def pin(conn: Connection, user_id: str, master_key: str, now: int) -> None:
    """Trust ``master_key`` as ``user_id``'s identity (first sight, or an officer's !trust)."""
    await conn.execute(
        "INSERT INTO identities (user_id, master_key, pinned_at) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET master_key = excluded.master_key,"
        " pinned_at = excluded.pinned_at, changed_to = NULL, changed_at = NULL",
        (user_id, master_key, now),
    )


async def generation(conn: Connection) -> int:
    """Grows whenever an identity is (re)pinned: trust decisions must be taken again."""
    cur = await conn.execute("SELECT COALESCE(MAX(pinned_at), 0) FROM identities")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def mark_changed(conn: Connection, user_id: str, new_master: str, now: int) -> bool:
    """Record that the identity changed; True the first time this new key is seen."""
    cur = await conn.execute(
        "UPDATE identities SET changed_to = ?, changed_at = ? WHERE user_id = ?"
        " AND (changed_to IS NULL OR changed_to != ?)",
        (new_master, now, user_id, new_master),
    )
    return bool(cur.rowcount)


async def changed(conn: Connection) -> list[Identity]:
    cur = await conn.execute(
        "SELECT user_id, master_key, changed_to FROM identities WHERE changed_to IS NOT NULL"
    )
    return [Identity(r[0], r[1], r[2]) for r in await cur.fetchall()]


# ----------------------------------------------------------- waiting events


async def keep(
    conn: Connection, event_id: str, room_id: str, sender: str, raw: dict[str, Any], now: int
) -> bool:
    cur = await conn.execute(
        "INSERT OR IGNORE INTO undecrypted (event_id, room_id, sender, raw, first_seen)"
        " VALUES (?, ?, ?, ?, ?)",
        (event_id, room_id, sender, json.dumps(raw), now),
    )
    return bool(cur.rowcount)


async def waiting(conn: Connection, limit: int = 200) -> list[tuple[str, str, dict[str, Any]]]:
    """(room, event id, raw event) still waiting for a key, oldest first."""
    cur = await conn.execute(
        "SELECT room_id, event_id, raw FROM undecrypted WHERE gave_up_at IS NULL"
        " ORDER BY first_seen LIMIT ?",
        (limit,),
    )
    return [(r[0], r[1], json.loads(r[2])) for r in await cur.fetchall()]


async def resolved(conn: Connection, event_ids: Sequence[str]) -> None:
    """These events are readable now: none of them waits for a key any more."""
    await conn.executemany("DELETE FROM undecrypted WHERE event_id = ?", [(e,) for e in event_ids])


async def overdue(conn: Connection, before: int) -> list[tuple[str, str, str]]:
    """(event id, room, sender) unreadable since before ``before``, not yet given up."""
    cur = await conn.execute(
        "SELECT event_id, room_id, sender FROM undecrypted WHERE gave_up_at IS NULL"
        " AND first_seen < ?",
        (before,),
    )
    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def give_up(conn: Connection, event_id: str, now: int) -> None:
    await conn.execute("UPDATE undecrypted SET gave_up_at = ? WHERE event_id = ?", (now, event_id))


async def counts(conn: Connection) -> tuple[int, int]:
    """(waiting for a key, given up)."""
    cur = await conn.execute(
        "SELECT SUM(gave_up_at IS NULL), SUM(gave_up_at IS NOT NULL) FROM undecrypted"
    )
    row = await cur.fetchone()
    return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
