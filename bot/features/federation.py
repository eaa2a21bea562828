"""Messages from a server the room does not admit are not acted on: no tip, no command.

The bot remembers each room's ``m.room.create`` (``m.federate``, the creator's server) and
its latest ``m.room.server_acl`` — from the full state it reads when it reconciles a managed
room, and from state events as they arrive — and a gate drops a message, reaction or
redaction whose sender's server the room refuses (see ``bot/domain/federation.py`` for why
the homeserver alone does not guarantee it). Such an event is logged, not answered: an
answer would go to the room, whose own members did nothing.

State events are not stopped: membership enforcement must still see a refused server's
join to undo it, and the ACL itself is state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from bot.domain.federation import RoomFederation, server_of
from bot.features.context import EventContext
from bot.features.registry import Features
from bot.store import kv
from bot.store.db import Connection

log = logging.getLogger(__name__)

KEY = "federation:"


async def known(conn: Connection, room_id: str) -> RoomFederation:
    raw = await kv.get(conn, KEY + room_id)
    data = json.loads(raw) if raw else {}
    acl = data.get("acl")
    return RoomFederation(
        creator_server=data.get("creator_server"),
        federate=data.get("federate", True) is not False,
        acl=acl if isinstance(acl, dict) else None,
    )


async def _update(conn: Connection, room_id: str, **changes: Any) -> None:
    raw = await kv.get(conn, KEY + room_id)
    data = json.loads(raw) if raw else {}
    data.update(changes)
    await kv.put(conn, KEY + room_id, json.dumps(data, ensure_ascii=False))


async def remember(conn: Connection, room_id: str, event: Mapping[str, Any]) -> None:
    """Keep what ``event`` (a state event as JSON) says about the room's federation."""
    etype, content = event.get("type"), event.get("content")
    if event.get("state_key") != "" or not isinstance(content, Mapping):
        return
    if etype == "m.room.create":
        sender = event.get("sender")
        await _update(
            conn,
            room_id,
            federate=content.get("m.federate", True) is not False,
            creator_server=server_of(sender) if isinstance(sender, str) else None,
        )
    elif etype == "m.room.server_acl":
        await _update(conn, room_id, acl=dict(content))


async def remember_state(
    conn: Connection, room_id: str, state: Iterable[Mapping[str, Any]]
) -> None:
    for event in state:
        await remember(conn, room_id, event)


async def state_changed(ctx: EventContext) -> None:
    event = ctx.event
    if event.type in ("m.room.create", "m.room.server_acl"):
        await remember(
            ctx.deps.conn,
            event.room_id,
            {
                "type": event.type,
                "state_key": event.state_key,
                "sender": event.sender,
                "content": event.content,
            },
        )


async def foreign_server(ctx: EventContext) -> str | None:
    """Gate: a non-state event from a server the room refuses stops here."""
    if ctx.event.is_state:
        return None
    refusal = (await known(ctx.deps.conn, ctx.event.room_id)).refusal(ctx.sender)
    if refusal is None:
        return None
    log.warning(
        "ignored %s from %s in %s: %s", ctx.event.event_id, ctx.sender, ctx.event.room_id, refusal
    )
    return f"ignored:{refusal}"


def register(features: Features) -> None:
    features.gates.insert(0, foreign_server)
    features.on_state.append(state_changed)
