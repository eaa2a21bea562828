"""Alerts and wanted notices through the pipeline: fan-out, sightings kept private, closing,
expiry with an injected clock, and CAP export."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from xml.etree import ElementTree as ET

import pytest

from bot.domain.cap import CAP_NS, CapNotice, to_xml
from bot.domain.org import ManagedRoom
from bot.exports import cap_notices
from bot.features import notices as notices_feature
from bot.pipeline import EventPipeline, make_deps
from bot.store import direct, notices, org, outbox
from bot.store.db import Database
from tests.support.units import OFFICER, make_pipeline, message, unit_config

DAY = 86_400_000
NOW = 1_795_000_000_000
DM_OFFICER = "!dm-wang:police.example"
OFFICERS_ROOM = "!officers:police.example"
GUARDS_A = "!a-guards:police.example"
GUARDS_B = "!b-guards:police.example"
RESIDENTS_A = "!a-residents:police.example"
GUARD = "@guard:example.org"
DM_GUARD = "!dm-guard:example.org"
DMS = {OFFICER: DM_OFFICER, GUARD: DM_GUARD}
PHOTO = {
    "msgtype": "m.image",
    "url": "mxc://police.example/abc",
    "info": {"mimetype": "image/jpeg", "size": 50_000, "w": 400, "h": 600},
}


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    async with database.transaction() as conn:
        rooms = []
        for slug in ("alpha", "beta"):
            nbh = await org.add_neighbourhood(
                conn,
                station_id="hq",
                slug=slug,
                name=slug.title(),
                language="en",
                created_by=OFFICER,
            )
            rooms.append(nbh)
        plan = [
            (GUARDS_A, rooms[0].id, "guards"),
            (GUARDS_B, rooms[1].id, "guards"),
            (RESIDENTS_A, rooms[0].id, "residents"),
        ]
        for room_id, nbh_id, audience in plan:
            await org.add_room(
                conn,
                ManagedRoom(
                    room_id,
                    "neighbourhood",
                    "hq",
                    nbh_id,
                    audience,
                    None,
                    f"{room_id} name",
                    "en",
                    False,
                ),
                OFFICER,
            )
        await org.add_room(
            conn,
            ManagedRoom(OFFICERS_ROOM, "officers", "hq", None, None, None, "officers", "en", False),
            OFFICER,
        )
        await org.save_member(
            conn,
            room_id=GUARDS_A,
            user_id=GUARD,
            status="verified",
            via="in_person",
            name="Guard",
            verified_by=OFFICER,
        )
        await direct.remember(conn, OFFICER, DM_OFFICER)
        await direct.remember(conn, GUARD, DM_GUARD)
    yield database
    await database.close()


@pytest.fixture
def bot(db: Database) -> EventPipeline:
    return make_pipeline(db, clock_ms=NOW)


async def drain(db: Database) -> list[outbox.OutboxRow]:
    async with db.transaction() as conn:
        rows = await outbox.pending(conn)
        for row in rows:
            await outbox.mark_sent(conn, row.id, f"$out{row.id}")
    return rows


def texts(rows: list[outbox.OutboxRow], lane: str) -> list[str]:
    """Messages in a room; for a direct chat, also those queued to open or reuse it."""
    lanes = {lane, *(outbox.dm_lane(user) for user, room in DMS.items() if room == lane)}
    return [str(r.content.get("body", "")) for r in rows if r.lane in lanes and r.kind == "message"]


async def post_wanted(db: Database, bot: EventPipeline, extra: str = "") -> list[outbox.OutboxRow]:
    photo = message("suspect.jpg", OFFICER, room_id=DM_OFFICER, **PHOTO)
    await bot.handle(photo)
    command = message(
        f'!wanted "Zhang San, about 40" "Telecom fraud suspect, grey jacket; do not approach" '
        f"{extra}".strip(),
        OFFICER,
        room_id=DM_OFFICER,
        **{"m.relates_to": {"m.in_reply_to": {"event_id": photo.event_id}}},
    )
    await bot.handle(command)
    return await drain(db)


async def test_a_wanted_notice_goes_to_every_guards_room_and_nowhere_else(
    db: Database, bot: EventPipeline
) -> None:
    rows = await post_wanted(db, bot)
    [rehost] = [r for r in rows if r.kind == "rehost"]
    assert rehost.content["source"] == "mxc://police.example/abc"
    for room in (GUARDS_A, GUARDS_B):
        posted = [r for r in rows if r.lane == room]
        assert [r.content["msgtype"] for r in posted] == ["m.image", "m.notice"]
        assert posted[0].content["url"] == outbox.ref(rehost.id, "url")
        assert "WANTED W-1" in posted[1].content["body"]
        assert posted[1].content["org.neighborwatch"] == {"kind": "wanted", "id": "W-1"}
    assert not [r for r in rows if r.lane == RESIDENTS_A]
    assert any("W-1 is posted to 2 room(s)" in t for t in texts(rows, DM_OFFICER))


async def test_wanted_without_a_photo_waits_for_the_next_one(
    db: Database, bot: EventPipeline
) -> None:
    await bot.handle(
        message('!wanted "Li Si" "Burglary suspect" to=alpha', OFFICER, room_id=DM_OFFICER)
    )
    assert "Send me the photo" in texts(await drain(db), DM_OFFICER)[0]
    await bot.handle(
        message(
            "not a photo",
            OFFICER,
            room_id=DM_OFFICER,
            msgtype="m.file",
            info={"mimetype": "application/pdf"},
        )
    )
    assert "not a photo" in texts(await drain(db), DM_OFFICER)[0]
    await bot.handle(
        message(
            "big.jpg",
            OFFICER,
            room_id=DM_OFFICER,
            **{**PHOTO, "info": {"mimetype": "image/jpeg", "size": 50_000_000}},
        )
    )
    assert "too large" in texts(await drain(db), DM_OFFICER)[0]
    await bot.handle(message("ok.jpg", OFFICER, room_id=DM_OFFICER, **PHOTO))
    rows = await drain(db)
    assert {r.lane for r in rows if r.kind == "message"} >= {GUARDS_A, RESIDENTS_A}
    assert GUARDS_B not in {r.lane for r in rows}


async def test_unknown_scopes_and_bad_durations_are_explained(
    db: Database, bot: EventPipeline
) -> None:
    await bot.handle(message('!alert nowhere "Burglaries at night"', OFFICER, room_id=DM_OFFICER))
    reply = texts(await drain(db), DM_OFFICER)[0]
    assert "nowhere" in reply and "guards" in reply and "alpha" in reply
    await bot.handle(message('!alert station "x" expires=soon', OFFICER, room_id=DM_OFFICER))
    assert "not a duration" in texts(await drain(db), DM_OFFICER)[0]


async def test_sightings_reach_the_officer_and_never_the_group(
    db: Database, bot: EventPipeline
) -> None:
    rows = await post_wanted(db, bot)
    card = next(r for r in rows if r.lane == GUARDS_A and r.content["msgtype"] == "m.notice")
    reply = message(
        "I saw him at the north gate 5 minutes ago",
        GUARD,
        room_id=GUARDS_A,
        **{"m.relates_to": {"m.in_reply_to": {"event_id": f"$out{card.id}"}}},
    )
    await bot.handle(reply)
    rows = await drain(db)
    assert not [r for r in rows if r.lane in (GUARDS_A, GUARDS_B, RESIDENTS_A)]
    assert any("north gate" in t for t in texts(rows, DM_OFFICER) + texts(rows, OFFICERS_ROOM))
    assert any("Thank you" in t for t in texts(rows, DM_GUARD))
    await bot.handle(message("saw W-1 again near the bike shed", GUARD, room_id=DM_GUARD))
    rows = await drain(db)
    assert any("bike shed" in t for t in texts(rows, OFFICERS_ROOM))
    async with db.transaction() as conn:
        notice = await notices.by_number(conn, "W-1")
        assert notice is not None
        assert len(await notices.sightings(conn, notice.id)) == 2


async def test_found_tells_every_room_and_redacts_the_photos(
    db: Database, bot: EventPipeline
) -> None:
    rows = await post_wanted(db, bot)
    photos = {r.lane: r.id for r in rows if r.content.get("msgtype") == "m.image"}
    await bot.handle(message('!wanted found W-1 "arrested"', OFFICER, room_id=DM_OFFICER))
    rows = await drain(db)
    for room in (GUARDS_A, GUARDS_B):
        assert any("no longer sought" in t for t in texts(rows, room))
        [redaction] = [r for r in rows if r.lane == room and r.kind == "redact"]
        assert redaction.target == outbox.ref(photos[room])
    await bot.handle(message("saw W-1 at the gate", GUARD, room_id=DM_GUARD))
    rows = await drain(db)
    assert any("Late" in t for t in texts(rows, OFFICERS_ROOM))
    assert any("Thank you" in t for t in texts(rows, DM_GUARD))


async def test_expiry_and_the_reminder_follow_the_clock_and_fire_once(
    db: Database, bot: EventPipeline
) -> None:
    await post_wanted(db, bot, "expires=10d")

    async def tick_at(ms: int) -> list[outbox.OutboxRow]:
        async with db.transaction() as conn:
            await notices_feature.tick(make_deps(conn, unit_config(), ms))
        return await drain(db)

    assert await tick_at(NOW + DAY) == []
    reminder = await tick_at(NOW + 6 * DAY)
    assert any("expires in 4 day(s)" in t for t in texts(reminder, outbox.dm_lane(OFFICER)))
    assert await tick_at(NOW + 7 * DAY) == [], "the reminder fires once"
    expiry = await tick_at(NOW + 10 * DAY + 1)
    assert {r.lane for r in expiry if r.kind == "redact"} == {GUARDS_A, GUARDS_B}
    assert await tick_at(NOW + 11 * DAY) == []


async def test_cap_export_describes_active_and_cancelled_notices(
    db: Database, bot: EventPipeline
) -> None:
    await post_wanted(db, bot)
    await bot.handle(
        message('!alert alpha "Bike thefts at night" level=advisory', OFFICER, room_id=DM_OFFICER)
    )
    await bot.handle(message("!wanted withdraw W-1", OFFICER, room_id=DM_OFFICER))
    await drain(db)
    async with db.transaction() as conn:
        found = {n.number: n for n in await cap_notices(conn, unit_config())}
    ns = {"cap": CAP_NS}
    wanted = ET.fromstring(to_xml(found["W-1"], "@bot:police.example"))
    assert wanted.findtext("cap:msgType", namespaces=ns) == "Cancel"
    assert wanted.findtext("cap:scope", namespaces=ns) == "Restricted"
    assert wanted.find("cap:references", ns) is not None
    alert = ET.fromstring(to_xml(found["A-1"], "@bot:police.example"))
    assert alert.findtext("cap:msgType", namespaces=ns) == "Alert"
    assert alert.findtext("cap:info/cap:severity", namespaces=ns) == "Moderate"
    for field in ("identifier", "sender", "sent", "status"):
        assert alert.findtext(f"cap:{field}", namespaces=ns)
    for field in (
        "category",
        "event",
        "urgency",
        "severity",
        "certainty",
        "expires",
        "headline",
        "description",
    ):
        assert alert.findtext(f"cap:info/cap:{field}", namespaces=ns), field


def test_cap_with_a_photo_names_the_resource() -> None:
    moment = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    notice = CapNotice(
        "W-3",
        "wanted",
        None,
        "X",
        "details",
        "active",
        "HQ",
        OFFICER,
        moment,
        moment,
        None,
        "zh",
        "mxc://hs/clean",
        "image/jpeg",
    )
    root = ET.fromstring(to_xml(notice, "@bot:hs"))
    uri = root.findtext(f"{{{CAP_NS}}}info/{{{CAP_NS}}}resource/{{{CAP_NS}}}uri")
    assert uri == "mxc://hs/clean"
    assert root.findtext(f"{{{CAP_NS}}}sent") == "2026-11-25T08:00:00+00:00"
