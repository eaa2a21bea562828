"""Exports for the wider police platform, read straight from the database (the bot may run).

* ``neighborwatch export alerts --format cap`` → CAP 1.2 documents (see ``domain/cap``);
* ``neighborwatch export cases --format json|csv`` → Open311 GeoReport v2 JSON (our extras
  under their own names) or CSV with one column per status timestamp. Reporter identity is
  left out unless ``--include-reporters`` is given, and that export is audited.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import Config
from bot.domain.cap import CapNotice, atom_feed, to_xml
from bot.store import notices, outbox
from bot.store.db import Connection, Database


async def cap_notices(conn: Connection, config: Config) -> list[CapNotice]:
    zone = ZoneInfo(config.timezone)

    def moment(ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ms / 1000, zone)

    found = []
    for notice in await notices.all_notices(conn):
        station = config.station(notice.station_id)
        photo_uri = photo_type = None
        if notice.photo_row is not None:
            status, value = await outbox.result_of(conn, notice.photo_row)
            if status == "sent" and value and value.startswith("{"):
                info = json.loads(value)
                photo_uri, photo_type = info.get("url"), info.get("mimetype")
        cur = await conn.execute("SELECT closed_at FROM notices WHERE id = ?", (notice.id,))
        row = await cur.fetchone()
        closed_at = row[0] if row else None
        found.append(
            CapNotice(
                number=notice.number,
                kind=notice.kind,
                level=notice.level,
                title=notice.title,
                text=notice.text,
                status=notice.status,
                station=station.name if station else notice.station_id,
                officer=notice.officer,
                created_at=moment(notice.created_at),
                expires_at=moment(notice.expires_at),
                closed_at=moment(closed_at) if closed_at else None,
                language=config.language,
                photo_uri=photo_uri,
                photo_mimetype=photo_type,
            )
        )
    return found


async def load_cap(db: Database, config: Config) -> list[CapNotice]:
    async with db.transaction() as conn:
        return await cap_notices(conn, config)


def write_cap(found: list[CapNotice], config: Config, out: Path | None) -> str:
    """One file per notice into ``out`` (a folder), or an Atom feed of them all (returned)."""
    sender = config.bot.user_id
    if out is None:
        return atom_feed(found, sender, dt.datetime.now(ZoneInfo(config.timezone)))
    out.mkdir(parents=True, exist_ok=True)
    for notice in found:
        (out / f"{notice.number}.xml").write_text(to_xml(notice, sender), encoding="utf-8")
    return f"wrote {len(found)} CAP file(s) to {out}"


# ------------------------------------------------------------------ cases

CSV_COLUMNS = (
    "number",
    "station",
    "neighbourhood",
    "source",
    "category",
    "urgent",
    "status",
    "location",
    "identifiers",
    "assignee",
    "referred_to",
    "outcome",
    "description",
    "created_at",
    "acknowledged_at",
    "investigating_at",
    "closed_at",
    "reopened_at",
    "updated_at",
)


def _iso(ms: int | None, zone: ZoneInfo) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, zone).replace(microsecond=0).isoformat()


async def case_records(
    conn: Connection,
    config: Config,
    *,
    since_ms: int | None,
    station: str | None,
    include_reporters: bool,
) -> list[dict[str, Any]]:
    """Cases as flat records (CSV columns), reporters only when asked for."""
    zone = ZoneInfo(config.timezone)
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if since_ms is not None:
        where.append("c.created_at >= ?")
        params.append(since_ms)
    if station is not None:
        where.append("c.station_id = ?")
        params.append(station)
    cur = await conn.execute(
        "SELECT c.number, c.station_id, n.name, c.source, c.category, c.urgent, c.status,"
        " c.location, c.identifiers, c.assignee, c.referred_to, c.outcome, c.text,"
        " c.created_at, c.acknowledged_at, c.investigating_at, c.closed_at, c.reopened_at,"
        " c.updated_at, c.reporter, c.reporter_name, c.anonymous FROM cases c"
        " LEFT JOIN neighbourhoods n ON n.id = c.neighbourhood_id"
        f" WHERE {' AND '.join(where)} ORDER BY c.id",
        params,
    )
    records = []
    for r in await cur.fetchall():
        record: dict[str, Any] = {
            "number": r[0],
            "station": r[1],
            "neighbourhood": r[2] or "",
            "source": r[3],
            "category": r[4],
            "urgent": bool(r[5]),
            "status": r[6],
            "location": r[7] or "",
            "identifiers": json.loads(r[8] or "[]"),
            "assignee": r[9] or "",
            "referred_to": r[10] or "",
            "outcome": r[11] or "",
            "description": r[12],
        }
        for index, column in enumerate(CSV_COLUMNS[13:], start=13):
            record[column] = _iso(r[index], zone)
        if include_reporters:
            record["reporter"] = r[19] or r[20] or ""
            record["anonymous"] = bool(r[21])
        records.append(record)
    return records


def open311(record: dict[str, Any], config: Config) -> dict[str, Any]:
    """One case in Open311 GeoReport v2 field names, with our extras under their own names."""
    from bot.domain.render import text

    station = config.station(record["station"])
    closed = record["status"] in ("solved", "referred", "unfounded", "duplicate")
    notes = record["outcome"] or (
        f"referred to {record['referred_to']}" if record["referred_to"] else ""
    )
    result = {
        "service_request_id": record["number"],
        "status": "closed" if closed else "open",
        "status_notes": notes,
        "service_name": text("en", f"category.{record['category']}"),
        "service_code": record["category"],
        "description": record["description"],
        "agency_responsible": record["referred_to"]
        or (station.name if station else record["station"]),
        "requested_datetime": record["created_at"],
        "updated_datetime": record["updated_at"],
        "address": record["location"],
        "case_status": record["status"],
        "station": record["station"],
        "neighbourhood": record["neighbourhood"],
        "source": record["source"],
        "urgent": record["urgent"],
        "identifiers": record["identifiers"],
        "assignee": record["assignee"],
        "acknowledged_datetime": record["acknowledged_at"],
        "investigating_datetime": record["investigating_at"],
        "closed_datetime": record["closed_at"],
        "reopened_datetime": record["reopened_at"],
    }
    if "reporter" in record:
        result["reporter"] = record["reporter"]
        result["anonymous"] = record["anonymous"]
    return result


def cases_json(records: list[dict[str, Any]], config: Config) -> str:
    return json.dumps([open311(r, config) for r in records], ensure_ascii=False, indent=1)


def cases_csv(records: list[dict[str, Any]]) -> str:
    import csv
    import io

    columns = list(CSV_COLUMNS) + (
        ["reporter", "anonymous"] if records and "reporter" in records[0] else []
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = dict(record)
        row["identifiers"] = ";".join(record["identifiers"])
        row["urgent"] = "yes" if record["urgent"] else "no"
        if "anonymous" in row:
            row["anonymous"] = "yes" if record["anonymous"] else "no"
        writer.writerow(row)
    return buffer.getvalue()
