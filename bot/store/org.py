"""Repositories of the organisation: neighbourhoods, managed rooms, members, codes, requests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from bot.domain.org import JoinCode, JoinRequest, ManagedRoom, Member, Neighbourhood
from bot.domain.render import Language
from bot.store.clock import now_ms
from bot.store.db import Connection, in_parts, memoised, unit_memo


class AlreadyExists(Exception):
    pass


def _placeholders(values: Sequence[Any]) -> str:
    return ",".join("?" for _ in values)


# ------------------------------------------------------------ neighbourhoods

_NBH = "id, station_id, slug, name, language, welcome, officer"


def _nbh(r: Any) -> Neighbourhood:
    return Neighbourhood(int(r[0]), r[1], r[2], r[3], r[4], bool(r[5]), r[6])


async def add_neighbourhood(
    conn: Connection,
    *,
    station_id: str,
    slug: str,
    name: str,
    language: str,
    created_by: str,
) -> Neighbourhood:
    try:
        cur = await conn.execute(
            "INSERT INTO neighbourhoods (station_id, slug, name, language, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (station_id, slug, name, language, created_by, now_ms()),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(slug) from None
    assert cur.lastrowid is not None
    found = await neighbourhood_by_id(conn, int(cur.lastrowid))
    assert found is not None
    return found


async def neighbourhood_by_id(conn: Connection, nbh_id: int) -> Neighbourhood | None:
    async def load() -> Neighbourhood | None:
        cur = await conn.execute(f"SELECT {_NBH} FROM neighbourhoods WHERE id = ?", (nbh_id,))
        row = await cur.fetchone()
        return _nbh(row) if row else None

    return await memoised(conn, ("neighbourhood", nbh_id), load)


async def neighbourhood_by_slug(conn: Connection, slug: str) -> Neighbourhood | None:
    cur = await conn.execute(f"SELECT {_NBH} FROM neighbourhoods WHERE slug = ?", (slug,))
    row = await cur.fetchone()
    return _nbh(row) if row else None


async def neighbourhoods(
    conn: Connection, station_ids: Iterable[str] | None = None
) -> list[Neighbourhood]:
    if station_ids is None:
        cur = await conn.execute(f"SELECT {_NBH} FROM neighbourhoods ORDER BY slug")
    else:
        ids = list(station_ids)
        cur = await conn.execute(
            f"SELECT {_NBH} FROM neighbourhoods WHERE station_id IN ({_placeholders(ids)})"
            " ORDER BY slug",
            ids,
        )
    return [_nbh(r) for r in await cur.fetchall()]


async def update_neighbourhood(
    conn: Connection,
    nbh_id: int,
    *,
    language: str | None = None,
    welcome: bool | None = None,
    name: str | None = None,
    officer: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE neighbourhoods SET language = COALESCE(?, language),"
        " welcome = COALESCE(?, welcome), name = COALESCE(?, name),"
        " officer = COALESCE(?, officer) WHERE id = ?",
        (language, None if welcome is None else int(welcome), name, officer, nbh_id),
    )
    if language is not None:
        # The rooms speak the neighbourhood's language from now on.
        await conn.execute(
            "UPDATE rooms SET language = ? WHERE neighbourhood_id = ?", (language, nbh_id)
        )


# --------------------------------------------------------------------- rooms

_ROOM = (
    "room_id, kind, station_id, neighbourhood_id, audience, alias, name, language, encrypted,"
    " district, external"
)


def _room(r: Any) -> ManagedRoom:
    return ManagedRoom(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], bool(r[10])
    )


async def add_room(conn: Connection, room: ManagedRoom, created_by: str) -> None:
    await conn.execute(
        "INSERT INTO rooms (room_id, kind, station_id, neighbourhood_id, audience, alias, name,"
        " language, encrypted, district, external, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            room.room_id,
            room.kind,
            room.station_id,
            room.neighbourhood_id,
            room.audience,
            room.alias,
            room.name,
            room.language,
            int(room.encrypted),
            room.district,
            int(room.external),
            created_by,
            now_ms(),
        ),
    )


async def room(conn: Connection, room_id: str) -> ManagedRoom | None:
    async def load() -> ManagedRoom | None:
        cur = await conn.execute(f"SELECT {_ROOM} FROM rooms WHERE room_id = ?", (room_id,))
        row = await cur.fetchone()
        return _room(row) if row else None

    return await memoised(conn, ("room", room_id), load)


async def room_language(conn: Connection, room_id: str, default: Language) -> Language:
    """The language a managed room is configured for (``default`` for any other room)."""
    found = await room(conn, room_id)
    return found.language if found else default


async def room_for(conn: Connection, neighbourhood_id: int, audience: str) -> ManagedRoom | None:
    cur = await conn.execute(
        f"SELECT {_ROOM} FROM rooms WHERE neighbourhood_id = ? AND audience = ?",
        (neighbourhood_id, audience),
    )
    row = await cur.fetchone()
    return _room(row) if row else None


async def room_by_alias(conn: Connection, alias: str) -> ManagedRoom | None:
    cur = await conn.execute(f"SELECT {_ROOM} FROM rooms WHERE alias = ?", (alias,))
    row = await cur.fetchone()
    return _room(row) if row else None


async def officers_room(conn: Connection, station_id: str) -> ManagedRoom | None:
    async def load() -> ManagedRoom | None:
        cur = await conn.execute(
            f"SELECT {_ROOM} FROM rooms WHERE kind = 'officers' AND station_id = ?", (station_id,)
        )
        row = await cur.fetchone()
        return _room(row) if row else None

    return await memoised(conn, ("officers_room", station_id), load)


async def digest_room(
    conn: Connection, *, station_id: str | None = None, district: str | None = None
) -> ManagedRoom | None:
    if station_id is not None:
        sql, value = "station_id = ? AND district IS NULL", station_id
    else:
        sql, value = "district = ? AND station_id IS NULL", str(district)
    cur = await conn.execute(f"SELECT {_ROOM} FROM rooms WHERE kind = 'digest' AND {sql}", (value,))
    row = await cur.fetchone()
    return _room(row) if row else None


async def room_created_at(conn: Connection, room_id: str) -> int:
    cur = await conn.execute("SELECT created_at FROM rooms WHERE room_id = ?", (room_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def rooms(
    conn: Connection,
    *,
    station_ids: Iterable[str] | None = None,
    kind: str | None = None,
    neighbourhood_id: int | None = None,
) -> list[ManagedRoom]:
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if station_ids is not None:
        ids = list(station_ids)
        where.append(f"station_id IN ({_placeholders(ids)})")
        params.extend(ids)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if neighbourhood_id is not None:
        where.append("neighbourhood_id = ?")
        params.append(neighbourhood_id)
    cur = await conn.execute(
        f"SELECT {_ROOM} FROM rooms WHERE {' AND '.join(where)} ORDER BY kind, name", params
    )
    return [_room(r) for r in await cur.fetchall()]


async def set_rules_row(conn: Connection, room_id: str, row: int) -> None:
    """The outbox row of the room's pinned rules (its event id once sent)."""
    await conn.execute("UPDATE rooms SET rules_row = ? WHERE room_id = ?", (row, room_id))


