"""Store-backed implementations of the features' ports, bound to one transaction."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.content import edit_content, image_content, notice_content
from bot.domain.render import Message
from bot.features.ports import RuntimeInfo, StatusReport
from bot.store import audit, e2ee, inbox, outbox
from bot.store.db import Connection


class OutboxMessenger:
    """Sending = writing a row to the outbox inside the event's transaction."""

    def __init__(self, conn: Connection, source_event: str | None = None) -> None:
        self._conn = conn
        self._source_event = source_event
        self.queued = 0

    async def send(
        self,
        room_id: str,
        message: Message,
        *,
        reply_to: str | None = None,
        mentions: Sequence[str] = (),
        tag: Mapping[str, Any] | None = None,
        thread_root: str | None = None,
    ) -> int:
        content = notice_content(
            message, reply_to=reply_to, mentions=mentions, tag=tag, thread_root=thread_root
        )
        return await self._enqueue(room_id, None, content)

    async def edit(
        self,
        room_id: str,
        message_row: int,
        message: Message,
        tag: Mapping[str, Any] | None = None,
    ) -> int:
        return await self._enqueue(
            room_id, None, edit_content(outbox.ref(message_row), message, tag)
        )

    async def react(self, room_id: str, event_id: str, key: str) -> int:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self._enqueue(room_id, None, content, event_type="m.reaction")

    async def send_dm(
        self, user_id: str, message: Message, *, tag: Mapping[str, Any] | None = None
    ) -> int:
        return await self._enqueue(None, outbox.dm_lane(user_id), notice_content(message, tag=tag))

    async def send_media(self, user_id: str, content: Mapping[str, Any]) -> int:
        return await self._enqueue(None, outbox.dm_lane(user_id), dict(content))

    async def send_image(
        self,
        room_id: str | None,
        image: bytes,
        *,
        filename: str,
        mimetype: str,
        width: int,
        height: int,
        caption: str,
        dm_user: str | None = None,
        tag: Mapping[str, Any] | None = None,
    ) -> int:
        lane = outbox.dm_lane(dm_user) if dm_user else None
        upload = await outbox.enqueue(
            self._conn,
            room_id,
            None,
            {"mimetype": mimetype, "filename": filename},
            kind="upload",
            lane=lane,
            media=image,
            source_event=self._source_event,
        )
        content = image_content(
            outbox.ref(upload, "url"),
            file=outbox.ref(upload, "file"),
            filename=filename,
            mimetype=mimetype,
            size=len(image),
            width=width,
            height=height,
            caption=caption,
            tag=tag,
        )
        return await self._enqueue(room_id, lane, content)

    async def _enqueue(
        self,
        room_id: str | None,
        lane: str | None,
        content: dict[str, Any],
        event_type: str = "m.room.message",
    ) -> int:
        row = await outbox.enqueue(
            self._conn,
            room_id,
            event_type,
            content,
            lane=lane,
            source_event=self._source_event,
        )
        self.queued += 1
        return row


class OutboxRoomActions:
    """Membership and settings changes as outbox rows, ordered with the room's messages.

    Invitations and kicks get a lane per room and person: one waiting for a server that is
    down holds up neither the room's messages nor other people. If one is finally given up,
    the ``membership.done`` hook tells whoever asked for it (``actor``).
    """

    def __init__(
        self, conn: Connection, source_event: str | None = None, actor: str | None = None
    ) -> None:
        self._conn = conn
        self._source_event = source_event
        self._actor = actor

    async def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self._member("invite", room_id, user_id, reason)

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        await self._member("kick", room_id, user_id, reason)

    async def _member(self, kind: outbox.Kind, room_id: str, user: str, reason: str | None) -> None:
        await outbox.enqueue(
            self._conn,
            room_id,
            None,
            {"reason": reason} if reason else {},
            kind=kind,
            target=user,
            lane=f"member:{room_id}|{user}",
            source_event=self._source_event,
            on_done="membership.done",
            on_done_args={"kind": kind, "room_id": room_id, "user": user, "actor": self._actor},
        )

    async def put_state(
        self, room_id: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> int:
        return await outbox.enqueue(
            self._conn,
            room_id,
            event_type,
            dict(content),
            kind="state",
            state_key=state_key,
            source_event=self._source_event,
        )

    async def pin(self, room_id: str, message_rows: Sequence[int]) -> None:
        pinned = [outbox.ref(row) for row in message_rows]
        await self.put_state(room_id, "m.room.pinned_events", {"pinned": pinned})

    async def create_room(
        self, key: str, body: Mapping[str, Any], *, on_done: str, args: Mapping[str, Any]
    ) -> None:
        await outbox.enqueue(
            self._conn,
            None,
            None,
            dict(body),
            kind="create_room",
            lane=f"create:{key}",
            source_event=self._source_event,
            on_done=on_done,
            on_done_args=dict(args),
        )

    async def creating(self, key: str) -> bool:
        return await outbox.lane_pending(self._conn, f"create:{key}")

    async def join(
        self,
        room_id: str,
        via: Sequence[str] = (),
        *,
        on_done: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        await outbox.enqueue(
            self._conn,
            room_id,
            None,
            {"via": list(via)},
            kind="join",
            target=room_id,
            on_done=on_done,
            on_done_args=dict(args) if args is not None else None,
        )

    async def leave(self, room_id: str) -> None:
        await outbox.enqueue(self._conn, room_id, None, {}, kind="leave")


class SqlAuditLog:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def record(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        room_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await audit.record(self._conn, actor, action, target=target, room_id=room_id, detail=detail)


class TxStatusProbe:
    """Reads the status figures through the transaction that is already open."""

    def __init__(self, conn: Connection, runtime: RuntimeInfo) -> None:
        self._conn = conn
        self._runtime = runtime

    async def status(self) -> StatusReport:
        now = time.time()
        stats = await outbox.stats(self._conn)
        last = self._runtime.last_sync_at
        waiting, given_up = await e2ee.counts(self._conn)
        return StatusReport(
            uptime_s=now - self._runtime.started_at,
            events_processed=await inbox.count(self._conn),
            outbox_pending=stats.pending,
            outbox_sent=stats.sent,
            outbox_failed=stats.failed,
            last_sync_age_s=None if last is None else now - last,
            homeserver=self._runtime.homeserver,
            unreadable_waiting=waiting,
            unreadable_given_up=given_up,
        )
