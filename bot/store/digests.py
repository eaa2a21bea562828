"""The digest's figures, computed by SQLite (indexed range scans, not row-by-row Python),
and the record of which digest was sent where for which period."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from bot.domain.digest import (
    Counted,
    DigestFigures,
    NoticeLine,
    OfficerActivity,
    Period,
    StaleCase,
    median_seconds,
)
from bot.store.db import Connection

LIST_CAP = 10


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" for _ in values)


async def _counts(conn: Connection, sql: str, params: Sequence[Any]) -> dict[str, int]:
    cur = await conn.execute(sql, params)
    return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


async def figures(
    conn: Connection,
    *,
    scope: str,
    station_ids: Sequence[str],
    period: Period,
    now_ms: int,
    stale_unacknowledged_ms: int,
    stale_open_ms: int,
    station_names: dict[str, str],
) -> DigestFigures:
    ids = list(station_ids)
    marks = _in(ids)
    start, end = period.start_ms, period.end_ms
    previous = period.previous()
    result = DigestFigures(scope=scope, period=period)

    # One indexed scan per period; the grouping is done here (a week of a district is some
    # tens of thousands of short rows), instead of one scan per figure.
    current = await _period_rows(conn, ids, start, end)
    before = await _period_rows(conn, ids, previous.start_ms, previous.end_ms)
    names = await _neighbourhood_names(conn, {r[1] for r in current} | {r[1] for r in before})
    result.new_total, result.new_previous = len(current), len(before)
    result.by_category = _compare(Counter(r[0] for r in current), Counter(r[0] for r in before))
    result.by_neighbourhood = _compare(
        Counter(names.get(r[1], "—") for r in current),
        Counter(names.get(r[1], "—") for r in before),
    )
    if len(ids) > 1:
        now_by_station = Counter(r[2] for r in current)
        before_by_station = Counter(r[2] for r in before)
        result.by_station = [
            Counted(station_names.get(sid, sid), now_by_station[sid], before_by_station[sid])
            for sid in ids
        ]
    result.active_reporters = len({r[3] for r in current if r[3]})
    hot = Counter(r[4] for r in current if r[4])
    result.hotspots = [
        Counted(n, c) for n, c in sorted(hot.items(), key=lambda kv: (-kv[1], kv[0]))[:5] if c > 1
    ]
    cur = await conn.execute(
        f"SELECT number, category, status FROM cases WHERE station_id IN ({marks})"
        " AND created_at >= ? AND created_at < ? AND urgent = 1 ORDER BY created_at LIMIT ?",
        (*ids, start, end, LIST_CAP),
    )
    result.urgent = [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    closed_sql = (
        f"SELECT {{group}}, COUNT(*) FROM cases WHERE station_id IN ({marks})"
        " AND closed_at >= ? AND closed_at < ? {extra} GROUP BY 1"
    )
    outcomes = await _counts(conn, closed_sql.format(group="status", extra=""), (*ids, start, end))
    result.outcomes = [Counted(name, count) for name, count in sorted(outcomes.items())]
    referred = await _counts(
        conn,
        closed_sql.format(group="COALESCE(referred_to, '—')", extra="AND status = 'referred'"),
        (*ids, start, end),
    )
    result.referred = [Counted(name, count) for name, count in sorted(referred.items())]

    cur = await conn.execute(
        f"SELECT acknowledged_at - created_at FROM cases WHERE station_id IN ({marks})"
        " AND acknowledged_at >= ? AND acknowledged_at < ?",
        (*ids, start, end),
    )
    result.median_ack_s = median_seconds([r[0] / 1000 for r in await cur.fetchall()])
    cur = await conn.execute(
        f"SELECT closed_at - created_at FROM cases WHERE station_id IN ({marks})"
        " AND closed_at >= ? AND closed_at < ?",
        (*ids, start, end),
    )
    result.median_close_s = median_seconds([r[0] / 1000 for r in await cur.fetchall()])

    result.stale_unacknowledged, result.stale_unacknowledged_total = await _stale(
        conn, ids, ("new",), now_ms - stale_unacknowledged_ms, now_ms
    )
    result.stale_open, result.stale_open_total = await _stale(
        conn, ids, ("new", "acknowledged", "investigating"), now_ms - stale_open_ms, now_ms
    )

    cur = await conn.execute(
        "SELECT actor, case_id, response_ms FROM case_events"
        f" WHERE at >= ? AND at < ? AND station_id IN ({marks})"
        " AND action IN ('status', 'reopened', 'note', 'assigned', 'category', 'question')",
        (start, end, *ids),
    )
    handled: dict[str, set[int]] = {}
    responses: dict[str, list[float]] = {}
    for actor, case_id, response_ms in await cur.fetchall():
        handled.setdefault(str(actor), set()).add(int(case_id))
        if response_ms is not None:
            responses.setdefault(str(actor), []).append(response_ms / 1000)
    result.officers = [
        OfficerActivity(actor, len(done), median_seconds(responses.get(actor, [])))
        for actor, done in sorted(handled.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]

    cur = await conn.execute(
        "SELECT COUNT(*) FROM members m JOIN rooms r ON r.room_id = m.room_id"
        f" WHERE r.station_id IN ({marks}) AND m.verified_at >= ? AND m.verified_at < ?",
        (*ids, start, end),
    )
    row = await cur.fetchone()
    result.new_members = int(row[0]) if row else 0
    cur = await conn.execute(
        "SELECT COUNT(*) FROM join_requests j JOIN rooms r ON r.room_id = j.room_id"
        f" WHERE r.station_id IN ({marks}) AND j.status = 'pending'",
        ids,
    )
    row = await cur.fetchone()
    result.pending_requests = int(row[0]) if row else 0

    cur = await conn.execute(
        "SELECT n.number, n.kind, COALESCE(n.title, substr(n.text, 1, 60)),"
        " (SELECT COUNT(*) FROM sightings s WHERE s.notice_id = n.id)"
        f" FROM notices n WHERE n.status = 'active' AND n.station_id IN ({marks})"
        " ORDER BY n.kind DESC, n.id LIMIT ?",
        (*ids, LIST_CAP),
    )
    result.notices = [NoticeLine(r[0], r[1], r[2], int(r[3])) for r in await cur.fetchall()]
    return result


async def _period_rows(
    conn: Connection, ids: list[str], start: int, end: int
) -> list[tuple[str, int | None, str, str | None, str | None]]:
    """(category, neighbourhood, station, reporter, location) of the cases opened in a period."""
    cur = await conn.execute(
        "SELECT category, neighbourhood_id, station_id, reporter, location FROM cases"
        f" WHERE station_id IN ({_in(ids)}) AND created_at >= ? AND created_at < ?",
        (*ids, start, end),
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]


async def _neighbourhood_names(conn: Connection, ids: set[int | None]) -> dict[int | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    cur = await conn.execute(
        f"SELECT id, name FROM neighbourhoods WHERE id IN ({_in(wanted)})", wanted
    )
    return {int(r[0]): str(r[1]) for r in await cur.fetchall()}


def _compare(now: Counter[str], before: Counter[str]) -> list[Counted]:
    return sorted(
        (Counted(name, now[name], before[name]) for name in set(now) | set(before)),
        key=lambda c: (-c.count, c.name),
    )


async def _stale(
    conn: Connection, ids: list[str], statuses: tuple[str, ...], before: int, now: int
) -> tuple[list[StaleCase], int]:
    marks, wanted = _in(ids), _in(statuses)
    params = (*ids, *statuses, before)
    where = f"station_id IN ({marks}) AND status IN ({wanted}) AND created_at < ?"
    cur = await conn.execute(f"SELECT COUNT(*) FROM cases WHERE {where}", params)
    row = await cur.fetchone()
    cur = await conn.execute(
        f"SELECT number, category, created_at, assignee FROM cases WHERE {where}"
        " ORDER BY created_at LIMIT ?",
        (*params, LIST_CAP),
    )
    found = [StaleCase(r[0], r[1], (now - r[2]) / 3_600_000, r[3]) for r in await cur.fetchall()]
    return found, int(row[0]) if row else 0


async def daily_rows(
    conn: Connection, station_ids: Sequence[str], since_ms: int, until_ms: int
) -> list[tuple[int, str]]:
    """(created_at, category) of the cases in a window: the chart's raw data."""
    ids = list(station_ids)
    cur = await conn.execute(
        f"SELECT created_at, category FROM cases WHERE station_id IN ({_in(ids)})"
        " AND created_at >= ? AND created_at < ?",
        (*ids, since_ms, until_ms),
    )
    return [(int(r[0]), str(r[1])) for r in await cur.fetchall()]


