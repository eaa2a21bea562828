"""The outbox worker against a fake homeserver: order, 429, outages, permanent errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.connectivity import Connectivity
from bot.delivery import OutboxWorker, Outcome, txn_prefix
from bot.domain.matrix_model import Action, SendResult
from bot.matrix.http import HttpReply
from bot.pipeline import make_deps
from bot.store import outbox
from bot.store.db import Database
from tests.support.units import unit_config


class FakeHomeserver:
    """Answers each write from a script; dedupes messages by txn id like Synapse does."""

    def __init__(self, script: list[SendResult] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[tuple[str | None, str]] = []
        self.timeline: dict[str, list[str]] = {}
        self.state: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.dms: list[str] = []
        self._by_txn: dict[str, str] = {}

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> SendResult:
        """A message sent outside the worker (to simulate an earlier, unrecorded send)."""
        return await self.perform(Action("message", room_id, event_type, content=content), txn_id)

    async def perform(self, action: Action, txn_id: str) -> SendResult:
        self.calls.append((action.room_id, txn_id))
        if self.script:
            result = self.script.pop(0)
            if not result.ok:
                return result
        assert action.room_id is not None
        if action.kind == "state":
            key = (action.room_id, str(action.event_type), str(action.state_key))
            self.state[key] = dict(action.content)
            return SendResult(value=f"$state{len(self.state)}")
        if txn_id not in self._by_txn:
            self._by_txn[txn_id] = f"${len(self._by_txn)}"
            self.timeline.setdefault(action.room_id, []).append(action.content["body"])
        return SendResult(value=self._by_txn[txn_id])

    async def create_dm(self, user_id: str) -> SendResult:
        self.dms.append(user_id)
        return SendResult(value=f"!dm-{user_id}")


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
        async def perform(self, action: Action, txn_id: str) -> SendResult:
            if action.room_id == "!slow":
                await release.wait()
            return await super().perform(action, txn_id)

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


async def test_a_completion_hook_runs_once_in_the_transaction_that_marks_the_row_sent(
    db: Database,
) -> None:
    seen: list[tuple[dict[str, Any], Outcome]] = []

    async def hook(conn: Any, args: dict[str, Any], outcome: Outcome) -> None:
        seen.append((args, outcome))
        await outbox.enqueue(conn, "!a", "m.room.message", {"body": "follow-up"})

    async with db.transaction() as conn:
        await outbox.enqueue(
            conn, "!a", "m.room.message", {"body": "first"}, on_done="h", on_done_args={"n": 1}
        )
    hs = FakeHomeserver()
    await run_until_drained(OutboxWorker(db, hs, prefix="p", hooks={"h": hook}))
    assert hs.timeline["!a"] == ["first", "follow-up"]
    assert seen == [({"n": 1}, Outcome(True, "$0", "!a"))]


async def test_a_later_row_can_use_the_event_id_of_an_earlier_one(db: Database) -> None:
    async with db.transaction() as conn:
        rules = await outbox.enqueue(conn, "!a", "m.room.message", {"body": "rules"})
        await outbox.enqueue(
            conn,
            "!a",
            "m.room.pinned_events",
            {"pinned": [outbox.ref(rules)]},
            kind="state",
            state_key="",
        )
    hs = FakeHomeserver()
    await run_until_drained(OutboxWorker(db, hs, prefix="p"))
    assert hs.state[("!a", "m.room.pinned_events", "")] == {"pinned": ["$0"]}


async def test_a_row_depending_on_a_failed_row_is_parked_not_sent_half_done(
    db: Database,
) -> None:
    forbidden = SendResult(error="403", permanent=True)
    async with db.transaction() as conn:
        rules = await outbox.enqueue(conn, "!a", "m.room.message", {"body": "rules"})
        await outbox.enqueue(
            conn,
            "!a",
            "m.room.pinned_events",
            {"pinned": [outbox.ref(rules)]},
            kind="state",
            state_key="",
        )
    hs = FakeHomeserver([forbidden])
    await run_until_drained(OutboxWorker(db, hs, prefix="p", max_attempts=1, sleep=Sleeps()))
    assert hs.state == {}
    async with db.transaction() as conn:
        assert (await outbox.stats(conn)).failed == 2


async def test_direct_messages_open_one_chat_per_person_and_reuse_it(db: Database) -> None:
    async with db.transaction() as conn:
        for body in ("one", "two"):
            await outbox.enqueue(
                conn, None, "m.room.message", {"body": body}, lane=outbox.dm_lane("@li:x")
            )
    hs = FakeHomeserver()
    await run_until_drained(OutboxWorker(db, hs, prefix="p"))
    async with db.transaction() as conn:
        await outbox.enqueue(
            conn, None, "m.room.message", {"body": "three"}, lane=outbox.dm_lane("@li:x")
        )
    await run_until_drained(OutboxWorker(db, hs, prefix="p"))
    assert hs.dms == ["@li:x"]
    assert hs.timeline == {"!dm-@li:x": ["one", "two", "three"]}


async def test_txn_prefix_is_stable_per_database_and_differs_between_databases() -> None:
    one, two = await Database.open(":memory:"), await Database.open(":memory:")
    try:
        assert await txn_prefix(one) == await txn_prefix(one)
        assert await txn_prefix(one) != await txn_prefix(two)
    finally:
        await one.close()
        await two.close()


async def test_while_the_server_is_unreachable_the_worker_waits_for_sync_instead_of_probing(
    db: Database,
) -> None:
    connectivity = Connectivity()
    hs = FakeHomeserver([SendResult(error="network: refused", unreachable=True)])
    await enqueue(db, "!a", "held")
    worker = OutboxWorker(db, hs, prefix="p", sleep=Sleeps(), connectivity=connectivity)
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            if not connectivity.is_up:
                break
            await asyncio.sleep(0.01)
        assert not connectivity.is_up
        await asyncio.sleep(0.2)
        assert len(hs.calls) == 1, "no second probe while the server is down"
        connectivity.mark_up()  # what the sync loop does when /sync answers again
        assert await worker.drain(timeout=5)
        assert hs.timeline["!a"] == ["held"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_invite_to_a_server_that_is_down_is_retried_then_reported_room_unblocked(
    db: Database,
) -> None:
    """Our homeserver answers 502 (with a Matrix error code): the invitee's server is down.
    The room's messages go on; the invitation is retried with backoff, counted, and finally
    given up, which runs its hook (the officer who asked is told)."""
    remote_down = HttpReply(
        502, {"errcode": "M_UNKNOWN", "error": "Can't connect to server b.example"}
    ).as_result()
    assert remote_down.remote and not remote_down.unreachable and not remote_down.permanent
    proxy_down = HttpReply(502, {}).as_result()
    assert proxy_down.unreachable and not proxy_down.remote

    class PeerDown(FakeHomeserver):
        async def perform(self, action: Action, txn_id: str) -> SendResult:
            if action.kind == "invite":
                self.calls.append((action.room_id, f"invite {action.target}"))
                return remote_down
            return await super().perform(action, txn_id)

    outcomes: list[tuple[dict[str, Any], Outcome]] = []

    async def hook(conn: Any, args: dict[str, Any], outcome: Outcome) -> None:
        outcomes.append((args, outcome))

    async with db.transaction() as conn:
        deps = make_deps(conn, unit_config(), 0, "$enrol", "@wang:police.example")
        await deps.actions.invite("!a", "@li:b.example")
        await outbox.enqueue(conn, "!a", "m.room.message", {"body": "after the invitation"})
    sleeps = Sleeps()
    connectivity = Connectivity()
    hs = PeerDown()
    worker = OutboxWorker(
        db,
        hs,
        prefix="p",
        max_attempts=4,
        sleep=sleeps,
        connectivity=connectivity,
        hooks={"membership.done": hook},
    )
    await run_until_drained(worker)
    assert hs.timeline["!a"] == ["after the invitation"]
    assert [c for c in hs.calls if c[1].startswith("invite")] == [
        ("!a", "invite @li:b.example")
    ] * 4
    assert sleeps.waits[:3] == [1, 2, 4], "backoff between the attempts"
    assert connectivity.is_up, "our own homeserver answered all along"
    [(args, outcome)] = outcomes
    assert args["actor"] == "@wang:police.example" and args["user"] == "@li:b.example"
    assert not outcome.ok and "Can't connect" in (outcome.error or "")


async def test_edits_give_way_to_messages_and_only_the_newest_is_sent(db: Database) -> None:
    hs = FakeHomeserver()
    async with db.transaction() as conn:
        board = await outbox.enqueue(conn, "!a", "m.room.message", {"body": "board v1"})
        other = await outbox.enqueue(conn, "!a", "m.room.message", {"body": "other v1"})
        for body, target in [
            ("board v2", board),
            ("ack 1", None),
            ("other v2", other),
            ("board v3", board),
            ("ack 2", None),
            ("pin", None),
            ("board v4", board),
            ("ack 3", None),
        ]:
            content: dict[str, Any] = {"body": body}
            if target is not None:
                relation = {"rel_type": "m.replace", "event_id": outbox.ref(target)}
                content["m.relates_to"] = relation
            kind: Any = "state" if body == "pin" else "message"
            event_type = "m.room.pinned_events" if body == "pin" else "m.room.message"
            await outbox.enqueue(conn, "!a", event_type, content, kind=kind, state_key="")
    await run_until_drained(OutboxWorker(db, hs, prefix="p", edit_settle_s=0))
    # Acknowledgements first, then the newest edit of each message (an edit is not moved
    # past the state event); the older edits of the board are never sent.
    assert hs.timeline["!a"] == [
        "board v1",
        "other v1",
        "ack 1",
        "ack 2",
        "other v2",
        "ack 3",
        "board v4",
    ]
    assert hs.state[("!a", "m.room.pinned_events", "")] == {"body": "pin"}
    rows = await db.fetchall("SELECT id, status, event_id FROM outbox ORDER BY id")
    dropped = [r[0] for r in rows if r[1] == "sent" and r[2] is None]
    assert dropped == [3, 6]


async def test_an_edit_waits_a_moment_and_what_is_queued_meanwhile_goes_first(
    db: Database,
) -> None:
    hs = FakeHomeserver()
    async with db.transaction() as conn:
        board = await outbox.enqueue(conn, "!a", "m.room.message", {"body": "board"})
    worker = OutboxWorker(db, hs, prefix="p", edit_settle_s=0.3)
    task = asyncio.create_task(worker.run())
    try:
        for n in (1, 2):
            async with db.transaction() as conn:
                await outbox.enqueue(conn, "!a", "m.room.message", {"body": f"ack {n}"})
                relation = {"rel_type": "m.replace", "event_id": outbox.ref(board)}
                edit = {"body": f"board v{n}", "m.relates_to": relation}
                await outbox.enqueue(conn, "!a", "m.room.message", edit)
            worker.wake()
            await asyncio.sleep(0.1)
        assert hs.timeline["!a"] == ["board", "ack 1", "ack 2"]  # the edits wait
        assert await worker.drain(timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert hs.timeline["!a"] == ["board", "ack 1", "ack 2", "board v2"]
