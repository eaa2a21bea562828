"""The outbox worker against a fake homeserver: order, 429, outages, permanent errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.delivery import OutboxWorker, txn_prefix
from bot.domain.matrix_model import SendResult
from bot.store import outbox
from bot.store.db import Database


class FakeHomeserver:
    """Answers each send from a script; dedupes by txn id like Synapse does."""

    def __init__(self, script: list[SendResult] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[tuple[str, str]] = []
        self.timeline: dict[str, list[str]] = {}
        self._by_txn: dict[str, str] = {}

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> SendResult:
        self.calls.append((room_id, txn_id))
        if self.script:
            result = self.script.pop(0)
            if not result.ok:
                return result
        if txn_id not in self._by_txn:
            self._by_txn[txn_id] = f"${len(self._by_txn)}"
            self.timeline.setdefault(room_id, []).append(content["body"])
        return SendResult(event_id=self._by_txn[txn_id])


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    yield database
    await database.close()


async def enqueue(db: Database, room: str, *bodies: str) -> None:
    async with db.transaction() as conn:
        for body in bodies:
            await outbox.enqueue(conn, room, "m.room.message", {"body": body})


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def run_until_drained(worker: OutboxWorker) -> None:
    task = asyncio.create_task(worker.run())
    try:
        assert await worker.drain(timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_messages_arrive_in_order_per_room(db: Database) -> None:
    hs = FakeHomeserver()
    await enqueue(db, "!a", "a1", "a2", "a3")
    await enqueue(db, "!b", "b1")
    await enqueue(db, "!a", "a4")
    await run_until_drained(OutboxWorker(db, hs, prefix="p"))
    assert hs.timeline == {"!a": ["a1", "a2", "a3", "a4"], "!b": ["b1"]}


async def test_429_waits_retry_after_and_resends_the_same_row(db: Database) -> None:
    sleeps = Sleeps()
    hs = FakeHomeserver([SendResult(retry_after_ms=1500, error="429")])
    await enqueue(db, "!a", "one", "two")
    await run_until_drained(OutboxWorker(db, hs, prefix="p", sleep=sleeps))
    assert hs.timeline["!a"] == ["one", "two"]
    assert sleeps.waits == [1.5]
    assert [txn for _, txn in hs.calls] == ["p-1", "p-1", "p-2"]


async def test_outage_backs_off_exponentially_and_loses_nothing(db: Database) -> None:
    sleeps = Sleeps()
    down = SendResult(error="network: connection refused")
    hs = FakeHomeserver([down, down, down, down])
    await enqueue(db, "!a", "x", "y")
    await run_until_drained(OutboxWorker(db, hs, prefix="p", sleep=sleeps))
    assert sleeps.waits == [1, 2, 4, 8]
    assert hs.timeline["!a"] == ["x", "y"]


async def test_a_resend_after_a_lost_response_is_not_doubled(db: Database) -> None:
    hs = FakeHomeserver()
    await enqueue(db, "!a", "once")
    # The homeserver stored the event but the bot crashed before recording it.
    await hs.send_event("!a", "m.room.message", {"body": "once"}, "p-1")
    await run_until_drained(OutboxWorker(db, hs, prefix="p"))
    assert hs.timeline["!a"] == ["once"]


async def test_permanent_errors_park_the_row_after_max_attempts_and_keep_it(
    db: Database,
) -> None:
    forbidden = SendResult(error="403 M_FORBIDDEN", permanent=True)
    hs = FakeHomeserver([forbidden, forbidden, forbidden])
    await enqueue(db, "!a", "lost?", "next")
    await run_until_drained(OutboxWorker(db, hs, prefix="p", max_attempts=3, sleep=Sleeps()))
    assert hs.timeline["!a"] == ["next"]
    async with db.transaction() as conn:
        stats = await outbox.stats(conn)
        cur = await conn.execute("SELECT status, attempts, last_error FROM outbox WHERE id = 1")
        row = await cur.fetchone()
    assert (stats.failed, stats.sent) == (1, 1)
    assert tuple(row) == ("failed", 3, "403 M_FORBIDDEN")  # type: ignore[arg-type]


async def test_a_slow_room_does_not_hold_up_another(db: Database) -> None:
    release = asyncio.Event()

    class Slow(FakeHomeserver):
        async def send_event(
            self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
        ) -> SendResult:
            if room_id == "!slow":
                await release.wait()
            return await super().send_event(room_id, event_type, content, txn_id)

    hs = Slow()
    await enqueue(db, "!slow", "s")
    await enqueue(db, "!fast", "f1", "f2")
    worker = OutboxWorker(db, hs, prefix="p")
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            if hs.timeline.get("!fast") == ["f1", "f2"]:
                break
            await asyncio.sleep(0.01)
        assert hs.timeline.get("!fast") == ["f1", "f2"] and "!slow" not in hs.timeline
        release.set()
        assert await worker.drain(timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_txn_prefix_is_stable_per_database_and_differs_between_databases() -> None:
    one, two = await Database.open(":memory:"), await Database.open(":memory:")
    try:
        assert await txn_prefix(one) == await txn_prefix(one)
        assert await txn_prefix(one) != await txn_prefix(two)
    finally:
        await one.close()
        await two.close()
