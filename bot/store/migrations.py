"""Numbered schema migrations, each applied in its own transaction.

The schema version lives in ``PRAGMA user_version``.  A database whose version
is newer than the last migration here was written by a newer neighborwatch:
we refuse to touch it rather than risk corrupting it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiosqlite

log = logging.getLogger(__name__)


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of neighborwatch."""


MIGRATIONS: tuple[str, ...] = (
    # 1: the exactly-once pipeline, the bot's session, the audit trail.
    """
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE session (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        user_id      TEXT NOT NULL,
        device_id    TEXT NOT NULL,
        access_token TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE processed_events (
        event_id     TEXT PRIMARY KEY,
        room_id      TEXT NOT NULL,
        sender       TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        processed_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id       TEXT NOT NULL,
        event_type    TEXT NOT NULL,
        content       TEXT NOT NULL,
        source_event  TEXT,
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'sent', 'failed')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_error    TEXT,
        created_at    INTEGER NOT NULL,
        sent_at       INTEGER,
        event_id      TEXT
    );
    CREATE INDEX outbox_pending ON outbox (room_id, id) WHERE status = 'pending';
    CREATE TABLE audit_log (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT,
        room_id   TEXT,
        detail    TEXT
    );
    CREATE INDEX audit_by_actor ON audit_log (actor, at);
    """,
)


async def schema_version(conn: aiosqlite.Connection) -> int:
    cur = await conn.execute("PRAGMA user_version")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def apply_migrations(conn: aiosqlite.Connection, migrations: Sequence[str]) -> int:
    """Bring the schema up to ``len(migrations)``; returns the final version."""
    current = await schema_version(conn)
    latest = len(migrations)
    if current > latest:
        raise SchemaTooNewError(
            f"the database is at schema version {current}, but this neighborwatch only "
            f"knows up to {latest}: it was written by a newer version. Upgrade neighborwatch "
            "(or restore a backup made by this version); the database was left untouched."
        )
    for version in range(current + 1, latest + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[version - 1]):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        log.info("database migrated to schema version %d", version)
    return latest


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations contain no ';' in literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
