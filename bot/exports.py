"""Exports for the wider police platform, read straight from the database (the bot may run).

``neighborwatch export alerts --format cap`` → CAP 1.2 documents (see ``domain/cap``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
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
