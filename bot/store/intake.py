"""What intake remembers between messages: recent messages (for ``!tip`` as a reply and for
photos sent just before a tip), open "shall I log this?" questions, relayed questions to
reporters, case boards and category corrections."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.store.db import Connection

RECENT_KEEP_MS = 3 * 86_400_000
"""Chatter is kept three days at most (for ``!tip`` replies), then deleted."""


@dataclass(frozen=True)
class RecentMessage:
    event_id: str
    room_id: str
    sender: str
    msgtype: str
    body: str
    content: dict[str, Any]
    at: int


async def remember(
    conn: Connection,
    event_id: str,
    room_id: str,
    sender: str,
    content: dict[str, Any],
    at: int,
) -> None:
    body = str(content.get("body", ""))[:16_000]
    await conn.execute(
        "INSERT OR IGNORE INTO recent_messages (event_id, room_id, sender, msgtype, body,"
        " content, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            room_id,
            sender,
            str(content.get("msgtype", "")),
            body,
            json.dumps(content, ensure_ascii=False)[:32_000],
            at,
        ),
    )


def _recent(r: Any) -> RecentMessage:
    try:
        content = json.loads(r[5])
    except ValueError:
        content = {}
    return RecentMessage(r[0], r[1], r[2], r[3], r[4], content, int(r[6]))


async def message(conn: Connection, event_id: str) -> RecentMessage | None:
    cur = await conn.execute(
        "SELECT event_id, room_id, sender, msgtype, body, content, at FROM recent_messages"
        " WHERE event_id = ?",
        (event_id,),
    )
    row = await cur.fetchone()
    return _recent(row) if row else None


async def media_before(
    conn: Connection, room_id: str, sender: str, since: int
) -> list[RecentMessage]:
    """Photos and files ``sender`` posted in the room since ``since`` (not yet attached)."""
    cur = await conn.execute(
        "SELECT event_id, room_id, sender, msgtype, body, content, at FROM recent_messages"
        " WHERE room_id = ? AND sender = ? AND at >= ?"
        " AND msgtype IN ('m.image', 'm.file', 'm.video', 'm.audio')"
        " AND NOT EXISTS (SELECT 1 FROM case_attachments a"
        " WHERE a.event_id = recent_messages.event_id) ORDER BY at",
        (room_id, sender, since),
    )
    return [_recent(r) for r in await cur.fetchall()]


async def forget(conn: Connection, event_id: str) -> None:
    """A message its author deleted before it was logged is not kept for a later ``!tip``."""
    await conn.execute("DELETE FROM recent_messages WHERE event_id = ?", (event_id,))


async def prune(conn: Connection, now: int) -> None:
    await conn.execute("DELETE FROM recent_messages WHERE at < ?", (now - RECENT_KEEP_MS,))


# ------------------------------------------------------------- confirmations


async def ask(
    conn: Connection,
    event_id: str,
    room_id: str,
    reporter: str,
    question_row: int,
    now: int,
) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO confirmations (event_id, room_id, reporter, question_row,"
        " status, created_at) VALUES (?, ?, ?, ?, 'open', ?)",
        (event_id, room_id, reporter, question_row, now),
    )


async def open_question(conn: Connection, room_id: str, reporter: str, since: int) -> str | None:
    """The tip event the bot last asked ``reporter`` about in this room, if still open."""
    cur = await conn.execute(
        "SELECT event_id FROM confirmations WHERE room_id = ? AND reporter = ?"
        " AND status = 'open' AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
        (room_id, reporter, since),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def question_for(
    conn: Connection, bot_event_id: str, *, room_id: str | None = None, reporter: str | None = None
) -> str | None:
    """The tip event a question of the bot (by its event id) was about; with ``room_id`` and
    ``reporter``, only a question asked there, of them."""
    cur = await conn.execute(
        "SELECT c.event_id FROM confirmations c JOIN outbox o ON o.id = c.question_row"
        " WHERE o.event_id = ? AND c.status = 'open'"
        " AND c.room_id = COALESCE(?, c.room_id) AND c.reporter = COALESCE(?, c.reporter)",
        (bot_event_id, room_id, reporter),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def close_question(conn: Connection, event_id: str, status: str) -> None:
    await conn.execute("UPDATE confirmations SET status = ? WHERE event_id = ?", (status, event_id))


# ------------------------------------------------------------ relayed questions


async def add_relay(
    conn: Connection,
    case_id: int,
    asked_by: str,
    reply_room: str,
    question: str,
    now: int,
) -> int:
    cur = await conn.execute(
        "INSERT INTO relay_questions (case_id, asked_by, reply_room, question, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (case_id, asked_by, reply_room, question, now),
    )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


async def open_relay(
    conn: Connection, reporter: str, since: int
) -> tuple[int, int, str, str] | None:
    """(relay id, case id, asked by, reply room) of the newest unanswered question to them."""
    cur = await conn.execute(
        "SELECT r.id, r.case_id, r.asked_by, r.reply_room FROM relay_questions r"
        " JOIN cases c ON c.id = r.case_id WHERE c.reporter = ? AND r.answered_at IS NULL"
        " AND r.created_at >= ? ORDER BY r.id DESC LIMIT 1",
        (reporter, since),
    )
    row = await cur.fetchone()
    return (int(row[0]), int(row[1]), str(row[2]), str(row[3])) if row else None


async def answered(conn: Connection, relay_id: int, now: int) -> None:
    await conn.execute("UPDATE relay_questions SET answered_at = ? WHERE id = ?", (now, relay_id))


# ------------------------------------------------------------------- boards


async def board_row(conn: Connection, room_id: str, month: str) -> int | None:
    cur = await conn.execute(
        "SELECT board_row FROM case_boards WHERE room_id = ? AND month = ?", (room_id, month)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def set_board_row(conn: Connection, room_id: str, month: str, row: int) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO case_boards (room_id, month, board_row) VALUES (?, ?, ?)",
        (room_id, month, row),
    )


async def board_due(conn: Connection, room_id: str) -> None:
    """Note that ``room_id``'s board must be rendered again before this unit of work ends.

    A TEMP table (``db.CONNECTION_SETUP`` creates it): it belongs to this connection, a
    rolled-back event takes its mark with it, and it is never written to disk."""
    await conn.execute("INSERT OR IGNORE INTO temp.boards_due (room_id) VALUES (?)", (room_id,))


async def take_boards_due(conn: Connection) -> list[str]:
    """The rooms whose board is due (and forget them)."""
    rows = await (await conn.execute("SELECT room_id FROM temp.boards_due")).fetchall()
    if rows:
        await conn.execute("DELETE FROM temp.boards_due")
    return [str(row[0]) for row in rows]


async def correction(
    conn: Connection, case_id: int, text: str, old: str, new: str, by: str, now: int
) -> None:
    """A category corrected by an officer: kept as a labelled example for the extractor."""
    await conn.execute(
        "INSERT INTO category_corrections (case_id, text, old, new, by, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (case_id, text, old, new, by, now),
    )
