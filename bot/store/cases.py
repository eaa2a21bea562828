"""Repositories of the case log: cases, their history, links, attachments and the events
that point at them (the tip, the bot's acknowledgement, notices)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from bot.domain.cases import Case, CaseEvent, case_number, station_prefix
from bot.store.db import Connection

_CASE = (
    "id, station_id, number, source, reporter, reporter_name, anonymous, neighbourhood_id,"
    " room_id, event_id, category, urgent, location, identifiers, text, text_truncated, status,"
    " assignee, outcome, referred_to, duplicate_of, created_at, acknowledged_at, closed_at"
)


def _case(r: Any) -> Case:
    values = list(r)
    values[6] = bool(values[6])
    values[11] = bool(values[11])
    values[13] = tuple(json.loads(values[13] or "[]"))
    values[15] = bool(values[15])
    return Case(*values)


@dataclass(frozen=True)
class NewCase:
    station_id: str
    year: int
    source: str
    category: str
    text: str
    created_by: str
    reporter: str | None = None
    reporter_name: str | None = None
    anonymous: bool = False
    neighbourhood_id: int | None = None
    room_id: str | None = None
    event_id: str | None = None
    urgent: bool = False
    location: str | None = None
    identifiers: Sequence[str] = ()
    text_truncated: bool = False
    confidence: float | None = None
    assignee: str | None = None
    prefix: str | None = None


_AS_GIVEN = (
    *("station_id", "source", "reporter", "reporter_name", "anonymous", "neighbourhood_id"),
    *("room_id", "event_id", "category", "urgent", "location", "text", "text_truncated"),
    "assignee",
)
"""The fields of a new case stored as the ``NewCase`` gives them (so the case needs no
reading back)."""
_UNSET_WHEN_NEW: dict[str, Any] = dict.fromkeys(
    ("outcome", "referred_to", "duplicate_of", "acknowledged_at", "closed_at")
)


async def create(conn: Connection, new: NewCase, now: int) -> Case:
    cur = await conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM cases WHERE station_id = ? AND year = ?",
        (new.station_id, new.year),
    )
    row = await cur.fetchone()
    seq = int(row[0]) if row else 1
    number = case_number(new.prefix or station_prefix(new.station_id), new.year, seq)
    cur = await conn.execute(
        "INSERT INTO cases (station_id, year, seq, number, source, reporter, reporter_name,"
        " anonymous, neighbourhood_id, room_id, event_id, category, urgent, location,"
        " identifiers, text, text_truncated, confidence, status, assignee, created_by,"
        " created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?)",
        (
            new.station_id,
            new.year,
            seq,
            number,
            new.source,
            new.reporter,
            new.reporter_name,
            int(new.anonymous),
            new.neighbourhood_id,
            new.room_id,
            new.event_id,
            new.category,
            int(new.urgent),
            new.location,
            json.dumps(list(new.identifiers), ensure_ascii=False),
            new.text,
            int(new.text_truncated),
            new.confidence,
            new.assignee,
            new.created_by,
            now,
            now,
        ),
    )
    assert cur.lastrowid is not None
    case = Case(
        id=int(cur.lastrowid),
        number=number,
        status="new",
        created_at=now,
        **_UNSET_WHEN_NEW,
        **{name: getattr(new, name) for name in _AS_GIVEN},
        identifiers=tuple(new.identifiers),
    )
    await add_event(conn, case.id, new.created_by, "created", None, "new", None, now)
    return case


async def by_id(conn: Connection, case_id: int) -> Case | None:
    cur = await conn.execute(f"SELECT {_CASE} FROM cases WHERE id = ?", (case_id,))
    row = await cur.fetchone()
    return _case(row) if row else None


async def by_number(conn: Connection, number: str) -> Case | None:
    cur = await conn.execute(f"SELECT {_CASE} FROM cases WHERE number = ?", (number.upper(),))
    row = await cur.fetchone()
    return _case(row) if row else None


async def by_seq(conn: Connection, station_ids: Sequence[str], year: int, seq: int) -> list[Case]:
    marks = ",".join("?" for _ in station_ids)
    cur = await conn.execute(
        f"SELECT {_CASE} FROM cases WHERE station_id IN ({marks}) AND year = ? AND seq = ?",
        (*station_ids, year, seq),
    )
    return [_case(r) for r in await cur.fetchall()]


async def by_event(conn: Connection, event_id: str) -> Case | None:
    cur = await conn.execute(f"SELECT {_CASE} FROM cases WHERE event_id = ?", (event_id,))
    row = await cur.fetchone()
    return _case(row) if row else None


async def logged(conn: Connection, event_id: str) -> bool:
    """Whether the message ``event_id`` is already some case's tip."""
    cur = await conn.execute("SELECT 1 FROM cases WHERE event_id = ?", (event_id,))
    return await cur.fetchone() is not None


