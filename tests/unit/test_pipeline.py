"""The exactly-once step: inbox check, handler, outbox, one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.app import build_features
from bot.commands import ParsedCommand, UsageError
from bot.domain.matrix_model import RoomEvent
from bot.domain.roles import ALL_ROLES
from bot.features.context import CommandContext
from bot.features.registry import Features
from bot.pipeline import EventPipeline
from bot.store import audit
from bot.store.db import Database
from tests.support.units import OFFICER, RESIDENT, make_pipeline, message, queued, unit_config


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    yield database
    await database.close()


def pipeline(db: Database, features: Features | None = None, language: str = "en") -> EventPipeline:
    return make_pipeline(db, features, unit_config(language=language))


async def test_an_event_is_handled_once_even_if_delivered_twice(db: Database) -> None:
    p = pipeline(db)
    assert await p.handle(message("!ping", OFFICER, "$1")) is True
    assert await p.handle(message("!ping", OFFICER, "$1")) is False
    [row] = await queued(db)
    assert row.content["body"] == "pong — your message reached me in 250 ms."
    assert row.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$1"}}


async def test_the_same_event_twice_in_one_batch_is_answered_once(db: Database) -> None:
    p = pipeline(db)
    twice = [message("!ping", OFFICER, "$1"), message("!ping", OFFICER, "$1")]
    assert await p.handle_batch(twice, "s1") == 1
    assert len(await queued(db)) == 1
    # And a later batch repeating it (a replay after a crash) answers nothing more.
    assert await p.handle_batch([message("!ping", OFFICER, "$1"), message("!ping")], "s2") == 1
    assert len(await queued(db)) == 2


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
    await pipeline(db, language="zh").handle(message("!ping", OFFICER))
    [row] = await queued(db)
    assert "毫秒" in row.content["body"]


async def test_a_crashing_handler_rolls_back_its_writes_and_apologises(db: Database) -> None:
    features = build_features()

    @features.commands.command("boom", roles=ALL_ROLES, help_en="x", help_zh="x")
    async def boom(ctx: CommandContext, parsed: ParsedCommand) -> None:
        await ctx.audit.record(ctx.event.sender, "half.done")
        await ctx.reply("ping.pong", latency_ms=0)
        raise RuntimeError("bug")

    p = pipeline(db, features)
    assert await p.handle(message("!boom", event_id="$boom")) is True
    [row] = await queued(db)
    assert "something went wrong while handling !boom" in row.content["body"]
    async with db.transaction() as conn:
        assert await audit.recent(conn) == []
    assert await p.handle(message("!boom", event_id="$boom")) is False


async def test_usage_error_raised_by_a_handler_names_the_problem(db: Database) -> None:
    features = build_features()

    @features.commands.command("need", usage="<n>", roles=ALL_ROLES, help_en="x", help_zh="x")
    async def need(ctx: CommandContext, parsed: ParsedCommand) -> None:
        raise UsageError("n must be a number.")

    await pipeline(db, features).handle(message("!need x"))
    [row] = await queued(db)
    assert row.content["body"] == "n must be a number. Usage: !need <n>"
