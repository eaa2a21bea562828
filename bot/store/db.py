"""One SQLite connection on its own thread, its pragmas, and the only ways to write.

Why not a thread hop per statement (aiosqlite)? Measured here, each hop costs
~180 µs, and handling one tip takes ~17 statements: the hops, not SQLite, would
be the bot's ceiling. So the work of a whole unit — one event, or one /sync
batch — runs *on the database thread*: the feature code is ordinary async code
that awaits the database, and on that thread each await completes at once
(``DirectConnection``), so the unit costs one hop. Small, rare units from the
event loop (the outbox worker, startup tasks) use ``transaction()``, which hops
per statement and needs no special care.

Either way a unit is one SQLite transaction (``BEGIN IMMEDIATE`` … ``COMMIT``,
rolled back on any exception), serialised with every other unit. That is what
makes inbox → handler → outbox atomic. ``synchronous=FULL``: a commit survives a
power cut, so a tip the bot has acknowledged is a tip it has stored.

A unit on the database thread also keeps a memo (``memoised``): the room, membership and
settings facts that each event of a batch would read again are read once per unit, and
forgotten as soon as the unit writes one of those tables or rolls back a savepoint.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sqlite3
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot.store.migrations import MIGRATIONS, SchemaTooNewError, apply_migrations

log = logging.getLogger(__name__)

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)
CONNECTION_SETUP = (
    # Boards to render when the unit of work ends (``store.intake.board_due``).
    "CREATE TEMP TABLE IF NOT EXISTS boards_due (room_id TEXT PRIMARY KEY)",
)

__all__ = [
    "MAX_PARAMS",
    "Connection",
    "Cursor",
    "Database",
    "Row",
    "SchemaTooNewError",
    "in_parts",
    "memoised",
    "unit_memo",
]

T = TypeVar("T")
Row = sqlite3.Row
_IN_UNIT: contextvars.ContextVar[bool] = contextvars.ContextVar("in_unit", default=False)


class NestedTransaction(RuntimeError):
    """A unit tried to open another: that would wait for itself forever."""


def _enter() -> contextvars.Token[bool]:
    if _IN_UNIT.get():
        raise NestedTransaction("a database unit cannot open another one")
    return _IN_UNIT.set(True)


class Cursor:
    """The result of one statement, already read (every query here is bounded)."""

    def __init__(self, rows: list[Row], lastrowid: int | None, rowcount: int) -> None:
        self._rows = rows
        self.lastrowid = lastrowid
        self.rowcount = rowcount

    async def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Row]:
        return self._rows


class Connection(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


def _run_statement(raw: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Cursor:
    cur = raw.execute(sql, tuple(params))
    rows = cur.fetchall() if cur.description is not None else []
    return Cursor(rows, cur.lastrowid, cur.rowcount)


def _run_many(raw: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
    raw.executemany(sql, rows)


MEMO_TABLES = ("rooms", "members", "neighbourhoods", "kv")
"""The tables a unit's memo (``memoised``) may hold reads of: the room, membership and
settings facts that every event of a batch looks up again. Any statement that writes one
of them — or a rollback — empties the memo, so a read never sees an older state."""


_MEMO_WRITE = re.compile("^ROLLBACK|" + "|".join(MEMO_TABLES))


@lru_cache(maxsize=2048)
def _clears_memo(sql: str) -> bool:
    # SELECT and SAVEPOINT (the only statements here starting with "S") never write.
    # Cached: the same few hundred statement texts come back all the time.
    return sql[0] != "S" and _MEMO_WRITE.search(sql) is not None


class DirectConnection:
    """Used on the database thread only: every ``await`` finishes immediately.

    One exists per unit of work; ``memo`` holds that unit's repeated reads (``memoised``).
    """

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw
        self.memo: dict[Hashable, Any] = {}

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self.memo and _clears_memo(sql):
            self.memo.clear()
        return _run_statement(self._raw, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.memo and _clears_memo(sql):
            self.memo.clear()
        _run_many(self._raw, sql, rows)


class ProxyConnection:
    """Used from the event loop: each statement hops to the database thread (no memo)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return await self._db._on_thread(_run_statement, self._db._raw, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db._on_thread(_run_many, self._db._raw, sql, list(rows))


MAX_PARAMS = 500
"""Values per ``IN (…)`` list, well under SQLite's limit on bound parameters."""


def in_parts(values: Sequence[T]) -> Iterator[tuple[Sequence[T], str]]:
    """``values`` in parts of at most ``MAX_PARAMS``, each with its ``?,?,…`` marks for an
    ``IN (…)`` list: a whole batch's ids in as few queries as SQLite allows."""
    for start in range(0, len(values), MAX_PARAMS):
        part = values[start : start + MAX_PARAMS]
        yield part, ",".join("?" * len(part))


def unit_memo(conn: Connection) -> dict[Hashable, Any] | None:
    """The memo of ``conn``'s unit of work (None when it keeps none): for filling it ahead."""
    return getattr(conn, "memo", None)


async def memoised(conn: Connection, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
    """``load()``, remembered for the rest of the unit of work when ``conn`` keeps a memo.

    Only for reads of ``MEMO_TABLES`` that return immutable values; ``key`` names the
    query and its arguments.
    """
    memo = unit_memo(conn)
    if memo is None:
        return await load()
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    value = await load()
    memo[key] = value
    return value


class HandlerSuspended(RuntimeError):
    """A unit run on the database thread awaited something other than the database."""


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never really suspends (it only awaits ``DirectConnection``)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise HandlerSuspended("database units may only await the database")


class Database:
    """Owns the connection and its thread; hands out transactions one at a time."""

    def __init__(self, raw: sqlite3.Connection, executor: ThreadPoolExecutor, path: Path | None):
        self._raw = raw
        self._executor = executor
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
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()

        def connect() -> sqlite3.Connection:
            raw = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            raw.row_factory = sqlite3.Row
            for statement in (*PRAGMAS, *CONNECTION_SETUP):
                raw.execute(statement)
            return raw

        raw = await loop.run_in_executor(executor, connect)
        db = cls(raw, executor, target)
        try:
            await db._on_thread(lambda: drive(apply_migrations(DirectConnection(raw), MIGRATIONS)))
        except BaseException:
            await db.close()
            raise
        return db

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        async with self._lock:
            await self._on_thread(self._raw.close)
        self._executor.shutdown(wait=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` from the event loop; rolls back on any exception."""
        token = _enter()
        try:
            async with self._lock:
                conn = ProxyConnection(self)
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
        finally:
            _IN_UNIT.reset(token)

    async def run(self, unit: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``unit`` as one transaction on the database thread (one hop in all)."""
        token = _enter()
        try:
            async with self._lock:
                return await self._on_thread(self._run_unit, unit)
        finally:
            _IN_UNIT.reset(token)

    def _run_unit(self, unit: Callable[[Connection], Awaitable[T]]) -> T:
        assert threading.current_thread().name.startswith("sqlite")
        self._raw.execute("BEGIN IMMEDIATE")
        try:
            result = drive(_as_coroutine(unit(DirectConnection(self._raw))))
        except BaseException:
            self._raw.execute("ROLLBACK")
            raise
        self._raw.execute("COMMIT")
        return result

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read outside any transaction (still serialised with writers)."""
        if _IN_UNIT.get():
            raise NestedTransaction("read through the unit's connection instead")
        async with self._lock:
            cursor = await self._on_thread(_run_statement, self._raw, sql, params)
            return await cursor.fetchall()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