async def update(conn: Connection, case_id: int, now: int, **fields: Any) -> None:
    allowed = {
        "status",
        "assignee",
        "outcome",
        "referred_to",
        "duplicate_of",
        "category",
        "urgent",
        "acknowledged_at",
        "investigating_at",
        "closed_at",
        "reopened_at",
        "location",
    }
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {unknown}")
    assignments = ", ".join(f"{name} = ?" for name in fields)
    await conn.execute(
        f"UPDATE cases SET {assignments}, updated_at = ? WHERE id = ?",
        (*fields.values(), now, case_id),
    )


async def add_event(
    conn: Connection,
    case_id: int,
    actor: str,
    action: str,
    old: str | None,
    new: str | None,
    note: str | None,
    now: int,
) -> None:
    # The station and, for a first response, its delay are copied onto the history row:
    # digests count a district's activity from this table alone, without a join.
    await conn.execute(
        "INSERT INTO case_events (case_id, at, actor, action, old, new, note, station_id,"
        " response_ms) SELECT ?, ?, ?, ?, ?, ?, ?, station_id,"
        " CASE WHEN ? = 'status' AND ? = 'new' THEN ? - created_at END FROM cases WHERE id = ?",
        (case_id, now, actor, action, old, new, note, action, old, now, case_id),
    )


async def history(conn: Connection, case_id: int) -> list[CaseEvent]:
    cur = await conn.execute(
        "SELECT at, actor, action, old, new, note FROM case_events WHERE case_id = ? ORDER BY id",
        (case_id,),
    )
    return [CaseEvent(*r) for r in await cur.fetchall()]


