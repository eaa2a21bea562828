"""Building blocks for unit tests: a config, an in-memory database, a pipeline."""

from __future__ import annotations

import time
from typing import Any

from bot.app import build_features
from bot.config import Config
from bot.domain.matrix_model import RoomEvent
from bot.features.ports import RuntimeInfo
from bot.features.registry import Features
from bot.pipeline import EventPipeline
from bot.store import outbox
from bot.store.db import Database

BOT = "@bot:police.example"
OFFICER = "@wang:police.example"
OFFICER2 = "@zhou:police.example"
OTHER_OFFICER = "@li:other.example"
SUPERVISOR = "@zhao:district.example"
RESIDENT = "@li:example.org"


def unit_config(**changes: Any) -> Config:
    raw: dict[str, Any] = {
        "homeserver": {"url": "http://127.0.0.1:1"},
        "bot": {"user_id": BOT},
        "language": "en",
        "stations": [
            {
                "id": "hq",
                "name": "Hongqiao Station",
                "district": "changning",
                "officers": [OFFICER, OFFICER2],
                "supervisors": [SUPERVISOR],
            },
            {"id": "xj", "name": "Xinjing Station", "officers": [OTHER_OFFICER]},
        ],
    }
    raw.update(changes)
    return Config.model_validate(raw)


def make_pipeline(
    db: Database,
    features: Features | None = None,
    config: Config | None = None,
    *,
    clock_ms: int = 1_250,
) -> EventPipeline:
    return EventPipeline(
        db,
        features or build_features(),
        RuntimeInfo("http://hs", time.time()),
        config or unit_config(),
        clock=lambda: clock_ms,
    )


_counter = iter(range(1, 10**9))


def message(
    body: str,
    sender: str = RESIDENT,
    event_id: str | None = None,
    room_id: str = "!room:x",
    **content: Any,
) -> RoomEvent:
    return RoomEvent(
        event_id or f"$m{next(_counter)}",
        room_id,
        sender,
        "m.room.message",
        {"msgtype": "m.text", "body": body, **content},
        origin_server_ts=1_000,
    )


def member_event(
    room_id: str,
    user: str,
    membership: str,
    *,
    sender: str | None = None,
    reason: str | None = None,
    prev: str | None = None,
) -> RoomEvent:
    content: dict[str, Any] = {"membership": membership}
    if reason is not None:
        content["reason"] = reason
    return RoomEvent(
        f"$e{next(_counter)}",
        room_id,
        sender or user,
        "m.room.member",
        content,
        origin_server_ts=1_000,
        state_key=user,
        unsigned={"prev_content": {"membership": prev}} if prev else {},
    )


async def queued(db: Database) -> list[outbox.OutboxRow]:
    async with db.transaction() as conn:
        return await outbox.pending(conn)


async def bodies(db: Database) -> list[str]:
    return [str(r.content.get("body", "")) for r in await queued(db) if r.kind == "message"]
