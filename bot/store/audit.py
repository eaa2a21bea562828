"""The audit trail: who did (or tried to do) what, when."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.store.clock import now_ms
from bot.store.db import Connection


@dataclass(frozen=True)
class AuditEntry:
    at: int
    actor: str
    action: str
    target: str | None
    room_id: str | None
    detail: dict[str, Any]


async def record(
    conn: Connection,
    actor: str,
    action: str,
    *,
    target: str | None = None,
    room_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, room_id, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now_ms(), actor, action, target, room_id, json.dumps(detail or {}, ensure_ascii=False)),
    )


async def recent(conn: Connection, limit: int = 50) -> list[AuditEntry]:
    cur = await conn.execute(
        "SELECT at, actor, action, target, room_id, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}"))
        for r in await cur.fetchall()
    ]
