"""The outbox: every write the bot makes to Matrix, decided inside a transaction, performed later.

Rows are kept in *lanes* (a room id, ``dm:@user`` for a direct chat that may not
exist yet, ``create:<key>`` for a room to be created); the worker performs a
lane's rows strictly in order and lanes independently. Messages and redactions
carry a transaction id (``<per-database prefix>-<row id>``), so a resend after a
crash is deduplicated by the homeserver; the other kinds are idempotent by
nature (state events, invites, kicks, joins) or made so (room creation adopts
the room that already carries its alias).

A row's content may refer to the result of an earlier row in the same lane with
``"@@outbox:<id>"`` (the event id of the rules message to pin, the ``mxc://`` of
an upload to show); the worker substitutes it at send time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.store.clock import now_ms
from bot.store.db import Connection

Kind = Literal[
    "message",
    "state",
    "redact",
    "invite",
    "kick",
    "join",
    "leave",
    "upload",
    "rehost",
    "create_room",
]
REF_PREFIX = "@@outbox:"


def ref(row_id: int, key: str | None = None) -> str:
    """A placeholder for the result of outbox row ``row_id`` (see module docstring);
    with ``key``, one field of a JSON result (e.g. the ``url`` of a re-hosted photo)."""
    return f"{REF_PREFIX}{row_id}" + (f"#{key}" if key else "")


def dm_lane(user_id: str) -> str:
    return f"dm:{user_id}"


@dataclass(frozen=True)
class OutboxRow:
    id: int
    lane: str
    kind: Kind
    room_id: str | None
    event_type: str | None
    state_key: str | None
    target: str | None
    content: dict[str, Any]
    media: bytes | None
    attempts: int
    on_done: str | None = None
    on_done_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    sent: int
    failed: int


_COLUMNS = (
    "id, lane, kind, room_id, event_type, state_key, target, content, media, attempts,"
    " on_done, on_done_args"
)


async def enqueue(
    conn: Connection,
    room_id: str | None,
    event_type: str | None = "m.room.message",
    content: dict[str, Any] | None = None,
    *,
    kind: Kind = "message",
    lane: str | None = None,
    state_key: str | None = None,
    target: str | None = None,
    media: bytes | None = None,
    source_event: str | None = None,
    on_done: str | None = None,
    on_done_args: dict[str, Any] | None = None,
) -> int:
    """Queue one action; returns its row id (usable in ``ref()`` by later rows)."""
    lane = lane or room_id
    if lane is None:
        raise ValueError("an outbox row needs a room or a lane")
    cur = await conn.execute(
        "INSERT INTO outbox (lane, kind, room_id, event_type, state_key, target, content, media,"
        " source_event, on_done, on_done_args, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            lane,
            kind,
            room_id,
            event_type,
            state_key,
            target,
            json.dumps(content or {}, ensure_ascii=False),
            media,
            source_event,
            on_done,
            json.dumps(on_done_args, ensure_ascii=False) if on_done_args else "{}",
            now_ms(),
        ),
    )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


async def pending(conn: Connection, limit: int = 500) -> list[OutboxRow]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' ORDER BY id LIMIT ?", (limit,)
    )
    return [row_from_db(r) for r in await cur.fetchall()]


async def pending_in_lane(conn: Connection, lane: str, limit: int = 200) -> list[OutboxRow]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' AND lane = ? ORDER BY id LIMIT ?",
        (lane, limit),
    )
    return [row_from_db(r) for r in await cur.fetchall()]


async def lane_pending(conn: Connection, lane: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM outbox WHERE status = 'pending' AND lane = ? LIMIT 1", (lane,)
    )
    return await cur.fetchone() is not None


async def lanes_with_pending(conn: Connection) -> list[str]:
    cur = await conn.execute("SELECT DISTINCT lane FROM outbox WHERE status = 'pending'")
    return [str(r[0]) for r in await cur.fetchall()]


def row_from_db(r: Any) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]),
        lane=str(r[1]),
        kind=r[2],
        room_id=r[3],
        event_type=r[4],
        state_key=r[5],
        target=r[6],
        content=json.loads(r[7]),
        media=r[8],
        attempts=int(r[9]),
        on_done=r[10],
        on_done_args=json.loads(r[11] or "{}"),
    )


async def result_of(conn: Connection, row_id: int) -> tuple[str, str | None]:
    """(status, result) of a row: the result is an event id, room id or mxc URI once sent."""
    cur = await conn.execute("SELECT status, event_id FROM outbox WHERE id = ?", (row_id,))
    row = await cur.fetchone()
    if row is None:
        return ("missing", None)
    return (str(row[0]), row[1])


async def mark_sent(
    conn: Connection, row_id: int, result: str | None, room_id: str | None = None
) -> None:
    """Record success; the media blob is dropped once uploaded (the homeserver has it)."""
    await conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, event_id = ?, attempts = attempts + 1,"
        " room_id = COALESCE(room_id, ?), media = NULL WHERE id = ?",
        (now_ms(), result, room_id, row_id),
    )


async def record_attempt(conn: Connection, row_id: int, error: str, *, give_up: bool) -> None:
    """Count a failed attempt; ``give_up`` parks the row as 'failed' (kept, never deleted)."""
    await conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
        " status = CASE WHEN ? THEN 'failed' ELSE status END WHERE id = ?",
        (error[:500], give_up, row_id),
    )


async def stats(conn: Connection) -> OutboxStats:
    cur = await conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
    counts = {r[0]: int(r[1]) for r in await cur.fetchall()}
    return OutboxStats(counts.get("pending", 0), counts.get("sent", 0), counts.get("failed", 0))


async def sent_event_id(conn: Connection, row_id: int) -> str | None:
    status, result = await result_of(conn, row_id)
    return result if status == "sent" else None
