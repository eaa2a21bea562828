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
    # 1: the exactly-once pipeline, the bot's session, direct chats, the audit trail.
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
        lane          TEXT NOT NULL,
        kind          TEXT NOT NULL DEFAULT 'message'
                      CHECK (kind IN ('message', 'state', 'redact', 'invite', 'kick', 'join',
                                      'leave', 'upload', 'create_room')),
        room_id       TEXT,
        event_type    TEXT,
        state_key     TEXT,
        target        TEXT,
        content       TEXT NOT NULL DEFAULT '{}',
        media         BLOB,
        source_event  TEXT,
        on_done       TEXT,
        on_done_args  TEXT,
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'sent', 'failed')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_error    TEXT,
        created_at    INTEGER NOT NULL,
        sent_at       INTEGER,
        event_id      TEXT
    );
    CREATE TABLE direct_rooms (
        user_id     TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX outbox_pending ON outbox (lane, id) WHERE status = 'pending';
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
    # 2: the organisation: neighbourhoods, managed rooms, members, join codes and requests.
    """
    CREATE TABLE neighbourhoods (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        station_id  TEXT NOT NULL,
        slug        TEXT NOT NULL UNIQUE,
        name        TEXT NOT NULL,
        language    TEXT NOT NULL CHECK (language IN ('zh', 'en')),
        welcome     INTEGER NOT NULL DEFAULT 1,
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE rooms (
        room_id          TEXT PRIMARY KEY,
        kind             TEXT NOT NULL
                         CHECK (kind IN ('neighbourhood', 'officers', 'digest', 'taskforce')),
        station_id       TEXT,
        neighbourhood_id INTEGER REFERENCES neighbourhoods (id),
        audience         TEXT,
        alias            TEXT,
        name             TEXT NOT NULL,
        language         TEXT NOT NULL CHECK (language IN ('zh', 'en')),
        encrypted        INTEGER NOT NULL DEFAULT 0,
        rules_event_id   TEXT,
        created_by       TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        UNIQUE (neighbourhood_id, audience)
    );
    CREATE UNIQUE INDEX rooms_officers_per_station ON rooms (station_id)
        WHERE kind = 'officers';
    CREATE TABLE members (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id      TEXT NOT NULL REFERENCES rooms (room_id),
        user_id      TEXT NOT NULL,
        name         TEXT,
        role         TEXT,
        unit         TEXT,
        phone        TEXT,
        status       TEXT NOT NULL
                     CHECK (status IN ('verified', 'unverified', 'left', 'removed')),
        via          TEXT NOT NULL,
        verified_by  TEXT,
        verified_at  INTEGER,
        invited_by   TEXT,
        joined_at    INTEGER,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        UNIQUE (room_id, user_id)
    );
    CREATE INDEX members_by_user ON members (user_id, status);
    CREATE TABLE join_codes (
        code        TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL REFERENCES rooms (room_id),
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        max_uses    INTEGER NOT NULL CHECK (max_uses > 0),
        uses        INTEGER NOT NULL DEFAULT 0,
        revoked     INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE join_requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id      TEXT NOT NULL,
        room_id      TEXT NOT NULL REFERENCES rooms (room_id),
        source       TEXT NOT NULL CHECK (source IN ('knock', 'dm')),
        code         TEXT,
        reason       TEXT,
        status       TEXT NOT NULL
                     CHECK (status IN ('pending', 'form', 'done', 'denied', 'cancelled')),
        step         TEXT,
        name         TEXT,
        unit         TEXT,
        approved_by  TEXT,
        decided_by   TEXT,
        decided_at   INTEGER,
        note         TEXT,
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX join_requests_open ON join_requests (user_id, status);
    CREATE TABLE throttle (
        key  TEXT NOT NULL,
        at   INTEGER NOT NULL
    );
    CREATE INDEX throttle_by_key ON throttle (key, at);
    CREATE TABLE reconcile_queue (
        room_id       TEXT PRIMARY KEY,
        requested_at  INTEGER NOT NULL
    );
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