async def search(
    conn: Connection,
    *,
    station_ids: Sequence[str],
    statuses: Iterable[str] | None = None,
    urgent: bool | None = None,
    assignee: str | None = None,
    neighbourhood_id: int | None = None,
    category: str | None = None,
    room_id: str | None = None,
    since: int | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[Case], int]:
    """Cases matching the filters, newest first, and how many match in all."""
    where = [f"station_id IN ({','.join('?' for _ in station_ids)})"]
    params: list[Any] = list(station_ids)
    if statuses is not None:
        wanted = list(statuses)
        where.append(f"status IN ({','.join('?' for _ in wanted)})")
        params.extend(wanted)
    if urgent is not None:
        where.append("urgent = ?")
        params.append(int(urgent))
    for column, value in (
        ("assignee", assignee),
        ("neighbourhood_id", neighbourhood_id),
        ("category", category),
        ("room_id", room_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    clause = " AND ".join(where)
    cur = await conn.execute(f"SELECT COUNT(*) FROM cases WHERE {clause}", params)
    total_row = await cur.fetchone()
    cur = await conn.execute(
        f"SELECT {_CASE} FROM cases WHERE {clause} ORDER BY created_at DESC, id DESC"
        " LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [_case(r) for r in await cur.fetchall()], int(total_row[0]) if total_row else 0


async def of_taskforce(conn: Connection, taskforce_id: int) -> list[Case]:
    """The cases linked to a task force, in the order they were linked (one query)."""
    cur = await conn.execute(
        f"SELECT {_CASE} FROM cases JOIN taskforce_cases ON case_id = id"
        " WHERE taskforce_id = ? ORDER BY linked_at",
        (taskforce_id,),
    )
    return [_case(r) for r in await cur.fetchall()]


class PlacedCase(NamedTuple):
    id: int
    number: str
    location: str


async def recent_similar(
    conn: Connection,
    *,
    neighbourhood_id: int,
    category: str,
    since: int,
    exclude: int,
) -> list[PlacedCase]:
    """The 20 newest cases of the neighbourhood and category since ``since`` that name a
    place (the candidates for a possible duplicate), without ``exclude``."""
    cur = await conn.execute(
        "SELECT id, number, location FROM cases WHERE neighbourhood_id = ? AND category = ?"
        " AND created_at >= ? AND id != ? AND location IS NOT NULL"
        " ORDER BY created_at DESC LIMIT 20",
        (neighbourhood_id, category, since, exclude),
    )
    return [PlacedCase(int(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]


_LINK = (
    "INSERT OR IGNORE INTO case_links (case_id, other_id, kind, created_by, created_at)"
    " VALUES (?, ?, ?, ?, ?)"
)


async def link(conn: Connection, case_id: int, other_id: int, kind: str, by: str, now: int) -> bool:
    """Link two cases (both directions); False if they were already linked."""
    cur = await conn.execute(_LINK, (case_id, other_id, kind, by, now))
    await conn.execute(_LINK, (other_id, case_id, kind, by, now))
    return bool(cur.rowcount)


async def link_all(
    conn: Connection, case_id: int, other_ids: Sequence[int], kind: str, by: str, now: int
) -> None:
    """Link a case to each of ``other_ids`` (both directions) in one statement."""
    await conn.executemany(
        _LINK,
        [
            pair
            for other in other_ids
            for pair in ((case_id, other, kind, by, now), (other, case_id, kind, by, now))
        ],
    )


async def links(conn: Connection, case_id: int) -> list[tuple[str, str]]:
    """(other case number, kind) for every case linked to this one."""
    cur = await conn.execute(
        "SELECT c.number, l.kind FROM case_links l JOIN cases c ON c.id = l.other_id"
        " WHERE l.case_id = ? ORDER BY c.id",
        (case_id,),
    )
    return [(str(r[0]), str(r[1])) for r in await cur.fetchall()]


async def attach(
    conn: Connection,
    case_id: int,
    content: dict[str, Any],
    event_id: str,
    sender: str,
    now: int,
) -> None:
    info = content.get("info")
    await conn.execute(
        "INSERT INTO case_attachments (case_id, event_id, sender, msgtype, body, url, file,"
        " info, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            case_id,
            event_id,
            sender,
            str(content.get("msgtype", "")),
            str(content.get("body", ""))[:500],
            content.get("url") if isinstance(content.get("url"), str) else None,
            json.dumps(content["file"]) if isinstance(content.get("file"), dict) else None,
            json.dumps(info) if isinstance(info, dict) else None,
            now,
        ),
    )


async def attachments(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT msgtype, body, url, file, info, sender, at FROM case_attachments"
        " WHERE case_id = ? ORDER BY id",
        (case_id,),
    )
    return [
        {
            "msgtype": r[0],
            "body": r[1],
            "url": r[2],
            "file": json.loads(r[3]) if r[3] else None,
            "info": json.loads(r[4]) if r[4] else {},
            "sender": r[5],
            "at": r[6],
        }
        for r in await cur.fetchall()
    ]


# ------------------------------------------------- events that point at cases


def row_ref(row: int) -> str:
    return f"row:{row}"


async def remember_message(conn: Connection, ref: str, case_id: int, role: str) -> None:
    """``ref`` is an incoming event id, or ``row_ref(outbox row)`` for the bot's own message."""
    await conn.execute(
        "INSERT OR REPLACE INTO case_messages (event_ref, case_id, role) VALUES (?, ?, ?)",
        (ref, case_id, role),
    )


async def case_of_event(conn: Connection, event_id: str) -> tuple[Case, str] | None:
    """The case an event belongs to (a tip, or one of the bot's messages about it), with role."""
    cur = await conn.execute(
        "SELECT case_id, role FROM case_messages WHERE event_ref = ?", (event_id,)
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT m.case_id, m.role FROM outbox o JOIN case_messages m"
            " ON m.event_ref = 'row:' || o.id WHERE o.event_id = ?",
            (event_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    case = await by_id(conn, int(row[0]))
    return (case, str(row[1])) if case else None


# ------------------------------------------------------------------ reporters


async def pseudonym(conn: Connection, station_id: str, user_id: str) -> int:
    """A stable number per reporter and station ("Reporter #17") for anonymous tips."""
    cur = await conn.execute(
        "SELECT pseudonym FROM reporters WHERE station_id = ? AND user_id = ?",
        (station_id, user_id),
    )
    row = await cur.fetchone()
    if row:
        return int(row[0])
    cur = await conn.execute(
        "SELECT COALESCE(MAX(pseudonym), 0) + 1 FROM reporters WHERE station_id = ?",
        (station_id,),
    )
    next_row = await cur.fetchone()
    number = int(next_row[0]) if next_row else 1
    await conn.execute(
        "INSERT INTO reporters (station_id, user_id, pseudonym) VALUES (?, ?, ?)",
        (station_id, user_id, number),
    )
    return number
