"""The outbox worker: performs queued Matrix writes, in order per lane (edits aside, see
below), without blocking sync.

* messages and redactions use ``<per-database prefix>-<row id>`` as the Matrix
  transaction id: a retry after a crash or a timeout reuses it, so the
  homeserver never posts a message twice;
* 429 → wait ``retry_after_ms`` and retry the same row (order is kept);
* network / 5xx → exponential backoff (capped), the row stays pending;
* other 4xx → counted; after ``max_attempts`` the row is parked as ``failed``
  (kept in the table and shown by ``!status``), never silently deleted;
* a row may name a completion hook, run in the same transaction that marks
  it done (or parked), so follow-up work is queued exactly once;
* a ``dm:@user`` lane first finds or creates the direct chat with that user;
* edits give way: an edit is sent after the messages queued behind it (never past
  another kind of row), at most once per ``EDIT_SETTLE_S`` per edited message, and one
  followed in the lane by a newer edit of the same message is not sent at all — only the
  newest text is shown anyway. The case board is edited for every case: its edits no
  longer hold up the cases' acknowledgements, and many cases cost one edit. A dropped
  edit is marked sent without an event id.
Lanes are independent: one room waiting on a rate limit does not hold up another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.connectivity import Connectivity
from bot.domain.backoff import Backoff
from bot.domain.matrix_model import Action, SendResult
from bot.store import direct, kv, outbox
from bot.store.db import Connection, Database

log = logging.getLogger(__name__)


class Executor(Protocol):
    async def perform(self, action: Action, txn_id: str) -> SendResult: ...

    async def create_dm(self, user_id: str) -> SendResult: ...


@dataclass(frozen=True)
class Outcome:
    """What a completion hook learns about its row."""

    ok: bool
    value: str | None
    room_id: str | None
    error: str | None = None


Hook = Callable[[Connection, dict[str, Any], Outcome], Awaitable[None]]


EDIT_SETTLE_S = 1.0
"""An edit waits this long (from the first unsent edit of its message) for newer rows."""

REMOTE_KINDS = frozenset({"invite", "join"})
"""Writes that need another homeserver to answer (the invitee's, or the room's)."""


class DependencyFailed(Exception):
    """A row refers to the result of a row that was parked as failed."""


class DependencyPending(Exception):
    """A row refers to a row of another lane that has not been performed yet."""


async def txn_prefix(db: Database) -> str:
    """A random prefix chosen once per database, so a fresh database never reuses txn ids."""
    async with db.transaction() as conn:
        prefix = await kv.get(conn, kv.TXN_PREFIX)
        if prefix is None:
            prefix = "nw" + secrets.token_hex(6)
            await kv.put(conn, kv.TXN_PREFIX, prefix)
        return prefix


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        executor: Executor,
        *,
        prefix: str,
        hooks: Mapping[str, Hook] | None = None,
        concurrency: int = 8,
        max_attempts: int = 10,
        backoff_max_s: float = 60.0,
        idle_poll_s: float = 5.0,
        edit_settle_s: float = EDIT_SETTLE_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        connectivity: Connectivity | None = None,
    ) -> None:
        self._db = db
        self._connectivity = connectivity or Connectivity()
        self._executor = executor
        self._prefix = prefix
        self._hooks = dict(hooks or {})
        self._slots = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._idle_poll_s = idle_poll_s
        self._edit_settle_s = edit_settle_s
        self._edit_due: dict[tuple[str | None, str], float] = {}  # edited message → send at
        self._edit_waiters: set[asyncio.Event] = set()
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self.sent = 0

    def wake(self) -> None:
        """Something was enqueued: look at the outbox now rather than at the next poll."""
        self._wake.set()
        for waiter in self._edit_waiters:
            waiter.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                for lane in await self._lanes_with_pending():
                    task = self._lanes.get(lane)
                    if task is None or task.done():
                        self._lanes[lane] = asyncio.create_task(
                            self._drain_lane(lane), name=f"outbox:{lane}"
                        )
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_poll_s)
                except TimeoutError:
                    pass
        finally:
            for task in self._lanes.values():
                task.cancel()
            await asyncio.gather(*self._lanes.values(), return_exceptions=True)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (used at shutdown and in tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not await self._lanes_with_pending():
                return True
            self.wake()
            await asyncio.sleep(0.05)
        return False

    async def _lanes_with_pending(self) -> list[str]:
        async with self._db.transaction() as conn:
            return await outbox.lanes_with_pending(conn)

    async def _drain_lane(self, lane: str) -> None:
        backoff = Backoff(cap=self._backoff_max_s)
        while True:
            async with self._db.transaction() as conn:
                rows = await outbox.pending_in_lane(conn, lane)
            if not rows:
                return
            rows, stale = sending_order(rows)
            if stale:
                async with self._db.transaction() as conn:
                    for row in stale:
                        await outbox.mark_sent(conn, row.id, None, row.room_id)
                log.debug("%d superseded edit(s) in %s not sent", len(stale), lane)
            for row in rows:
                edited = _edit_target(row)
                if edited is not None and not await self._edit_due_now(row.room_id, edited):
                    break  # newer rows may have come: look at the lane again
                await self._connectivity.wait_up()
                # A slot per write, not per lane: a long lane (a backlog in one room, the
                # officers' room after a catch-up) or one waiting out a backoff does not
                # keep the other lanes from their turn.
                async with self._slots:
                    outcome = await self._deliver(row)
                if edited is not None and outcome != "retry":
                    self._edit_due.pop((row.room_id, edited), None)
                if outcome == "sent":
                    backoff.reset()
                elif outcome == "retry":
                    # Keep the lane's order: wait, then start again from its oldest row.
                    await self._sleep(backoff.next_delay())
                    break

    async def _edit_due_now(self, room_id: str | None, edited: str) -> bool:
        """Whether an edit of ``edited`` may go now; if not, wait (at most until it may, or
        until something is enqueued) and answer False. Edits of one message go out at most
        once per ``edit_settle_s``, and acknowledgements queued meanwhile go first."""
        loop = asyncio.get_running_loop()
        due = self._edit_due.setdefault((room_id, edited), loop.time() + self._edit_settle_s)
        remaining = due - loop.time()
        if remaining <= 0:
            return True
        enqueued = asyncio.Event()
        self._edit_waiters.add(enqueued)
        try:
            await asyncio.wait_for(enqueued.wait(), remaining)
        except TimeoutError:
            pass
        finally:
            self._edit_waiters.discard(enqueued)
        return False

    async def _deliver(self, row: outbox.OutboxRow) -> Literal["sent", "parked", "retry"]:
        try:
            room_id = row.room_id or await self._lane_room(row.lane)
            content = await self._resolve_refs(row.content)
            target = await self._resolve_refs(row.target)
        except DependencyFailed as err:
            await self._finish_failed(row, f"depends on a failed row: {err}", give_up=True)
            return "parked"
        except DependencyPending:
            return "retry"
        except _NoRoom as err:
            return await self._failed(row, err.result)
        action = Action(
            kind=row.kind,
            room_id=room_id,
            event_type=row.event_type,
            state_key=row.state_key,
            target=target,
            content=content,
            media=row.media,
        )
        txn_id = f"{self._prefix}-{row.id}"
        while True:
            result = await self._executor.perform(action, txn_id)
            if result.retry_after_ms is None:
                break
            log.info("rate limited in %s; waiting %d ms", row.lane, result.retry_after_ms)
            await self._sleep(result.retry_after_ms / 1000)
        if result.ok:
            async with self._db.transaction() as conn:
                await outbox.mark_sent(conn, row.id, result.value, room_id)
                await self._run_hook(conn, row, Outcome(True, result.value, room_id))
            self.sent += 1
            return "sent"
        return await self._failed(row, result)

    async def _failed(
        self, row: outbox.OutboxRow, result: SendResult
    ) -> Literal["parked", "retry"]:
        log.log(
            logging.DEBUG if result.waiting else logging.WARNING,
            "outbox row %d (%s in %s) not sent: %s",
            row.id,
            row.kind,
            row.lane,
            result.error,
        )
        if result.unreachable:
            self._connectivity.mark_down(result.error or "no answer")
        if not result.permanent and not (result.remote and row.kind in REMOTE_KINDS):
            return "retry"
        # Refused, or (an invitation or a join) another server keeps not answering: counted,
        # retried with backoff, and after ``max_attempts`` parked and reported by its hook.
        give_up = row.attempts + 1 >= self._max_attempts
        await self._finish_failed(row, result.error or "", give_up=give_up)
        if give_up:
            log.error(
                "gave up on outbox row %d for %s after %d attempts",
                row.id,
                row.lane,
                row.attempts + 1,
            )
            return "parked"
        return "retry"

    async def _finish_failed(self, row: outbox.OutboxRow, error: str, *, give_up: bool) -> None:
        async with self._db.transaction() as conn:
            await outbox.record_attempt(conn, row.id, error, give_up=give_up)
            if give_up:
                await self._run_hook(conn, row, Outcome(False, None, row.room_id, error))

    async def _run_hook(self, conn: Connection, row: outbox.OutboxRow, outcome: Outcome) -> None:
        if row.on_done is None:
            return
        hook = self._hooks.get(row.on_done)
        if hook is None:
            log.error("outbox row %d names an unknown hook %r", row.id, row.on_done)
            return
        await hook(conn, row.on_done_args, outcome)

    async def _lane_room(self, lane: str) -> str | None:
        """The room of a ``dm:@user`` lane: the known direct chat, or a new one."""
        if not lane.startswith(outbox.dm_lane("")):
            return None
        user_id = lane.removeprefix(outbox.dm_lane(""))
        async with self._db.transaction() as conn:
            known = await direct.room_of(conn, user_id)
        if known is not None:
            return known
        result = await self._executor.create_dm(user_id)
        if not result.ok or result.value is None:
            raise _NoRoom(result)
        async with self._db.transaction() as conn:
            await direct.remember(conn, user_id, result.value)
        log.info("opened a direct chat with %s: %s", user_id, result.value)
        return result.value

    async def _resolve_refs(self, content: Any) -> Any:
        if isinstance(content, str) and content.startswith(outbox.REF_PREFIX):
            reference, _, key = content.removeprefix(outbox.REF_PREFIX).partition("#")
            row_id = int(reference)
            async with self._db.transaction() as conn:
                status, value = await outbox.result_of(conn, row_id)
            if status == "pending":
                raise DependencyPending(row_id)
            if status != "sent" or value is None:
                raise DependencyFailed(row_id)
            result = json.loads(value) if value.startswith("{") else value
            return result[key] if key and isinstance(result, dict) else result
        if isinstance(content, dict):
            return {key: await self._resolve_refs(value) for key, value in content.items()}
        if isinstance(content, list):
            return [await self._resolve_refs(value) for value in content]
        return content


def sending_order(
    rows: Sequence[outbox.OutboxRow],
) -> tuple[list[outbox.OutboxRow], list[outbox.OutboxRow]]:
    """A lane's pending rows in the order to send them, and the edits not to send at all.

    An edit waits behind the messages queued after it (up to the next row that is not a
    message: a state event, a redaction …), so a case's acknowledgement is not held up by
    the board edit queued just before it; an edit that a later row edits again is dropped.
    """
    newest: set[tuple[str | None, str]] = set()
    stale: set[int] = set()
    for row in reversed(rows):
        target = _edit_target(row)
        if target is not None:
            if (row.room_id, target) in newest:
                stale.add(row.id)
            newest.add((row.room_id, target))
    ordered: list[outbox.OutboxRow] = []
    held: list[outbox.OutboxRow] = []
    for row in rows:
        if row.id in stale:
            continue
        if _edit_target(row) is not None:
            held.append(row)
            continue
        if row.kind != "message":
            ordered.extend(held)
            held.clear()
        ordered.append(row)
    ordered.extend(held)
    return ordered, [row for row in rows if row.id in stale]


def _edit_target(row: outbox.OutboxRow) -> str | None:
    if row.kind != "message" or row.event_type != "m.room.message" or row.on_done is not None:
        return None
    relates = row.content.get("m.relates_to")
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.replace":
        return None
    target = relates.get("event_id")
    return target if isinstance(target, str) else None


class _NoRoom(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result
