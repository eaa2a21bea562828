"""Plain data that crosses the boundary between the Matrix gateway and the rest of the bot.

``bot/matrix`` converts nio's objects into these, so nothing above it ever
sees a nio type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BotSession:
    """A login to restore on every start (same device id ⇒ same crypto identity)."""

    user_id: str
    device_id: str
    access_token: str


@dataclass(frozen=True)
class RoomEvent:
    """One timeline event, in the order the homeserver gave it."""

    event_id: str
    room_id: str
    sender: str
    type: str
    content: Mapping[str, Any]
    origin_server_ts: int
    state_key: str | None = None
    unsigned: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] | None = None  # the event as received (kept for encrypted events)

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def prev_content(self) -> Mapping[str, Any]:
        prev = self.unsigned.get("prev_content")
        return prev if isinstance(prev, Mapping) else {}

    @property
    def membership(self) -> str | None:
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    @property
    def body(self) -> str:
        body = self.content.get("body")
        return body if isinstance(body, str) else ""

    @property
    def msgtype(self) -> str:
        msgtype = self.content.get("msgtype")
        return msgtype if isinstance(msgtype, str) else ""

    @property
    def is_edit(self) -> bool:
        """An edit (``m.replace``) of an earlier message: never run as a command again."""
        relates = self.content.get("m.relates_to")
        return isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace"

    @property
    def redacts(self) -> str | None:
        """The event an ``m.room.redaction`` removes. Room version 11 puts it in ``content``;
        Synapse copies it there for older versions too (since 1.89)."""
        target = self.content.get("redacts")
        return target if isinstance(target, str) and target else None

    @property
    def in_reply_to(self) -> str | None:
        """The event this one replies to (``m.in_reply_to``), if it is well-formed."""
        relates = self.content.get("m.relates_to")
        if not isinstance(relates, Mapping):
            return None
        reply = relates.get("m.in_reply_to")
        if not isinstance(reply, Mapping):
            return None
        event_id = reply.get("event_id")
        return event_id if isinstance(event_id, str) and event_id else None


@dataclass(frozen=True)
class Invite:
    room_id: str
    inviter: str | None
    is_direct: bool = False


@dataclass(frozen=True)
class SyncBatch:
    """Everything one /sync returned, gaps filled, oldest event first per room."""

    next_batch: str
    events: list[RoomEvent] = field(default_factory=list)
    invites: list[Invite] = field(default_factory=list)
    initial: bool = False


@dataclass(frozen=True)
class SendResult:
    """What happened to one write: done, rate-limited, or failed (transient or not).

    ``value`` is what the homeserver gave back: an event id, a room id, an
    ``mxc://`` URI, or nothing for invites and kicks.
    """

    value: str | None = None
    retry_after_ms: int | None = None
    error: str | None = None
    permanent: bool = False
    unreachable: bool = False  # no answer, or a gateway error (502/503/504): the server is down
    remote: bool = False  # our homeserver answered that another server did not
    waiting: bool = False  # not an error: the room is not ready for it yet (retried quietly)

    @property
    def ok(self) -> bool:
        return self.error is None and self.retry_after_ms is None


@dataclass(frozen=True)
class Action:
    """One write to Matrix, as queued in the outbox (see ``bot/store/outbox.py``).

    ``kind`` says which: ``message`` / ``state`` (``event_type``, ``state_key``,
    ``content``), ``redact`` (``target`` = event id), ``invite`` / ``kick``
    (``target`` = user, ``content["reason"]``), ``join`` / ``leave``,
    ``upload`` (``media`` bytes, ``content`` = mimetype + filename) and
    ``create_room`` (``content`` = the ``/createRoom`` body).
    """

    kind: str
    room_id: str | None
    event_type: str | None = None
    state_key: str | None = None
    target: str | None = None
    content: Mapping[str, Any] = field(default_factory=dict)
    media: bytes | None = None
