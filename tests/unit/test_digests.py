"""Digest figures on a fixed data set (every number checked) across a DST switch and the
midnight boundary; exactly-once scheduling with late runs; exports that parse back."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest

from bot.config import Config
from bot.domain import digest as rules
from bot.domain.org import ManagedRoom
from bot.exports import case_records, cases_csv, cases_json
from bot.features import digests as feature
from bot.features import retention
from bot.pipeline import make_deps
from bot.store import cases, digests, notices, org, outbox
from bot.store.cases import NewCase
from bot.store.db import Database
from tests.support.units import OFFICER, unit_config

BERLIN = ZoneInfo("Europe/Berlin")
DIGEST_ROOM = "!digest-hq:police.example"
DISTRICT_ROOM = "!digest-changning:police.example"


def at(text: str) -> int:
    """Local Berlin time → epoch ms."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp() * 1000)


def config() -> Config:
    return unit_config(timezone="Europe/Berlin")


async def add_case(
    conn: object,
    created: str,
    category: str,
    *,
    reporter: str | None = None,
    nbh: int | None = None,
    location: str | None = None,
    urgent: bool = False,
) -> int:
    case = await cases.create(
        conn,
        NewCase(  # type: ignore[arg-type]
            station_id="hq",
            year=2026,
            source="room",
            category=category,
            text="x",
            created_by=reporter or OFFICER,
            reporter=reporter,
            neighbourhood_id=nbh,
            location=location,
            urgent=urgent,
        ),
        at(created),
    )
    return case.id


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    async with database.transaction() as conn:
        alpha = await org.add_neighbourhood(
            conn, station_id="hq", slug="alpha", name="Alpha", language="en", created_by=OFFICER
        )
        beta = await org.add_neighbourhood(
            conn, station_id="hq", slug="beta", name="Beta", language="en", created_by=OFFICER
        )
        room = ManagedRoom(
            "!alpha:x",
            "neighbourhood",
            "hq",
            alpha.id,
            "residents",
            None,
            "Alpha · residents",
            "en",
            False,
        )
        await org.add_room(conn, room, OFFICER)
        await add_case(conn, "2026-03-28T23:59:59", "theft", reporter="@r1:x")  # A
        await add_case(conn, "2026-03-29T00:00:00", "theft", reporter="@r1:x")  # B
        c = await add_case(
            conn,
            "2026-03-29T12:00:00",
            "fire_hazard",
            reporter="@r2:x",
            nbh=alpha.id,
            location="building 5",
            urgent=True,
        )
        await add_case(
            conn,
            "2026-03-29T23:59:59",
            "theft",
            reporter="@r1:x",
            nbh=beta.id,
            location="building 5",
        )  # D
        await add_case(conn, "2026-03-30T00:00:00", "theft")  # E: next day
        f = await add_case(conn, "2026-03-20T10:00:00", "drugs")
        await cases.update(conn, f, at("2026-03-20T10:00:00"), assignee="@wang:police.example")
        g = await add_case(conn, "2026-03-25T10:00:00", "fraud")
        await cases.update(
            conn,
            g,
            at("2026-03-25T11:00:00"),
            status="investigating",
            acknowledged_at=at("2026-03-25T11:00:00"),
        )
        await cases.update(
            conn,
            c,
            at("2026-03-29T12:30:00"),
            status="acknowledged",
            acknowledged_at=at("2026-03-29T12:30:00"),
        )
        await cases.add_event(
            conn, c, OFFICER, "status", "new", "acknowledged", None, at("2026-03-29T12:30:00")
        )
        await cases.update(
            conn, c, at("2026-03-29T15:00:00"), status="solved", closed_at=at("2026-03-29T15:00:00")
        )
        await cases.add_event(
            conn, c, OFFICER, "status", "acknowledged", "solved", "done", at("2026-03-29T15:00:00")
        )
        await conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO members (room_id, user_id, status, via, verified_by, verified_at,"
            " created_at, updated_at) VALUES ('!alpha:x', '@m:x', 'verified', 'code', ?, ?, ?, ?)",
            (OFFICER, at("2026-03-29T10:00:00"), 0, 0),
        )
        await org.add_request(
            conn, user_id="@p:x", room_id="!alpha:x", source="knock", status="pending"
        )
        notice = await notices.create(
            conn,
            kind="wanted",
            station_id="hq",
            officer=OFFICER,
            text="details",
            scope="guards",
            title="Zhang San",
            expires_at=at("2026-04-30T00:00:00"),
            now=at("2026-03-29T09:00:00"),
        )
        for i in range(2):
            await notices.add_sighting(
                conn,
                notice_id=notice.id,
                reporter="@g:x",
                room_id="!alpha:x",
                event_id=f"$s{i}",
                text="seen",
                location=None,
                attachment=None,
                late=False,
                now=0,
            )
    yield database
    await database.close()