# --------------------------------------------------------------------- runs


async def claim_run(
    conn: Connection, room_id: str, period: Period, *, late: bool, now: int
) -> bool:
    """Record the run for (room, kind, period); False if it was already sent — exactly once."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO digest_runs (room_id, kind, period_start, period_end, late,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (room_id, period.kind, period.start_ms, period.end_ms, int(late), now),
    )
    return bool(cur.rowcount)


async def set_run_message(conn: Connection, room_id: str, period: Period, row: int) -> None:
    await conn.execute(
        "UPDATE digest_runs SET message_row = ? WHERE room_id = ? AND kind = ?"
        " AND period_start = ?",
        (row, room_id, period.kind, period.start_ms),
    )


async def last_period_end(conn: Connection, room_id: str, kind: str) -> int | None:
    """Where the last recorded digest of this kind ended (to count periods that were missed)."""
    cur = await conn.execute(
        "SELECT MAX(period_end) FROM digest_runs WHERE room_id = ? AND kind = ?", (room_id, kind)
    )
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


async def claim_job(conn: Connection, job: str, fired_at: int, detail: str = "") -> bool:
    """Timed jobs (nudges, retention) run once per firing, whatever restarts happen."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO job_runs (job, fired_at, detail) VALUES (?, ?, ?)",
        (job, fired_at, detail),
    )
    return bool(cur.rowcount)
