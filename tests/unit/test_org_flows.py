"""Neighbourhoods, rooms and onboarding through the pipeline (homeserver side faked by the outbox).

What the bot *does* is what it queues: invites, kicks, state and messages in the
outbox. Completion hooks are run by hand to play the homeserver's part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.app import build_features
from bot.delivery import Outcome
from bot.pipeline import EventPipeline, make_deps
from bot.store import audit, direct, org, outbox
from bot.store.db import Database
from tests.support.units import (
    OFFICER,
    OTHER_OFFICER,
    RESIDENT,
    make_pipeline,
    member_event,
    message,
    queued,
    unit_config,
)

OFFICERS_ROOM = "!officers:police.example"
ROOM = "!guards:police.example"
DM_OFFICER = "!dm-wang:police.example"
DM_RESIDENT = "!dm-li:example.org"
NEWCOMER = "@newcomer:example.org"


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    async with database.transaction() as conn:
        await direct.remember(conn, OFFICER, DM_OFFICER)
        await direct.remember(conn, RESIDENT, DM_RESIDENT)
    yield database
    await database.close()


@pytest.fixture
def bot(db: Database) -> EventPipeline:
    return make_pipeline(db, clock_ms=10_000_000)


async def drain(db: Database) -> list[outbox.OutboxRow]:
    """Everything queued since the last drain (marked sent, as if the homeserver took it)."""
    rows = await queued(db)
    async with db.transaction() as conn:
        for row in rows:
            await outbox.mark_sent(conn, row.id, f"$sent{row.id}")
    return rows


def texts(rows: list[outbox.OutboxRow], lane: str | None = None) -> list[str]:
    return [
        str(r.content.get("body"))
        for r in rows
        if r.kind == "message" and (lane is None or r.lane == lane)
    ]


async def run_hook(db: Database, row: outbox.OutboxRow, value: str) -> None:
    hook = build_features().hooks[str(row.on_done)]
    async with db.transaction() as conn:
        await hook(
            make_deps(conn, unit_config(), 10_000_000), row.on_done_args, Outcome(True, value, None)
        )


async def create_guards_room(db: Database, bot: EventPipeline) -> None:
    await bot.handle(
        message('!neighbourhood add hqxc "Hongqiao Xincheng"', OFFICER, room_id=DM_OFFICER)
    )
    await bot.handle(message("!room create hqxc guards", OFFICER, room_id=DM_OFFICER))
    rows = await drain(db)
    [create] = [r for r in rows if r.kind == "create_room"]
    await run_hook(db, create, ROOM)
    await drain(db)


async def test_an_officer_creates_a_neighbourhood_room_that_follows_policy(
    db: Database, bot: EventPipeline
) -> None:
    await bot.handle(
        message('!neighbourhood add hqxc "Hongqiao Xincheng"', OFFICER, room_id=DM_OFFICER)
    )
    await bot.handle(message("!room create hqxc guards", OFFICER, room_id=DM_OFFICER))
    rows = await drain(db)
    [create] = [r for r in rows if r.kind == "create_room"]
    body = create.content
    assert body["name"] == "Hongqiao Xincheng · security guards"
    assert body["room_alias_name"] == "nw-hqxc-guards"
    state = {ev["type"]: ev["content"] for ev in body["initial_state"]}
    assert state["m.room.join_rules"] == {"join_rule": "knock"}
    assert state["m.room.guest_access"] == {"guest_access": "forbidden"}
    assert state["m.room.history_visibility"] == {"history_visibility": "shared"}
    power = body["power_level_content_override"]
    assert power["invite"] == power["kick"] == power["redact"] == 50
    assert power["state_default"] == 100 and power["users_default"] == 0
    assert power["users"] == {OFFICER: 50, "@zhou:police.example": 50}
    assert sorted(body["invite"]) == [OFFICER, "@zhou:police.example"]
    async with db.transaction() as conn:
        assert await org.rooms(conn) == [], "nothing is recorded before the room exists"

    await run_hook(db, create, ROOM)
    rows = await drain(db)
    async with db.transaction() as conn:
        room = await org.room(conn, ROOM)
    assert room is not None and room.alias == "#nw-hqxc-guards:police.example"
    rules = next(r for r in rows if r.kind == "message" and r.room_id == ROOM)
    assert "110" in rules.content["body"] and "119" in rules.content["body"]
    pin = next(r for r in rows if r.kind == "state")
    assert pin.event_type == "m.room.pinned_events"
    assert pin.content == {"pinned": [outbox.ref(rules.id)]}
    assert any("is ready: #nw-hqxc-guards" in t for t in texts(rows, DM_OFFICER))


async def test_a_failed_creation_records_nothing_and_says_so(
    db: Database, bot: EventPipeline
) -> None:
    await bot.handle(message('!neighbourhood add hqxc "HQ"', OFFICER, room_id=DM_OFFICER))
    await bot.handle(message("!room create hqxc guards", OFFICER, room_id=DM_OFFICER))
    [create] = [r for r in await drain(db) if r.kind == "create_room"]
    hook = build_features().hooks["room.created"]
    async with db.transaction() as conn:
        await hook(
            make_deps(conn, unit_config(), 1),
            create.on_done_args,
            Outcome(False, None, None, "HTTP 403 M_FORBIDDEN"),
        )
    rows = await drain(db)
    assert any("Could not create" in t for t in texts(rows))
    async with db.transaction() as conn:
        assert await org.rooms(conn) == []


async def test_an_officer_of_another_station_may_not_touch_the_room(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(message('!enrol @x:hs hqxc/guards name="X"', OTHER_OFFICER))
    [reply] = texts(await drain(db))
    assert "not one of its officers" in reply
    async with db.transaction() as conn:
        assert (await audit.recent(conn, 1))[0].action == "scope.refused"


async def test_enrol_invites_and_never_shows_the_phone_in_a_group(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(
        message(
            '!enrol @guard:hs hqxc/guards name="Zhang Wei" unit="Gate 2" phone=13800138000',
            OFFICER,
            room_id=ROOM,
        )
    )
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "invite"] == [("invite", "@guard:hs")]
    [reply] = texts(rows)
    assert "Zhang Wei" in reply and "13800138000" not in reply and "Gate 2" not in reply
    await bot.handle(message("!members hqxc/guards", OFFICER, room_id=ROOM))
    rows = await drain(db)
    in_room = texts(rows, ROOM)
    in_dm = texts(rows, DM_OFFICER) + texts(rows, outbox.dm_lane(OFFICER))
    assert not any("13800138000" in t for t in in_room)
    assert any("13800138000" in t for t in in_dm)


async def test_an_invitation_finally_given_up_is_reported_to_the_officer_who_asked(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(message('!enrol @guard:down.example hqxc/guards name="Zhang Wei"', OFFICER))
    [invite] = [r for r in await drain(db) if r.kind == "invite"]
    assert invite.on_done == "membership.done" and invite.on_done_args["actor"] == OFFICER
    hook = build_features().hooks["membership.done"]
    async with db.transaction() as conn:
        await hook(
            make_deps(conn, unit_config(), 1),
            invite.on_done_args,
            Outcome(False, None, invite.room_id, "HTTP 502 M_UNKNOWN Can't connect to server"),
        )
    rows = await drain(db)
    [told] = texts(rows, DM_OFFICER) + texts(rows, outbox.dm_lane(OFFICER))
    assert "could not invite @guard:down.example" in told and "Can't connect" in told
    async with db.transaction() as conn:
        trail = await audit.recent(conn, limit=3)
    assert trail[0].action == "invite.failed" and trail[0].target == "@guard:down.example"


async def test_join_code_by_dm_runs_the_form_then_invites(db: Database, bot: EventPipeline) -> None:
    await create_guards_room(db, bot)
    await bot.handle(message("!code hqxc/guards uses=1", OFFICER, room_id=DM_OFFICER))
    [made] = texts(await drain(db))
    code = made.split("Join code for Hongqiao Xincheng · security guards: ")[1][:9]
    async with db.transaction() as conn:
        await direct.remember(conn, NEWCOMER, "!dm-new:x")

    await bot.handle(message(f"!join {code.lower()}", NEWCOMER, room_id="!dm-new:x"))
    assert "full name" in texts(await drain(db))[0]
    await bot.handle(message("Chen Jing", NEWCOMER, room_id="!dm-new:x"))
    assert "building and unit" in texts(await drain(db))[0]
    await bot.handle(message("Building 5, 2201", NEWCOMER, room_id="!dm-new:x"))
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "invite"] == [("invite", NEWCOMER)]
    async with db.transaction() as conn:
        member = await org.member(conn, ROOM, NEWCOMER)
    assert member is not None and member.verified
    assert (member.name, member.unit, member.via) == ("Chen Jing", "Building 5, 2201", "code")
    assert member.verified_by == OFFICER

    # The code had one use.
    await bot.handle(message(f"!join {code}", "@late:example.org", room_id="!dm-late:x"))
    async with db.transaction() as conn:
        await direct.remember(conn, "@late:example.org", "!dm-late:x")
    await bot.handle(message(f"!join {code}", "@late:example.org", room_id="!dm-late:x"))
    assert "already been used" in texts(await drain(db))[-1]


async def test_a_knock_without_a_code_waits_for_an_officer(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(member_event(ROOM, NEWCOMER, "knock", reason="I am the new night guard"))
    rows = await drain(db)
    assert any("asks to join" in t for t in texts(rows))
    assert any(
        "passed to the community officers" in t for t in texts(rows, outbox.dm_lane(NEWCOMER))
    )
    await bot.handle(message(f'!approve {NEWCOMER} name="Wu Gang"', OFFICER, room_id=DM_OFFICER))
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "invite"] == [("invite", NEWCOMER)]
    await bot.handle(message(f"!approve {NEWCOMER}", OFFICER, room_id=DM_OFFICER))
    assert "no pending request" in texts(await drain(db))[0]


async def test_an_unverified_join_is_undone_and_officers_are_told(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(member_event(ROOM, "@intruder:evil.example", "join"))
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "kick"] == [
        ("kick", "@intruder:evil.example")
    ]
    assert any("without being verified" in t for t in texts(rows))


async def test_an_invite_by_a_resident_is_revoked_but_an_officers_is_kept_unverified(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(member_event(ROOM, "@friend:hs", "invite", sender=RESIDENT))
    rows = await drain(db)
    assert [(r.kind, r.target) for r in rows if r.kind == "kick"] == [("kick", "@friend:hs")]
    await bot.handle(member_event(ROOM, "@guest:hs", "invite", sender=OFFICER))
    rows = await drain(db)
    assert not [r for r in rows if r.kind == "kick"]
    assert any("!enrol @guest:hs hqxc/guards" in t for t in texts(rows))
    await bot.handle(member_event(ROOM, "@guest:hs", "join"))
    assert not [r for r in await drain(db) if r.kind == "kick"]


async def test_strangers_in_dm_get_join_and_help_only_and_are_throttled(
    db: Database, bot: EventPipeline
) -> None:
    async with db.transaction() as conn:
        await direct.remember(conn, NEWCOMER, "!dm-new:x")
    await bot.handle(message("!ping", NEWCOMER, room_id="!dm-new:x"))
    assert "only for" in texts(await drain(db))[0]
    answered = 0
    for i in range(15):
        await bot.handle(message(f"hello {i}", NEWCOMER, room_id="!dm-new:x"))
        answered += len(texts(await drain(db)))
    assert answered == 9, "10 answers an hour, one of them was the !ping refusal"


@pytest.mark.parametrize(
    "command",
    [
        "!room create",
        "!room create hqxc",
        "!room create hqxc pilots",
        '!neighbourhood add "HQ"',
        '!neighbourhood add Bad_Slug "X"',
        "!enrol nobody hqxc/guards",
        '!enrol @a:hs hqxc/guards name="A" phone=call-me',
        "!code hqxc/guards uses=0",
        "!code hqxc/guards expires=soon",
        "!room",
    ],
)
async def test_bad_arguments_get_the_usage_line(
    db: Database, bot: EventPipeline, command: str
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(message(command, OFFICER, room_id=DM_OFFICER))
    [reply] = texts(await drain(db))
    assert "Usage: !" in reply or "needs one of" in reply, reply


async def test_unknown_neighbourhood_lists_what_exists(db: Database, bot: EventPipeline) -> None:
    await create_guards_room(db, bot)
    await bot.handle(message("!room create nowhere guards", OFFICER, room_id=DM_OFFICER))
    [reply] = texts(await drain(db))
    assert "no neighbourhood “nowhere”" in reply and "hqxc" in reply


async def test_changing_a_neighbourhoods_language_changes_how_its_rooms_are_answered(
    db: Database, bot: EventPipeline
) -> None:
    await create_guards_room(db, bot)
    await bot.handle(
        message("!neighbourhood set hqxc lang=zh welcome=off", OFFICER, room_id=DM_OFFICER)
    )
    await drain(db)
    await bot.handle(message("!ping", OFFICER, room_id=ROOM))
    [reply] = texts(await drain(db))
    assert "毫秒" in reply