async def test_every_figure_of_a_daily_digest_across_the_dst_switch(db: Database) -> None:
    now = dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN)
    period = rules.period_for_run("daily", now)
    assert period.start == dt.datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN)
    assert (period.end_ms - period.start_ms) == 23 * 3_600_000, "29 March 2026 has 23 hours"
    async with db.transaction() as conn:
        deps = make_deps(conn, config(), int(now.timestamp() * 1000))
        hq = deps.config.stations[0]
        found = await feature.build(deps, "Hongqiao", [hq], period)
    assert (found.new_total, found.new_previous) == (3, 1)
    assert [(c.name, c.count, c.previous) for c in found.by_category] == [
        ("theft", 2, 1),
        ("fire_hazard", 1, 0),
    ]
    assert [(c.name, c.count, c.change) for c in found.by_category] == [
        ("theft", 2, "+1"),
        ("fire_hazard", 1, "new"),
    ]
    assert sorted((c.name, c.count, c.previous) for c in found.by_neighbourhood) == [
        ("Alpha", 1, 0),
        ("Beta", 1, 0),
        ("—", 1, 1),
    ]
    assert [u[0] for u in found.urgent] == ["HQ-2026-0003"]
    assert [(c.name, c.count) for c in found.outcomes] == [("solved", 1)]
    assert (found.median_ack_s, found.median_close_s) == (1800.0, 10800.0)
    assert found.stale_unacknowledged_total == 3
    assert [s.number for s in found.stale_unacknowledged] == [
        "HQ-2026-0006",
        "HQ-2026-0001",
        "HQ-2026-0002",
    ]
    assert found.stale_unacknowledged[0].assignee == "@wang:police.example"
    assert found.stale_open_total == 1 and found.stale_open[0].number == "HQ-2026-0006"
    assert [(o.officer, o.handled, o.median_response_s) for o in found.officers] == [
        (OFFICER, 1, 1800.0)
    ]
    assert (found.active_reporters, found.new_members, found.pending_requests) == (2, 1, 1)
    assert [(n.number, n.sightings) for n in found.notices] == [("W-1", 2)]
    assert [(h.name, h.count) for h in found.hotspots] == [("building 5", 2)]
    message = feature.render_digest(deps, "en", found)
    for needle in (
        "Daily digest",
        "New cases: 3 (+2",
        "theft: 2 (+1)",
        "fire hazard: 1 (new)",
        "Median time to acknowledge: 30 min",
        "Unacknowledged > 24 h: 3",
        "W-1 Zhang San (2 sighting(s))",
        "building 5 (2)",
    ):
        assert needle in message.body, needle
    assert "@r1:x" not in message.body and "@r2:x" not in message.body
    assert message.html is not None and "<table>" in message.html


async def test_the_weekly_period_is_monday_to_monday_local(db: Database) -> None:
    period = rules.period_for_run("weekly", dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))
    assert period.start == dt.datetime(2026, 3, 23, tzinfo=BERLIN)
    assert period.end == dt.datetime(2026, 3, 30, tzinfo=BERLIN)
    assert period.end_ms - period.start_ms == (7 * 24 - 1) * 3_600_000
    async with db.transaction() as conn:
        deps = make_deps(conn, config(), period.end_ms + 8 * 3_600_000)
        found = await feature.build(deps, "HQ", [deps.config.stations[0]], period)
    assert found.new_total == 5  # A, B, C, D and G; F was the week before


async def test_a_quiet_period_is_one_line(db: Database) -> None:
    period = rules.period_for_run("daily", dt.datetime(2026, 6, 2, 8, 0, tzinfo=BERLIN))
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM join_requests")
        await conn.execute("UPDATE cases SET status = 'solved', closed_at = 1")
        await conn.execute("UPDATE notices SET status = 'found'")
        deps = make_deps(conn, config(), period.end_ms)
        found = await feature.build(deps, "HQ", [deps.config.stations[0]], period)
    assert found.quiet
    lines = feature.render_digest(deps, "en", found).body.strip().splitlines()
    assert len(lines) == 2 and "quiet day" in lines[1]