async def rules_row(conn: Connection, room_id: str) -> int | None:
    cur = await conn.execute("SELECT rules_row FROM rooms WHERE room_id = ?", (room_id,))
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


async def set_encrypted(conn: Connection, room_id: str) -> None:
    await conn.execute("UPDATE rooms SET encrypted = 1 WHERE room_id = ?", (room_id,))


# ------------------------------------------------------------------- members

_MEMBER = (
    "id, room_id, user_id, name, role, unit, phone, status, via, verified_by, verified_at,"
    " invited_by, created_at, joined_at"
)


def _member(r: Any) -> Member:
    return Member(*r)


def _member_key(room_id: str, user_id: str) -> tuple[str, str, str]:
    return ("member", room_id, user_id)


def _verified_key(user_id: str) -> tuple[str, str]:
    return ("verified_anywhere", user_id)


async def prefetch_senders(conn: Connection, senders: Iterable[tuple[str, str]]) -> None:
    """Read the memberships of a /sync batch's (room, sender) pairs in one query, into the
    unit's memo: each event's ``member`` and ``is_verified_anywhere`` then costs nothing."""
    memo = unit_memo(conn)
    pairs = set(senders)
    if memo is None or not pairs:
        return
    users = sorted({user for _, user in pairs})
    found: dict[tuple[str, str], Member] = {}
    for part, marks in in_parts(users):
        cur = await conn.execute(f"SELECT {_MEMBER} FROM members WHERE user_id IN ({marks})", part)
        for row in await cur.fetchall():
            found[(row[1], row[2])] = _member(row)
    verified = {user for (_, user), m in found.items() if m.status == "verified"}
    for room_id, user_id in pairs:
        memo[_member_key(room_id, user_id)] = found.get((room_id, user_id))
    for user_id in users:
        memo[_verified_key(user_id)] = user_id in verified


