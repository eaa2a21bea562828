"""Numbered schema migrations, each applied in its own transaction.

The schema version lives in ``PRAGMA user_version``.  A database whose version
is newer than the last migration here was written by a newer neighborwatch:
we refuse to touch it rather than risk corrupting it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store.db import Connection

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
                                      'leave', 'upload', 'rehost', 'create_room')),
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
        room_id     TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX direct_rooms_by_user ON direct_rooms (user_id, created_at);
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
        officer     TEXT,
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE rooms (
        room_id          TEXT PRIMARY KEY,
        kind             TEXT NOT NULL
                         CHECK (kind IN ('neighbourhood', 'officers', 'digest', 'taskforce')),
        station_id       TEXT,
        district         TEXT,
        neighbourhood_id INTEGER REFERENCES neighbourhoods (id),
        audience         TEXT,
        alias            TEXT,
        name             TEXT NOT NULL,
        language         TEXT NOT NULL CHECK (language IN ('zh', 'en')),
        encrypted        INTEGER NOT NULL DEFAULT 0,
        rules_row        INTEGER,
        created_by       TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        UNIQUE (neighbourhood_id, audience)
    );
    CREATE UNIQUE INDEX rooms_officers_per_station ON rooms (station_id)
        WHERE kind = 'officers';
    CREATE UNIQUE INDEX rooms_digest_per_station ON rooms (station_id)
        WHERE kind = 'digest' AND district IS NULL;
    CREATE UNIQUE INDEX rooms_digest_per_district ON rooms (district)
        WHERE kind = 'digest' AND station_id IS NULL;
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
    # 3: the case log.
    """
    CREATE TABLE cases (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        station_id       TEXT NOT NULL,
        year             INTEGER NOT NULL,
        seq              INTEGER NOT NULL,
        number           TEXT NOT NULL UNIQUE,
        source           TEXT NOT NULL CHECK (source IN ('room', 'dm', 'call', 'visit', 'officer')),
        reporter         TEXT,
        reporter_name    TEXT,
        anonymous        INTEGER NOT NULL DEFAULT 0,
        neighbourhood_id INTEGER REFERENCES neighbourhoods (id),
        room_id          TEXT,
        event_id         TEXT,
        category         TEXT NOT NULL,
        urgent           INTEGER NOT NULL DEFAULT 0,
        location         TEXT,
        identifiers      TEXT NOT NULL DEFAULT '[]',
        text             TEXT NOT NULL,
        text_truncated   INTEGER NOT NULL DEFAULT 0,
        confidence       REAL,
        status           TEXT NOT NULL CHECK (status IN ('new', 'acknowledged', 'investigating',
                                             'solved', 'referred', 'unfounded', 'duplicate')),
        assignee         TEXT,
        outcome          TEXT,
        referred_to      TEXT,
        duplicate_of     INTEGER REFERENCES cases (id),
        created_by       TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        acknowledged_at  INTEGER,
        investigating_at INTEGER,
        closed_at        INTEGER,
        reopened_at      INTEGER,
        updated_at       INTEGER NOT NULL,
        UNIQUE (station_id, year, seq)
    );
    CREATE INDEX cases_by_status ON cases (station_id, status, created_at);
    CREATE INDEX cases_by_place ON cases (neighbourhood_id, category, created_at);
    CREATE INDEX cases_by_reporter ON cases (reporter, created_at);
    CREATE INDEX cases_by_room ON cases (room_id, created_at);
    CREATE UNIQUE INDEX cases_by_event ON cases (event_id) WHERE event_id IS NOT NULL;
    CREATE TABLE case_events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id  INTEGER NOT NULL REFERENCES cases (id),
        at       INTEGER NOT NULL,
        actor    TEXT NOT NULL,
        action   TEXT NOT NULL,
        old      TEXT,
        new      TEXT,
        note     TEXT
    );
    CREATE INDEX case_events_by_case ON case_events (case_id, id);
    CREATE TABLE case_links (
        case_id     INTEGER NOT NULL REFERENCES cases (id),
        other_id    INTEGER NOT NULL REFERENCES cases (id),
        kind        TEXT NOT NULL CHECK (kind IN ('link', 'possible_duplicate')),
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (case_id, other_id)
    );
    CREATE TABLE case_attachments (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id     INTEGER NOT NULL REFERENCES cases (id),
        event_id    TEXT NOT NULL,
        sender      TEXT NOT NULL,
        msgtype     TEXT NOT NULL,
        body        TEXT,
        url         TEXT,
        file        TEXT,
        info        TEXT,
        at          INTEGER NOT NULL
    );
    CREATE INDEX case_attachments_by_case ON case_attachments (case_id);
    CREATE TABLE case_messages (
        event_ref   TEXT PRIMARY KEY,
        case_id     INTEGER NOT NULL REFERENCES cases (id),
        role        TEXT NOT NULL
    );
    CREATE TABLE recent_messages (
        event_id    TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        msgtype     TEXT NOT NULL,
        body        TEXT NOT NULL,
        content     TEXT NOT NULL,
        at          INTEGER NOT NULL
    );
    CREATE INDEX recent_messages_by_sender ON recent_messages (room_id, sender, at);
    CREATE TABLE confirmations (
        event_id      TEXT PRIMARY KEY,
        room_id       TEXT NOT NULL,
        reporter      TEXT NOT NULL,
        question_row  INTEGER,
        status        TEXT NOT NULL CHECK (status IN ('open', 'logged', 'declined', 'expired')),
        created_at    INTEGER NOT NULL
    );
    CREATE INDEX confirmations_open ON confirmations (room_id, reporter, status);
    CREATE TABLE reporters (
        station_id  TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        pseudonym   INTEGER NOT NULL,
        PRIMARY KEY (station_id, user_id),
        UNIQUE (station_id, pseudonym)
    );
    CREATE TABLE relay_questions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id     INTEGER NOT NULL REFERENCES cases (id),
        asked_by    TEXT NOT NULL,
        reply_room  TEXT NOT NULL,
        question    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        answered_at INTEGER
    );
    CREATE TABLE case_boards (
        room_id     TEXT NOT NULL,
        month       TEXT NOT NULL,
        board_row   INTEGER NOT NULL,
        PRIMARY KEY (room_id, month)
    );
    CREATE TABLE category_corrections (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id     INTEGER NOT NULL REFERENCES cases (id),
        text        TEXT NOT NULL,
        old         TEXT NOT NULL,
        new         TEXT NOT NULL,
        by          TEXT NOT NULL,
        at          INTEGER NOT NULL
    );
    CREATE INDEX outbox_by_event ON outbox (event_id) WHERE event_id IS NOT NULL;
    """,
    # 4: alerts and wanted-person notices, where they were posted, sightings.
    """
    CREATE TABLE notices (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        kind         TEXT NOT NULL CHECK (kind IN ('alert', 'wanted')),
        number       TEXT NOT NULL UNIQUE,
        station_id   TEXT NOT NULL,
        officer      TEXT NOT NULL,
        level        TEXT,
        title        TEXT,
        text         TEXT NOT NULL,
        scope        TEXT NOT NULL,
        case_id      INTEGER REFERENCES cases (id),
        photo_row    INTEGER,
        status       TEXT NOT NULL CHECK (status IN ('active', 'found', 'withdrawn', 'expired')),
        expires_at   INTEGER NOT NULL,
        reminded_at  INTEGER,
        closed_by    TEXT,
        closed_at    INTEGER,
        close_note   TEXT,
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX notices_active ON notices (status, expires_at);
    CREATE TABLE notice_posts (
        notice_id   INTEGER NOT NULL REFERENCES notices (id),
        room_id     TEXT NOT NULL,
        photo_row   INTEGER,
        card_row    INTEGER NOT NULL,
        PRIMARY KEY (notice_id, room_id)
    );
    CREATE TABLE sightings (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        notice_id   INTEGER NOT NULL REFERENCES notices (id),
        reporter    TEXT NOT NULL,
        room_id     TEXT NOT NULL,
        event_id    TEXT NOT NULL UNIQUE,
        text        TEXT NOT NULL,
        location    TEXT,
        attachment  TEXT,
        late        INTEGER NOT NULL DEFAULT 0,
        at          INTEGER NOT NULL
    );
    CREATE INDEX sightings_by_notice ON sightings (notice_id, at);
    CREATE TABLE pending_photos (
        officer     TEXT PRIMARY KEY,
        args        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    """,
    # 5: digests (each run recorded once per room and period), timed jobs, retention.
    """
    CREATE TABLE digest_runs (
        room_id       TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('daily', 'weekly')),
        period_start  INTEGER NOT NULL,
        period_end    INTEGER NOT NULL,
        late          INTEGER NOT NULL DEFAULT 0,
        message_row   INTEGER,
        created_at    INTEGER NOT NULL,
        PRIMARY KEY (room_id, kind, period_start)
    );
    CREATE TABLE job_runs (
        job          TEXT NOT NULL,
        fired_at     INTEGER NOT NULL,
        detail       TEXT,
        PRIMARY KEY (job, fired_at)
    );
    CREATE INDEX cases_by_time ON cases (station_id, created_at);
    CREATE INDEX cases_by_closing ON cases (station_id, closed_at) WHERE closed_at IS NOT NULL;
    CREATE INDEX cases_by_ack ON cases (station_id, acknowledged_at)
        WHERE acknowledged_at IS NOT NULL;
    CREATE INDEX members_by_verification ON members (verified_at) WHERE verified_at IS NOT NULL;
    ALTER TABLE cases ADD COLUMN anonymised_at INTEGER;
    ALTER TABLE case_events ADD COLUMN station_id TEXT;
    ALTER TABLE case_events ADD COLUMN response_ms INTEGER;
    CREATE INDEX case_events_activity
        ON case_events (station_id, at, action, actor, case_id, response_ms);
    UPDATE case_events SET station_id = (SELECT station_id FROM cases WHERE id = case_id),
        response_ms = CASE WHEN action = 'status' AND old = 'new'
            THEN at - (SELECT created_at FROM cases WHERE id = case_id) END;
    """,
    # 6: end-to-end encryption: pinned identities, events waiting for their keys.
    """
    CREATE TABLE identities (
        user_id        TEXT PRIMARY KEY,
        master_key     TEXT NOT NULL,
        pinned_at      INTEGER NOT NULL,
        changed_to     TEXT,
        changed_at     INTEGER
    );
    CREATE TABLE undecrypted (
        event_id      TEXT PRIMARY KEY,
        room_id       TEXT NOT NULL,
        sender        TEXT NOT NULL,
        raw           TEXT NOT NULL,
        first_seen    INTEGER NOT NULL,
        gave_up_at    INTEGER
    );
    CREATE INDEX undecrypted_waiting ON undecrypted (gave_up_at, first_seen);
    """,
    # 7: federation: rooms on other servers the bot posts in, cross-station task forces.
    """
    ALTER TABLE rooms ADD COLUMN external INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE taskforces (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id     TEXT UNIQUE,
        name        TEXT NOT NULL,
        station_id  TEXT NOT NULL,
        status      TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        closed_by   TEXT,
        closed_at   INTEGER
    );
    CREATE TABLE taskforce_members (
        taskforce_id INTEGER NOT NULL REFERENCES taskforces (id),
        user_id      TEXT NOT NULL,
        added_by     TEXT NOT NULL,
        added_at     INTEGER NOT NULL,
        PRIMARY KEY (taskforce_id, user_id)
    );
    CREATE TABLE taskforce_cases (
        taskforce_id INTEGER NOT NULL REFERENCES taskforces (id),
        case_id      INTEGER NOT NULL REFERENCES cases (id),
        linked_by    TEXT NOT NULL,
        linked_at    INTEGER NOT NULL,
        PRIMARY KEY (taskforce_id, case_id)
    );
    CREATE INDEX taskforce_cases_by_case ON taskforce_cases (case_id);
    """,
    # 8: photos are looked up by event when a tip asks for the reporter's recent ones
    # (``intake.media_before``): without this, each tip read every attachment ever kept.
    """
    CREATE INDEX case_attachments_by_event ON case_attachments (event_id);
    """,
)


async def schema_version(conn: Connection) -> int:
    cur = await conn.execute("PRAGMA user_version")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def apply_migrations(conn: Connection, migrations: Sequence[str]) -> int:
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
