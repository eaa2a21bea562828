"""A small town for unit tests of hostile input: two stations, their rooms, and one person of
each kind the bot must tell apart — all in an in-memory database, driven through the real
pipeline (no homeserver).

* Hongqiao station (``hq``): neighbourhood ``hqxc`` with its residents' room and the
  station's officers' room; Li and Zhang are verified residents, Wu joined the residents'
  room on an officer's invitation but was never verified; a stranger knocked and waits.
* Xinjing station (``xj``): neighbourhood ``xjnb`` with a residents' room, and its own
  officer (who has no say over Hongqiao's rooms or cases).
* Everybody has a direct chat with the bot.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.domain.matrix_model import RoomEvent
from bot.domain.org import ManagedRoom, RoomKind
from bot.pipeline import EventPipeline
from bot.store import audit, cases, direct, org, outbox
from bot.store.db import Connection, Database
from tests.support.units import (
    OFFICER,
    OTHER_OFFICER,
    SUPERVISOR,
    make_pipeline,
    member_event,
    message,
)

ROOM = "!hqxc-residents:police.example"
OFFICERS_ROOM = "!hq-officers:police.example"
XJ_ROOM = "!xjnb-residents:police.example"
LI = "@li:example.org"
ZHANG = "@zhang:example.org"
WU = "@wu:example.org"  # joined the residents' room, never verified
OUTSIDER = "@stranger:elsewhere.example"
KNOCKER = "@knocker:example.org"
TIP_TEXT = (
    "16 firecrackers hidden in the electricity box on the 22nd floor of building 5, "
    "someone keeps storing them there"
)
NOW_MS = 1_795_000_000_000

DM = {
    user: "!dm-" + user[1:].replace(":", "-") + ":police.example"
    for user in (LI, ZHANG, WU, OUTSIDER, OFFICER, OTHER_OFFICER, SUPERVISOR)
}


@dataclass
class Town:
    db: Database
    bot: EventPipeline
    case_number: str = ""
    other_case: str = ""
    alert_number: str = ""
    wanted_number: str = ""
    code: str = ""

    async def send(self, event: RoomEvent) -> list[outbox.OutboxRow]:
        """Hand one event to the bot; returns what it queued for it (and marks it sent)."""
        await self.bot.handle(event)
        return await self.drain()

    async def say(
        self, body: str, sender: str, room: str | None = None, **content: Any
    ) -> list[outbox.OutboxRow]:
        return await self.send(message(body, sender, room_id=room or DM[sender], **content))

    async def drain(self) -> list[outbox.OutboxRow]:
        async with self.db.transaction() as conn:
            rows = await outbox.pending(conn)
            for row in rows:
                await outbox.mark_sent(conn, row.id, f"$out{row.id}")
        return rows

    async def cases(self) -> list[Any]:
        async with self.db.transaction() as conn:
            found, _ = await cases.search(conn, station_ids=["hq", "xj"], limit=1000)
        return found

    async def audit_actions(self, limit: int = 20) -> list[tuple[str, str, str | None]]:
        async with self.db.transaction() as conn:
            return [(e.actor, e.action, e.target) for e in await audit.recent(conn, limit)]

    async def outcome(self, event_id: str) -> str | None:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT outcome FROM processed_events WHERE event_id = ?", (event_id,)
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def snapshot(self, skip: frozenset[str] = frozenset()) -> dict[str, list[Any]]:
        """Every table's rows (in a stable order), except the tables named in ``skip``."""

        async def read(conn: Connection) -> dict[str, list[Any]]:
            cur = await conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            found: dict[str, list[Any]] = {}
            for (table,) in await cur.fetchall():
                if table not in skip:
                    rows = await (await conn.execute(f"SELECT * FROM {table}")).fetchall()
                    found[table] = sorted((tuple(r) for r in rows), key=repr)
            return found

        return await self.db.run(read)


def _room(
    room_id: str, kind: RoomKind, station: str, nbh: int | None, audience: str | None, name: str
) -> ManagedRoom:
    alias = f"#nw-{room_id[1:].split(':')[0]}:police.example" if nbh is not None else None
    return ManagedRoom(room_id, kind, station, nbh, audience, alias, name, "en", False)