async def test_scheduled_digests_go_out_once_and_late_ones_say_so(db: Database) -> None:
    async with db.transaction() as conn:
        for room_id, station, district in (
            (DIGEST_ROOM, "hq", None),
            (DISTRICT_ROOM, None, "changning"),
        ):
            await org.add_room(
                conn,
                ManagedRoom(
                    room_id, "digest", station, None, None, None, "digest", "en", False, district
                ),
                OFFICER,
            )
        await conn.execute(
            "UPDATE rooms SET created_at = ? WHERE kind = 'digest'", (at("2026-03-29T07:00:00"),)
        )

    async def run(local: str) -> list[outbox.OutboxRow]:
        async with db.transaction() as conn:
            await feature.run_due(make_deps(conn, config(), at(local)))
            rows = await outbox.pending(conn)
            for row in rows:
                await outbox.mark_sent(conn, row.id, f"$x{row.id}")
        return rows

    assert not [r for r in await run("2026-03-29T07:59:00") if r.kind == "message"]
    rows = await run("2026-03-29T08:00:30")
    daily = [r for r in rows if r.kind == "message" and "Daily digest" in r.content["body"]]
    assert {r.room_id for r in daily} == {DIGEST_ROOM, DISTRICT_ROOM}
    assert all("late" not in r.content["body"] for r in daily)
    charts = [r for r in rows if r.kind == "upload"]
    assert len(charts) == 2 and charts[0].media and charts[0].media.startswith(b"\x89PNG")
    assert await run("2026-03-29T08:05:00") == []
    # Monday 30 March: daily and weekly; then the bot is down until Wednesday 11:00.
    rows = await run("2026-03-30T08:00:10")
    kinds = [
        r.content.get("org.neighborwatch", {}).get("kind") for r in rows if r.kind == "message"
    ]
    assert kinds.count("digest.daily") == 2 and kinds.count("digest.weekly") == 2
    rows = await run("2026-04-01T11:00:00")
    late = [r for r in rows if r.kind == "message" and "Daily digest" in r.content["body"]]
    assert len(late) == 2
    assert all(
        "sent late" in r.content["body"] and "1 earlier digest(s) were missed" in r.content["body"]
        for r in late
    )
    assert await run("2026-04-01T11:30:00") == []
    async with db.transaction() as conn:
        cur = await conn.execute("SELECT COUNT(*), SUM(late) FROM digest_runs")
        assert tuple(await cur.fetchone()) == (8, 2)  # type: ignore[arg-type]


async def test_claiming_a_run_twice_is_refused() -> None:
    database = await Database.open(":memory:")
    period = rules.period_for_run("daily", dt.datetime(2026, 1, 2, 8, tzinfo=BERLIN))
    async with database.transaction() as conn:
        assert await digests.claim_run(conn, "!r", period, late=False, now=1)
        assert not await digests.claim_run(conn, "!r", period, late=True, now=2)
    await database.close()


async def test_exports_parse_back_to_the_same_cases_without_reporters(db: Database) -> None:
    async with db.transaction() as conn:
        records = await case_records(
            conn, config(), since_ms=None, station=None, include_reporters=False
        )
        with_reporters = await case_records(
            conn, config(), since_ms=at("2026-03-29T00:00:00"), station="hq", include_reporters=True
        )
        cur = await conn.execute("SELECT number, category, status FROM cases ORDER BY id")
        stored = [tuple(r) for r in await cur.fetchall()]
    parsed = json.loads(cases_json(records, config()))
    assert [
        (p["service_request_id"], p["service_code"], p["case_status"]) for p in parsed
    ] == stored
    assert all("reporter" not in p for p in parsed)
    solved = next(p for p in parsed if p["case_status"] == "solved")
    assert solved["status"] == "closed" and solved["status_notes"] == ""
    assert solved["requested_datetime"] == "2026-03-29T12:00:00+02:00"
    rows = list(csv.DictReader(io.StringIO(cases_csv(records))))
    assert [(r["number"], r["category"], r["status"]) for r in rows] == stored
    assert "reporter" not in rows[0]
    assert rows[2]["closed_at"] == "2026-03-29T15:00:00+02:00"
    assert {r["number"] for r in with_reporters} == {
        "HQ-2026-0002",
        "HQ-2026-0003",
        "HQ-2026-0004",
        "HQ-2026-0005",
    }
    assert {r["reporter"] for r in with_reporters} == {"@r1:x", "@r2:x", ""}


async def test_retention_anonymises_old_closed_cases_and_keeps_the_figures(
    db: Database,
) -> None:
    later = at("2027-06-01T04:00:00")
    async with db.transaction() as conn:
        deps = make_deps(conn, config(), later)
        assert await retention.anonymise(deps, dry_run=True) == 1
        cur = await conn.execute("SELECT reporter FROM cases WHERE status = 'solved'")
        assert (await cur.fetchone())[0] == "@r2:x"  # type: ignore[index]
        assert await retention.anonymise(deps, dry_run=False) == 1
        cur = await conn.execute(
            "SELECT reporter, text, category, status, anonymised_at FROM cases"
            " WHERE status = 'solved'"
        )
        assert tuple(await cur.fetchone()) == (None, "", "fire_hazard", "solved", later)  # type: ignore[arg-type]
        assert await retention.anonymise(deps, dry_run=False) == 0
