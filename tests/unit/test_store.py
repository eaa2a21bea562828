"""The database: pragmas, migrations, refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.store import audit, inbox, kv, outbox
from bot.store.db import Database
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
