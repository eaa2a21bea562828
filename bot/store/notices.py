"""Repositories of alerts and wanted-person notices, their posts and their sightings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.db import Connection


@dataclass(frozen=True)
class Notice:
    id: int
    kind: str
    number: str
    station_id: str
    officer: str
    level: str | None
    title: str | None
    text: str
    scope: str
    case_id: int | None
    photo_row: int | None
    status: str
    expires_at: int
    reminded_at: int | None
    created_at: int
    close_note: str | None

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Post:
    room_id: str
    photo_row: int | None
    card_row: int


@dataclass(frozen=True)
class Sighting:
    reporter: str
    room_id: str
    text: str
    location: str | None
    attachment: dict[str, Any] | None
    late: bool
    at: int


_NOTICE = (
    "id, kind, number, station_id, officer, level, title, text, scope, case_id, photo_row,"
    " status, expires_at, reminded_at, created_at, close_note"
)


def _notice(r: Any) -> Notice:
    return Notice(*r)


async def create(
    conn: Connection,
    *,
    kind: str,
    station_id: str,
    officer: str,
    text: str,
    scope: str,
    expires_at: int,
    now: int,
    level: str | None = None,
    title: str | None = None,
    case_id: int | None = None,
) -> Notice:
    prefix = "A" if kind == "alert" else "W"
    cur = await conn.execute("SELECT COUNT(*) FROM notices WHERE kind = ?", (kind,))
    row = await cur.fetchone()
    number = f"{prefix}-{(int(row[0]) if row else 0) + 1}"
    cur = await conn.execute(
        "INSERT INTO notices (kind, number, station_id, officer, level, title, text, scope,"
        " case_id, status, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " 'active', ?, ?)",
        (kind, number, station_id, officer, level, title, text, scope, case_id, expires_at, now),
    )
    assert cur.lastrowid is not None
    found = await by_id(conn, int(cur.lastrowid))
    assert found is not None
    return found


async def by_id(conn: Connection, notice_id: int) -> Notice | None:
    cur = await conn.execute(f"SELECT {_NOTICE} FROM notices WHERE id = ?", (notice_id,))
    row = await cur.fetchone()
    return _notice(row) if row else None


async def by_number(conn: Connection, number: str) -> Notice | None:
    cur = await conn.execute(f"SELECT {_NOTICE} FROM notices WHERE number = ?", (number.upper(),))
    row = await cur.fetchone()
    return _notice(row) if row else None


async def active(conn: Connection, station_ids: Sequence[str]) -> list[Notice]:
    marks = ",".join("?" for _ in station_ids)
    cur = await conn.execute(
        f"SELECT {_NOTICE} FROM notices WHERE status = 'active' AND station_id IN ({marks})"
        " ORDER BY kind, id",
        tuple(station_ids),
    )
    return [_notice(r) for r in await cur.fetchall()]


async def all_notices(conn: Connection) -> list[Notice]:
    cur = await conn.execute(f"SELECT {_NOTICE} FROM notices ORDER BY id")
    return [_notice(r) for r in await cur.fetchall()]


async def set_photo(conn: Connection, notice_id: int, photo_row: int) -> None:
    await conn.execute("UPDATE notices SET photo_row = ? WHERE id = ?", (photo_row, notice_id))


async def add_post(
    conn: Connection, notice_id: int, room_id: str, card_row: int, photo_row: int | None
) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO notice_posts (notice_id, room_id, photo_row, card_row)"
        " VALUES (?, ?, ?, ?)",
        (notice_id, room_id, photo_row, card_row),
    )


async def posts(conn: Connection, notice_id: int) -> list[Post]:
    cur = await conn.execute(
        "SELECT room_id, photo_row, card_row FROM notice_posts WHERE notice_id = ?"
        " ORDER BY room_id",
        (notice_id,),
    )
    return [Post(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def notice_of_event(conn: Connection, event_id: str) -> Notice | None:
    """The notice whose photo or card is the Matrix event ``event_id``."""
    cur = await conn.execute(
        "SELECT p.notice_id FROM notice_posts p JOIN outbox o"
        " ON o.id = p.card_row OR o.id = p.photo_row WHERE o.event_id = ? LIMIT 1",
        (event_id,),
    )
    row = await cur.fetchone()
    return await by_id(conn, int(row[0])) if row else None


async def close(
    conn: Connection, notice_id: int, status: str, by: str, note: str | None, now: int
) -> None:
    await conn.execute(
        "UPDATE notices SET status = ?, closed_by = ?, closed_at = ?, close_note = ? WHERE id = ?",
        (status, by, now, note, notice_id),
    )


async def extend(conn: Connection, notice_id: int, expires_at: int) -> None:
    await conn.execute(
        "UPDATE notices SET expires_at = ?, reminded_at = NULL WHERE id = ?",
        (expires_at, notice_id),
    )


async def expired(conn: Connection, now: int) -> list[Notice]:
    cur = await conn.execute(
        f"SELECT {_NOTICE} FROM notices WHERE status = 'active' AND expires_at <= ?", (now,)
    )
    return [_notice(r) for r in await cur.fetchall()]


async def due_reminders(conn: Connection, now: int, before_ms: int) -> list[Notice]:
    cur = await conn.execute(
        f"SELECT {_NOTICE} FROM notices WHERE kind = 'wanted' AND status = 'active'"
        " AND reminded_at IS NULL AND expires_at <= ?",
        (now + before_ms,),
    )
    return [_notice(r) for r in await cur.fetchall()]


async def mark_reminded(conn: Connection, notice_id: int, now: int) -> None:
    await conn.execute("UPDATE notices SET reminded_at = ? WHERE id = ?", (now, notice_id))


async def add_sighting(
    conn: Connection,
    *,
    notice_id: int,
    reporter: str,
    room_id: str,
    event_id: str,
    text: str,
    location: str | None,
    attachment: dict[str, Any] | None,
    late: bool,
    now: int,
) -> bool:
    """False if this event was already recorded as a sighting."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO sightings (notice_id, reporter, room_id, event_id, text, location,"
        " attachment, late, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            notice_id,
            reporter,
            room_id,
            event_id,
            text,
            location,
            json.dumps(attachment) if attachment else None,
            int(late),
            now,
        ),
    )
    return bool(cur.rowcount)


