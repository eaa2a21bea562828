"""The exactly-once step: inbox check, handler, outbox, one transaction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import build_registry
from bot.commands import CommandRegistry, ParsedCommand, UsageError
from bot.domain.matrix_model import RoomEvent
from bot.domain.roles import ALL_ROLES
from bot.features.context import CommandContext
from bot.features.ports import RuntimeInfo
from bot.pipeline import EventPipeline
from bot.store import audit, outbox
from bot.store.db import Database

OFFICER = "@wang:police.example"
RESIDENT = "@li:example.org"


def message(body: str, sender: str = RESIDENT, event_id: str = "$1", **content: Any) -> RoomEvent:
    return RoomEvent(
        event_id,
        "!room:x",
        sender,
        "m.room.message",
        {"msgtype": "m.text", "body": body, **content},
        origin_server_ts=1_000,
    )


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    yield database
    await database.close()


def pipeline(
    db: Database, registry: CommandRegistry | None = None, language: str = "en"
) -> EventPipeline:
    return EventPipeline(
        db,
        registry or build_registry(),
        RuntimeInfo("http://hs", time.time()),
        prefix="!",
        language=language,  # type: ignore[arg-type]
        officers={OFFICER},
        supervisors=set(),
        clock=lambda: 1_250,
    )


async def queued(db: Database) -> list[outbox.OutboxRow]:
    async with db.transaction() as conn:
        return await outbox.pending(conn)


async def test_an_event_is_handled_once_even_if_delivered_twice(db: Database) -> None:
    p = pipeline(db)
    assert await p.handle(message("!ping")) is True
    assert await p.handle(message("!ping")) is False
    [row] = await queued(db)
    assert row.content["body"] == "pong — your message reached me in 250 ms."
    assert row.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$1"}}


async def test_chatter_is_recorded_but_not_answered(db: Database) -> None:
    assert await pipeline(db).handle(message("good morning")) is True
    assert await queued(db) == []


async def test_non_message_events_are_ignored(db: Database) -> None:
    event = RoomEvent("$2", "!room:x", RESIDENT, "m.reaction", {}, 0)
    assert await pipeline(db).handle(event) is True
    assert await queued(db) == []


async def test_a_resident_running_an_officer_command_is_refused_and_audited(db: Database) -> None:
    await pipeline(db).handle(message("!status"))
    [row] = await queued(db)
    assert "only for officers or supervisors" in row.content["body"]
    async with db.transaction() as conn:
        [entry] = await audit.recent(conn)
    assert (entry.actor, entry.action, entry.target) == (RESIDENT, "command.refused", "status")


async def test_an_officer_gets_status(db: Database) -> None:
    await pipeline(db).handle(message("!status", sender=OFFICER))
    [row] = await queued(db)
    assert "events handled: 0" in row.content["body"]


async def test_unknown_command_suggests_the_closest(db: Database) -> None:
    await pipeline(db).handle(message("!hlep"))
    [row] = await queued(db)
    assert "Unknown command !hlep. Did you mean !help?" in row.content["body"]


async def test_wrong_arguments_get_the_usage_line(db: Database) -> None:
    await pipeline(db).handle(message("!help a b c"))
    [row] = await queued(db)
    assert row.content["body"] == "Usage: !help [command]"


async def test_unclosed_quote_gets_a_clear_answer(db: Database) -> None:
    await pipeline(db).handle(message('!help "ping'))
    [row] = await queued(db)
    assert 'quote " is not closed' in row.content["body"]


async def test_replies_follow_the_configured_language(db: Database) -> None:
    await pipeline(db, language="zh").handle(message("!ping"))
    [row] = await queued(db)
    assert "毫秒" in row.content["body"]


async def test_a_crashing_handler_rolls_back_its_writes_and_apologises(db: Database) -> None:
    registry = build_registry()

    @registry.command("boom", roles=ALL_ROLES, help_en="x", help_zh="x")
    async def boom(ctx: CommandContext, parsed: ParsedCommand) -> None:
        await ctx.audit.record(ctx.event.sender, "half.done")
        await ctx.reply("ping.pong", latency_ms=0)
        raise RuntimeError("bug")

    p = pipeline(db, registry)
    assert await p.handle(message("!boom")) is True
    [row] = await queued(db)
    assert "something went wrong while handling !boom" in row.content["body"]
    async with db.transaction() as conn:
        assert await audit.recent(conn) == []
    assert await p.handle(message("!boom")) is False


async def test_usage_error_raised_by_a_handler_names_the_problem(db: Database) -> None:
    registry = build_registry()

    @registry.command("need", usage="<n>", roles=ALL_ROLES, help_en="x", help_zh="x")
    async def need(ctx: CommandContext, parsed: ParsedCommand) -> None:
        raise UsageError("n must be a number.")

    await pipeline(db, registry).handle(message("!need x"))
    [row] = await queued(db)
    assert row.content["body"] == "n must be a number. Usage: !need <n>"