async def open_town(db: Database, *, seed: bool = True) -> Town:
    """The town above; with ``seed``, also a logged tip, an alert, a join code and a knock."""
    async with db.transaction() as conn:
        hqxc = await org.add_neighbourhood(
            conn,
            station_id="hq",
            slug="hqxc",
            name="Hongqiao Xincheng",
            language="en",
            created_by=OFFICER,
        )
        xjnb = await org.add_neighbourhood(
            conn,
            station_id="xj",
            slug="xjnb",
            name="Xinjing Nanbei",
            language="en",
            created_by=OTHER_OFFICER,
        )
        await org.add_room(
            conn,
            _room(ROOM, "neighbourhood", "hq", hqxc.id, "residents", "Hongqiao Xincheng · res"),
            OFFICER,
        )
        await org.add_room(
            conn, _room(OFFICERS_ROOM, "officers", "hq", None, None, "Hongqiao · officers"), OFFICER
        )
        await org.add_room(
            conn,
            _room(XJ_ROOM, "neighbourhood", "xj", xjnb.id, "residents", "Xinjing Nanbei · res"),
            OTHER_OFFICER,
        )
        for user, name in ((LI, "Li Ming"), (ZHANG, "Zhang Wei")):
            await org.save_member(
                conn,
                room_id=ROOM,
                user_id=user,
                status="verified",
                via="in_person",
                name=name,
                unit="5-2201",
                phone="13800138000",
                verified_by=OFFICER,
            )
        await org.save_member(
            conn, room_id=ROOM, user_id=WU, status="unverified", via="officer_invite"
        )
        for user, room_id in DM.items():
            await direct.remember(conn, user, room_id)
    town = Town(db, make_pipeline(db, clock_ms=NOW_MS))
    if seed:
        await _seed(town)
    return town


_TEMPLATE: list[tuple[sqlite3.Connection, Town]] = []


async def seeded_town() -> Town:
    """A fresh copy of the seeded town: built once, then copied (a copy costs a few ms)."""
    if not _TEMPLATE:
        source = await Database.open(":memory:")
        town = await open_town(source)
        copy = sqlite3.connect(":memory:", check_same_thread=False)
        await _on_db_thread(source, lambda raw: raw.backup(copy))
        await source.close()
        _TEMPLATE.append((copy, town))
    template, seeded = _TEMPLATE[0]
    db = await Database.open(":memory:")
    await _on_db_thread(db, template.backup)
    return dataclasses.replace(seeded, db=db, bot=make_pipeline(db, clock_ms=NOW_MS))


async def _on_db_thread(db: Database, fn: Callable[[sqlite3.Connection], None]) -> None:
    """Test-only: SQLite's backup API on the database's own connection and thread."""
    await db._on_thread(fn, db._raw)


async def _seed(town: Town) -> None:
    await town.send(member_event(ROOM, WU, "join", prev="invite"))
    await town.say(TIP_TEXT, LI, ROOM)
    [case] = await town.cases()
    town.case_number = case.number
    await town.say('!log call "A blocked fire exit in building 3" neighbourhood=hqxc', OFFICER)
    town.other_case = next(c.number for c in await town.cases() if c.number != case.number)
    posted = await town.say('!alert hqxc "Bike thieves around building 3" expires=3d', OFFICER)
    town.alert_number = _first_word_like(posted, "A-")
    await town.say('!wanted "Tall man" "grey coat, scar on the chin" to=hqxc', OFFICER)
    photo: dict[str, Any] = {"url": "mxc://x.example/photo", "info": {"mimetype": "image/jpeg"}}
    posted = await town.say("man.jpg", OFFICER, msgtype="m.image", **photo)
    town.wanted_number = _first_word_like(posted, "W-")
    made = await town.say("!code hqxc/residents", OFFICER)
    town.code = _code_in(made)
    knock = member_event(ROOM, KNOCKER, "knock", reason="I live in 7-1101")
    await town.send(knock)


def _first_word_like(rows: list[outbox.OutboxRow], prefix: str) -> str:
    for row in rows:
        for word in str(row.content.get("body", "")).replace("(", " ").split():
            if word.startswith(prefix) and word[len(prefix) :].rstrip(".,:").isdigit():
                return word.rstrip(".,:")
    raise AssertionError(f"no {prefix}n in {[r.content.get('body') for r in rows]}")


def _code_in(rows: list[outbox.OutboxRow]) -> str:
    for row in rows:
        found = re.search(r"\b([A-Z2-9]{4}-?[A-Z2-9]{4})\b", str(row.content.get("body", "")))
        if found:
            return found.group(1)
    raise AssertionError(f"no join code in {[r.content.get('body') for r in rows]}")
