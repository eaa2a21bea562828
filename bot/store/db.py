"""One SQLite connection, its pragmas, and the only way to write: a transaction.

Every write goes through ``Database.transaction()``, which serialises access to
the single aiosqlite connection with an asyncio lock.  That is what makes the
inbox → handler → outbox step atomic: either the event is marked processed and
its replies are queued, or neither happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.migrations import MIGRATIONS, SchemaTooNewError, apply_migrations

log = logging.getLogger(__name__)

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

__all__ = ["Database", "SchemaTooNewError"]


class Database:
    """Owns the connection; hands out transactions one at a time."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | None) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Open (creating if needed) and migrate the database at ``path``.

        ``":memory:"`` gives a private in-memory database for unit tests.
        Raises ``SchemaTooNewError`` when the file was written by a newer version.
        """
        target = Path(path) if str(path) != ":memory:" else None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        try:
            for pragma in PRAGMAS:
                await conn.execute(pragma)
            await apply_migrations(conn, MIGRATIONS)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, target)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolls back on any exception."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        """A read outside any transaction (still serialised with writers)."""
        async with self._lock:
            cur = await self._conn.execute(sql, params)
            rows = await cur.fetchall()
            return list(rows)

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None
