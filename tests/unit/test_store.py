"""The database: pragmas, migrations, refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.domain.org import ManagedRoom
from bot.store import audit, cases, inbox, kv, org, outbox
from bot.store.db import MAX_PARAMS, Connection, Database
from bot.store.migrations import MIGRATIONS, SchemaTooNewError


async def test_new_database_is_migrated_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "nw.db")
    try:
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        assert (await db.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS)  # type: ignore[index]
    finally:
        await db.close()


async def test_reopening_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "nw.db")
    async with db.transaction() as conn:
        await kv.put(conn, kv.SYNC_TOKEN, "s1")
    await db.close()
    db = await Database.open(tmp_path / "nw.db")
    async with db.transaction() as conn:
        assert await kv.get(conn, kv.SYNC_TOKEN) == "s1"
    await db.close()


async def test_database_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "nw.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match="newer version"):
        await Database.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 5,)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("future",)]
    conn.close()


async def test_a_failed_transaction_leaves_nothing_behind() -> None:
    db = await Database.open(":memory:")
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await inbox.mark_processed(conn, "$e", "!r", "@u:x", "ok")
            await outbox.enqueue(conn, "!r", "m.room.message", {"body": "hi"})
            raise RuntimeError("crash between writes")
    async with db.transaction() as conn:
        assert not await inbox.is_processed(conn, "$e")
        assert await outbox.pending(conn) == []
    await db.close()


async def test_audit_rows_keep_who_what_and_detail() -> None:
    db = await Database.open(":memory:")
    async with db.transaction() as conn:
        await audit.record(
            conn,
            "@r:x",
            "command.refused",
            target="status",
            room_id="!r",
            detail={"needs": ["officer"]},
        )
        [entry] = await audit.recent(conn)
    assert (entry.actor, entry.action, entry.target, entry.detail) == (
        "@r:x",
        "command.refused",
        "status",
        {"needs": ["officer"]},
    )
    await db.close()


ROOM = ManagedRoom("!n:x", "neighbourhood", "hq", None, "residents", None, "Court", "en", False)


async def test_a_unit_remembers_reads_until_a_write_or_rollback_changes_them() -> None:
    """A /sync batch looks the same room up for every event: read once per unit, but never
    stale — a write to the table, or a rolled-back savepoint, makes the next read fresh."""
    db = await Database.open(":memory:")
    async with db.transaction() as conn:
        await org.add_room(conn, ROOM, "@o:x")

    async def unit(conn: Connection) -> list[str | None]:
        seen: list[str | None] = []

        async def name() -> None:
            room = await org.room(conn, ROOM.room_id)
            seen.append(room.language if room else None)

        await name()
        await conn.execute("UPDATE rooms SET language = 'zh' WHERE room_id = ?", (ROOM.room_id,))
        await name()
        await conn.execute("SAVEPOINT event")
        await conn.execute("UPDATE rooms SET language = 'en' WHERE room_id = ?", (ROOM.room_id,))
        await name()
        await conn.execute("ROLLBACK TO event")
        await conn.execute("RELEASE event")
        await name()
        await kv.put(conn, "k", "1")
        assert await kv.get(conn, "k") == "1"
        await kv.put(conn, "k", "2")
        assert await kv.get(conn, "k") == "2"
        return seen

    assert await db.run(unit) == ["en", "zh", "en", "zh"]
    await db.close()


async def test_processed_among_finds_handled_ids_beyond_one_query() -> None:
    db = await Database.open(":memory:")
    ids = [f"$e{n}" for n in range(MAX_PARAMS * 2 + 3)]
    async with db.transaction() as conn:
        for event_id in ids[::2]:
            await inbox.mark_processed(conn, event_id, "!r", "@u:x", "ok")
        assert await inbox.processed_among(conn, ids) == set(ids[::2])
    await db.close()


async def test_prefetched_memberships_answer_as_the_single_lookups_do() -> None:
    db = await Database.open(":memory:")
    async with db.transaction() as conn:
        await org.add_room(conn, ROOM, "@o:x")
        for user, status in (("@v:x", "verified"), ("@u:x", "unverified"), ("@l:x", "left")):
            await org.save_member(
                conn, room_id=ROOM.room_id, user_id=user, status=status, via="in_person"
            )
    pairs = [(ROOM.room_id, u) for u in ("@v:x", "@u:x", "@l:x", "@nobody:x")]
    pairs.append(("!elsewhere:x", "@v:x"))

    async def answers(conn: Connection, prefetch: bool) -> list[object]:
        if prefetch:
            await org.prefetch_senders(conn, pairs)
            await conn.execute("SELECT 1")  # a read keeps the memo
        seen: list[object] = []
        for room_id, user in pairs:
            seen.append(await org.member(conn, room_id, user))
            seen.append(await org.is_verified_anywhere(conn, user))
        return seen

    direct = await db.run(lambda conn: answers(conn, False))
    assert await db.run(lambda conn: answers(conn, True)) == direct
    assert [m.status if m else None for m in direct[0:10:2]] == [
        "verified",
        "unverified",
        "left",
        None,
        None,
    ]
    assert direct[1:10:2] == [True, False, False, False, True]
    await db.close()


async def test_a_new_case_as_returned_is_the_case_as_stored() -> None:
    """``cases.create`` builds the case it returns without reading it back: it must be
    exactly what a later read finds."""
    db = await Database.open(":memory:")
    new = cases.NewCase(
        station_id="hq",
        year=2026,
        source="room",
        category="fire_hazard",
        text="firecrackers in the meter box",
        created_by="@li:x",
        reporter="@li:x",
        reporter_name="Li Ming",
        anonymous=True,
        room_id="!n:x",
        event_id="$tip",
        urgent=True,
        location="22nd floor",
        identifiers=["13812345678"],
        text_truncated=True,
        confidence=0.9,
        assignee="@wang:x",
    )
    async with db.transaction() as conn:
        made = await cases.create(conn, new, 1_700_000_000_000)
        assert await cases.by_id(conn, made.id) == made
    assert made.number == "HQ-2026-0001" and made.identifiers == ("13812345678",)
    await db.close()