async def member(conn: Connection, room_id: str, user_id: str) -> Member | None:
    async def load() -> Member | None:
        cur = await conn.execute(
            f"SELECT {_MEMBER} FROM members WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        )
        row = await cur.fetchone()
        return _member(row) if row else None

    return await memoised(conn, _member_key(room_id, user_id), load)


async def save_member(
    conn: Connection,
    *,
    room_id: str,
    user_id: str,
    status: str,
    via: str,
    name: str | None = None,
    role: str | None = None,
    unit: str | None = None,
    phone: str | None = None,
    verified_by: str | None = None,
    invited_by: str | None = None,
) -> Member:
    """Create or update the member record; given fields replace, missing ones are kept."""
    now = now_ms()
    verified_at = now if status == "verified" and verified_by else None
    await conn.execute(
        "INSERT INTO members (room_id, user_id, name, role, unit, phone, status, via, verified_by,"
        " verified_at, invited_by, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (room_id, user_id) DO UPDATE SET"
        " name = COALESCE(excluded.name, name), role = COALESCE(excluded.role, role),"
        " unit = COALESCE(excluded.unit, unit), phone = COALESCE(excluded.phone, phone),"
        " status = excluded.status, via = excluded.via,"
        " verified_by = COALESCE(excluded.verified_by, verified_by),"
        " verified_at = COALESCE(excluded.verified_at, verified_at),"
        " invited_by = COALESCE(excluded.invited_by, invited_by),"
        " updated_at = excluded.updated_at",
        (
            room_id,
            user_id,
            name,
            role,
            unit,
            phone,
            status,
            via,
            verified_by,
            verified_at,
            invited_by,
            now,
            now,
        ),
    )
    saved = await member(conn, room_id, user_id)
    assert saved is not None
    return saved


async def set_joined(conn: Connection, room_id: str, user_id: str, joined_at: int | None) -> None:
    await conn.execute(
        "UPDATE members SET joined_at = ?, updated_at = ? WHERE room_id = ? AND user_id = ?",
        (joined_at, now_ms(), room_id, user_id),
    )


async def set_member_status(conn: Connection, room_id: str, user_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE members SET status = ?, updated_at = ? WHERE room_id = ? AND user_id = ?",
        (status, now_ms(), room_id, user_id),
    )


async def members(
    conn: Connection, room_id: str, *, statuses: Iterable[str] | None = None
) -> list[Member]:
    wanted = list(statuses or ("verified", "unverified"))
    cur = await conn.execute(
        f"SELECT {_MEMBER} FROM members WHERE room_id = ? AND status IN ({_placeholders(wanted)})"
        " ORDER BY status DESC, name, user_id",
        (room_id, *wanted),
    )
    return [_member(r) for r in await cur.fetchall()]


async def memberships(conn: Connection, user_id: str) -> list[Member]:
    cur = await conn.execute(
        f"SELECT {_MEMBER} FROM members WHERE user_id = ? AND status IN ('verified', 'unverified')",
        (user_id,),
    )
    return [_member(r) for r in await cur.fetchall()]


async def is_verified_anywhere(conn: Connection, user_id: str) -> bool:
    async def load() -> bool:
        cur = await conn.execute(
            "SELECT 1 FROM members WHERE user_id = ? AND status = 'verified' LIMIT 1", (user_id,)
        )
        return await cur.fetchone() is not None

    return await memoised(conn, _verified_key(user_id), load)


# --------------------------------------------------------------------- codes

_CODE = "code, room_id, created_by, created_at, expires_at, max_uses, uses, revoked"


async def add_code(
    conn: Connection,
    *,
    code: str,
    room_id: str,
    created_by: str,
    expires_at: int,
    max_uses: int,
) -> None:
    await conn.execute(
        "INSERT INTO join_codes (code, room_id, created_by, created_at, expires_at, max_uses)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (code, room_id, created_by, now_ms(), expires_at, max_uses),
    )


async def code(conn: Connection, value: str) -> JoinCode | None:
    cur = await conn.execute(f"SELECT {_CODE} FROM join_codes WHERE code = ?", (value,))
    r = await cur.fetchone()
    return JoinCode(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) if r else None


async def use_code(conn: Connection, value: str) -> None:
    await conn.execute("UPDATE join_codes SET uses = uses + 1 WHERE code = ?", (value,))


# ------------------------------------------------------------------ requests

_REQ = (
    "id, user_id, room_id, source, code, reason, status, step, name, unit, approved_by, created_at"
)


def _request(r: Any) -> JoinRequest:
    return JoinRequest(*r)


async def add_request(
    conn: Connection,
    *,
    user_id: str,
    room_id: str,
    source: str,
    status: str,
    code: str | None = None,
    reason: str | None = None,
    step: str | None = None,
    approved_by: str | None = None,
) -> JoinRequest:
    cur = await conn.execute(
        "INSERT INTO join_requests (user_id, room_id, source, code, reason, status, step,"
        " approved_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (user_id, room_id, source, code, reason, status, step, approved_by, now_ms()),
    )
    assert cur.lastrowid is not None
    found = await request_by_id(conn, int(cur.lastrowid))
    assert found is not None
    return found


async def request_by_id(conn: Connection, request_id: int) -> JoinRequest | None:
    cur = await conn.execute(f"SELECT {_REQ} FROM join_requests WHERE id = ?", (request_id,))
    row = await cur.fetchone()
    return _request(row) if row else None


async def open_requests(
    conn: Connection,
    user_id: str,
    statuses: Iterable[str] = ("pending", "form"),
    room_ids: Iterable[str] | None = None,
) -> list[JoinRequest]:
    wanted = list(statuses)
    sql = (
        f"SELECT {_REQ} FROM join_requests WHERE user_id = ?"
        f" AND status IN ({_placeholders(wanted)})"
    )
    params: list[Any] = [user_id, *wanted]
    if room_ids is not None:
        rooms_ = list(room_ids)
        sql += f" AND room_id IN ({_placeholders(rooms_)})"
        params.extend(rooms_)
    cur = await conn.execute(sql + " ORDER BY id", params)
    return [_request(r) for r in await cur.fetchall()]


async def pending_requests(conn: Connection, room_ids: Iterable[str]) -> list[JoinRequest]:
    rooms_ = list(room_ids)
    cur = await conn.execute(
        f"SELECT {_REQ} FROM join_requests WHERE status = 'pending'"
        f" AND room_id IN ({_placeholders(rooms_)}) ORDER BY id",
        rooms_,
    )
    return [_request(r) for r in await cur.fetchall()]


async def update_request(
    conn: Connection,
    request_id: int,
    *,
    status: str | None = None,
    step: str | None = None,
    name: str | None = None,
    unit: str | None = None,
    approved_by: str | None = None,
    decided_by: str | None = None,
    note: str | None = None,
) -> None:
    decided_at = now_ms() if decided_by else None
    await conn.execute(
        "UPDATE join_requests SET status = COALESCE(?, status), step = ?,"
        " name = COALESCE(?, name), unit = COALESCE(?, unit),"
        " approved_by = COALESCE(?, approved_by), decided_by = COALESCE(?, decided_by),"
        " decided_at = COALESCE(?, decided_at), note = COALESCE(?, note) WHERE id = ?",
        (status, step, name, unit, approved_by, decided_by, decided_at, note, request_id),
    )


# ------------------------------------------------------------------ throttle


async def throttle_hit(conn: Connection, key: str, now: int) -> None:
    await conn.execute("INSERT INTO throttle (key, at) VALUES (?, ?)", (key, now))


async def throttle_count(conn: Connection, key: str, since: int) -> int:
    cur = await conn.execute(
        "SELECT COUNT(*) FROM throttle WHERE key = ? AND at >= ?", (key, since)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def throttle_prune(conn: Connection, before: int) -> None:
    await conn.execute("DELETE FROM throttle WHERE at < ?", (before,))
