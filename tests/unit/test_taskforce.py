"""Task forces without a server: the room that gets created, who may be in it, what is posted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import build_features
from bot.delivery import Outcome
from bot.pipeline import EventPipeline, make_deps
from bot.store import audit, cases, outbox
from bot.store.db import Database
from tests.support.units import (
    OFFICER,
    OFFICER2,
    OTHER_OFFICER,
    RESIDENT,
    SUPERVISOR,
    make_pipeline,
    member_event,
    message,
    unit_config,
)

DM = "!dm-wang:police.example"
TF_ROOM = "!tf1:police.example"
REMOTE = "@chen:minhang.example"
TIP = "16 firecrackers hidden in the electricity box on the 22nd floor of building 5"


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    yield database
    await database.close()


@pytest.fixture
def bot(db: Database) -> EventPipeline:
    return make_pipeline(db, clock_ms=1_795_000_000_000)


async def drain(db: Database) -> list[outbox.OutboxRow]:
    async with db.transaction() as conn:
        rows = await outbox.pending(conn)
        for row in rows:
            await outbox.mark_sent(conn, row.id, f"$out{row.id}")
    return rows


def bodies(rows: list[outbox.OutboxRow], lane: str | None = None) -> list[str]:
    return [
        str(r.content.get("body", ""))
        for r in rows
        if r.kind == "message" and (lane is None or r.lane == lane)
    ]


async def a_case(db: Database, bot: EventPipeline) -> str:
    await bot.handle(
        message(f'!log call "{TIP}" reporter="Li Ming 13800138000"', OFFICER, room_id=DM)
    )
    await drain(db)
    async with db.transaction() as conn:
        [case], _ = await cases.search(conn, station_ids=["hq"], limit=5)
    return case.number


async def created(db: Database, bot: EventPipeline, command: str) -> list[outbox.OutboxRow]:
    """Run ``!taskforce create …`` and let the homeserver create the room."""
    await bot.handle(message(command, OFFICER, room_id=DM))
    rows = await drain(db)
    [create] = [r for r in rows if r.kind == "create_room"]
    async with db.transaction() as conn:
        await build_features().hooks["taskforce.created"](
            make_deps(conn, unit_config(), 1), create.on_done_args, Outcome(True, TF_ROOM, None)
        )
    return [create, *await drain(db)]


async def test_a_task_force_room_invites_officers_of_any_server_and_posts_no_reporter(
    db: Database, bot: EventPipeline
) -> None:
    number = await a_case(db, bot)
    rows = await created(db, bot, f'!taskforce create "Firecracker ring" case={number} {REMOTE}')
    create = rows[0]
    assert set(create.content["invite"]) == {OFFICER, REMOTE}
    levels = create.content["power_level_content_override"]["users"]
    assert levels[REMOTE] == 50 and levels[OFFICER] == 50
    assert "room_alias_name" not in create.content
    posted = bodies(rows, TF_ROOM)
    assert any("Task force TF-1" in b and REMOTE in b for b in posted)
    [summary] = [b for b in posted if number in b]
    assert "fire hazard" in summary and "22nd floor" in summary
    assert "Li Ming" not in " ".join(posted) and "13800138000" not in " ".join(posted)
    assert any("TF-1" in b and "is ready" in b for b in bodies(rows, DM))
    async with db.transaction() as conn:
        trail = {e.action for e in await audit.recent(conn, limit=10)}
    assert {"taskforce.create", "taskforce.created"} <= trail


async def test_status_changes_of_linked_cases_are_posted_until_it_closes(
    db: Database, bot: EventPipeline
) -> None:
    number = await a_case(db, bot)
    await created(db, bot, f'!taskforce create "Ring" case={number}')
    await bot.handle(message(f"!case investigate {number}", OFFICER2, room_id="!dm-zhou:x"))
    rows = await drain(db)
    assert any(f"{number}: new → investigating" in b for b in bodies(rows, TF_ROOM))

    await bot.handle(message("!taskforce close all done", OFFICER, room_id=TF_ROOM))
    rows = await drain(db)
    assert any("was closed by" in b and "all done" in b for b in bodies(rows, TF_ROOM))
    await bot.handle(message(f'!case solve {number} "arrested"', OFFICER, room_id=DM))
    assert not bodies(await drain(db), TF_ROOM), "a closed task force hears no more"
    await bot.handle(message(f"!taskforce add {REMOTE} TF-1", OFFICER, room_id=DM))
    assert any("TF-1 is closed" in b for b in bodies(await drain(db)))


async def test_only_members_stay_in_the_room(db: Database, bot: EventPipeline) -> None:
    number = await a_case(db, bot)
    await created(db, bot, f'!taskforce create "Ring" case={number} {REMOTE}')
    # A member invites a resident: the invitation is withdrawn, the room is told.
    await bot.handle(member_event(TF_ROOM, RESIDENT, "invite", sender=REMOTE))
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "kick"] == [("kick", RESIDENT)]
    assert any("invitation from" in b and RESIDENT in b for b in bodies(rows, TF_ROOM))
    # Someone who got in anyway is removed; members and the station's staff are not.
    await bot.handle(member_event(TF_ROOM, RESIDENT, "join"))
    assert [r.kind for r in await drain(db) if r.kind == "kick"] == ["kick"]
    for ok in (REMOTE, OFFICER2, SUPERVISOR):
        await bot.handle(member_event(TF_ROOM, ok, "join"))
    assert not [r for r in await drain(db) if r.kind == "kick"]
    # Adding an officer lets them in.
    await bot.handle(message("!taskforce add @new:far.example", OFFICER, room_id=TF_ROOM))
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "invite"] == [
        ("invite", "@new:far.example")
    ]
    await bot.handle(member_event(TF_ROOM, "@new:far.example", "join"))
    assert not [r for r in await drain(db) if r.kind == "kick"]


async def test_linking_and_listing_and_who_may_change_it(db: Database, bot: EventPipeline) -> None:
    first = await a_case(db, bot)
    await created(db, bot, f'!taskforce create "Ring" case={first}')
    await bot.handle(message('!log visit "stolen scooters at gate 3"', OFFICER, room_id=DM))
    await drain(db)
    async with db.transaction() as conn:
        found, _ = await cases.search(conn, station_ids=["hq"], limit=5)
    second = next(c.number for c in found if c.number != first)
    await bot.handle(message(f"!taskforce link {second} TF-1", OFFICER, room_id=DM))
    rows = await drain(db)
    assert any(second in b and "scooters" in b for b in bodies(rows, TF_ROOM))
    await bot.handle(message(f"!taskforce link {second}", OFFICER, room_id=TF_ROOM))
    assert any("already linked" in b for b in bodies(await drain(db)))
    await bot.handle(message("!taskforces", SUPERVISOR, room_id="!dm-sup:x"))
    [listing] = bodies(await drain(db))
    assert "TF-1 Ring" in listing and first in listing and second in listing
    # An officer of another station can neither see nor change it; a supervisor cannot change.
    await bot.handle(message("!taskforce close TF-1", OTHER_OFFICER, room_id="!dm-li:x"))
    assert any("no task force TF-1" in b for b in bodies(await drain(db)))
    await bot.handle(message("!taskforce close TF-1", SUPERVISOR, room_id="!dm-sup:x"))
    assert any("only for officers" in b for b in bodies(await drain(db)))


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ('!taskforce create "Ring"', "Usage"),
        ('!taskforce create "Ring" case=HQ-2026-9999', "no case"),
        ('!taskforce create "Ring" case=1 not-a-user', "not a Matrix user id"),
        ("!taskforce add @x:y.example", "Which task force"),
        ("!taskforce link 1 TF-77", "no task force TF-77"),
    ],
)
async def test_bad_task_force_commands_are_explained(
    db: Database, bot: EventPipeline, command: str, answer: str
) -> None:
    await a_case(db, bot)
    await bot.handle(message(command, OFFICER, room_id=DM))
    replies: list[Any] = bodies(await drain(db))
    assert any(answer.lower() in b.lower() for b in replies), replies
