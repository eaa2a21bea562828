"""Repositories of task forces: officers of several stations (and servers) on linked cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.store.db import Connection


@dataclass(frozen=True)
class TaskForce:
    id: int
    room_id: str | None
    name: str
    station_id: str
    status: str
    created_by: str
    created_at: int

    @property
    def number(self) -> str:
        return f"TF-{self.id}"

    @property
    def open(self) -> bool:
        return self.status == "open"


_COLUMNS = "id, room_id, name, station_id, status, created_by, created_at"


def _taskforce(row: Any) -> TaskForce:
    return TaskForce(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def parse_number(text: str) -> int | None:
    """``TF-3`` / ``tf3`` / ``3`` → 3."""
    digits = text.strip().upper().removeprefix("TF").lstrip("-")
    return int(digits) if digits.isdigit() and 0 < len(digits) < 10 else None


async def create(
    conn: Connection, *, name: str, station_id: str, created_by: str, now: int
) -> TaskForce:
    cur = await conn.execute(
        "INSERT INTO taskforces (name, station_id, created_by, created_at) VALUES (?, ?, ?, ?)",
        (name, station_id, created_by, now),
    )
    found = await by_id(conn, int(cur.lastrowid or 0))
    assert found is not None
    return found


async def by_id(conn: Connection, taskforce_id: int) -> TaskForce | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM taskforces WHERE id = ?", (taskforce_id,))
    row = await cur.fetchone()
    return _taskforce(row) if row else None


async def by_room(conn: Connection, room_id: str) -> TaskForce | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM taskforces WHERE room_id = ?", (room_id,))
    row = await cur.fetchone()
    return _taskforce(row) if row else None


async def of_stations(conn: Connection, station_ids: list[str]) -> list[TaskForce]:
    marks = ", ".join("?" for _ in station_ids) or "NULL"
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM taskforces WHERE station_id IN ({marks}) AND status = 'open'"
        " ORDER BY id",
        tuple(station_ids),
    )
    return [_taskforce(r) for r in await cur.fetchall()]


async def set_room(conn: Connection, taskforce_id: int, room_id: str) -> None:
    await conn.execute("UPDATE taskforces SET room_id = ? WHERE id = ?", (room_id, taskforce_id))


async def close(conn: Connection, taskforce_id: int, closed_by: str, now: int) -> None:
    await conn.execute(
        "UPDATE taskforces SET status = 'closed', closed_by = ?, closed_at = ? WHERE id = ?",
        (closed_by, now, taskforce_id),
    )


async def add_member(
    conn: Connection, taskforce_id: int, user_id: str, added_by: str, now: int
) -> bool:
    """Returns False if they were a member already."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO taskforce_members (taskforce_id, user_id, added_by, added_at)"
        " VALUES (?, ?, ?, ?)",
        (taskforce_id, user_id, added_by, now),
    )
    return bool(cur.rowcount)


async def members(conn: Connection, taskforce_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT user_id FROM taskforce_members WHERE taskforce_id = ? ORDER BY added_at, user_id",
        (taskforce_id,),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def link_case(
    conn: Connection, taskforce_id: int, case_id: int, linked_by: str, now: int
) -> bool:
    """Returns False if the case was linked already."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO taskforce_cases (taskforce_id, case_id, linked_by, linked_at)"
        " VALUES (?, ?, ?, ?)",
        (taskforce_id, case_id, linked_by, now),
    )
    return bool(cur.rowcount)


async def open_for_case(conn: Connection, case_id: int) -> list[TaskForce]:
    """The open task forces (with a room) a case is linked to."""
    cur = await conn.execute(
        f"SELECT {', '.join('t.' + c.strip() for c in _COLUMNS.split(','))}"
        " FROM taskforces t JOIN taskforce_cases l ON l.taskforce_id = t.id"
        " WHERE l.case_id = ? AND t.status = 'open' AND t.room_id IS NOT NULL ORDER BY t.id",
        (case_id,),
    )
    return [_taskforce(r) for r in await cur.fetchall()]