async def sightings(conn: Connection, notice_id: int) -> list[Sighting]:
    cur = await conn.execute(
        "SELECT reporter, room_id, text, location, attachment, late, at FROM sightings"
        " WHERE notice_id = ? ORDER BY at",
        (notice_id,),
    )
    return [
        Sighting(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, bool(r[5]), r[6])
        for r in await cur.fetchall()
    ]


async def sighting_counts(conn: Connection, notice_ids: Sequence[int]) -> dict[int, int]:
    if not notice_ids:
        return {}
    marks = ",".join("?" for _ in notice_ids)
    cur = await conn.execute(
        f"SELECT notice_id, COUNT(*) FROM sightings WHERE notice_id IN ({marks})"
        " GROUP BY notice_id",
        tuple(notice_ids),
    )
    return {int(r[0]): int(r[1]) for r in await cur.fetchall()}


# ------------------------------------------------------- waiting for a photo


async def wait_for_photo(conn: Connection, officer: str, args: dict[str, Any], now: int) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO pending_photos (officer, args, created_at) VALUES (?, ?, ?)",
        (officer, json.dumps(args, ensure_ascii=False), now),
    )


async def take_pending_photo(conn: Connection, officer: str, since: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT args FROM pending_photos WHERE officer = ? AND created_at >= ?", (officer, since)
    )
    row = await cur.fetchone()
    await conn.execute("DELETE FROM pending_photos WHERE officer = ?", (officer,))
    if row is None:
        return None
    args: dict[str, Any] = json.loads(row[0])
    return args
