"""Tips become cases, officers work them, the group sees outcomes (pipeline + outbox, no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.domain.matrix_model import RoomEvent
from bot.domain.org import ManagedRoom
from bot.domain.tips import TipAnalysis
from bot.features import intake as intake_feature
from bot.pipeline import EventPipeline
from bot.store import audit, cases, direct, org, outbox
from bot.store.db import Database
from tests.support.units import OFFICER, SUPERVISOR, make_pipeline, message

ROOM = "!hqxc-residents:police.example"
OFFICERS_ROOM = "!officers:police.example"
DM_RESIDENT = "!dm-li:example.org"
DM_OFFICER = "!dm-wang:police.example"
LI = "@li:example.org"
ZHANG = "@zhang:example.org"
FIRECRACKERS = (
    "16 firecrackers hidden in the electricity box on the 22nd floor of building 5, "
    "someone is storing them there"
)
FIRECRACKERS_ZH = "5号楼22楼的电表箱里藏了16个爆竹，有人一直往里放，太危险了"


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = await Database.open(":memory:")
    async with database.transaction() as conn:
        nbh = await org.add_neighbourhood(
            conn,
            station_id="hq",
            slug="hqxc",
            name="Hongqiao Xincheng",
            language="en",
            created_by=OFFICER,
        )
        await org.add_room(
            conn,
            ManagedRoom(
                ROOM,
                "neighbourhood",
                "hq",
                nbh.id,
                "residents",
                "#nw-hqxc-residents:police.example",
                "Hongqiao Xincheng · residents",
                "en",
                False,
            ),
            OFFICER,
        )
        await org.add_room(
            conn,
            ManagedRoom(
                OFFICERS_ROOM,
                "officers",
                "hq",
                None,
                None,
                None,
                "Hongqiao Station · officers",
                "en",
                False,
            ),
            OFFICER,
        )
        for user, name in ((LI, "Li Ming"), (ZHANG, "Zhang Wei")):
            await org.save_member(
                conn,
                room_id=ROOM,
                user_id=user,
                status="verified",
                via="in_person",
                name=name,
                verified_by=OFFICER,
            )
        await direct.remember(conn, LI, DM_RESIDENT)
        await direct.remember(conn, OFFICER, DM_OFFICER)
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


def in_lane(rows: list[outbox.OutboxRow], lane: str) -> list[dict[str, Any]]:
    return [r.content for r in rows if r.kind == "message" and r.lane == lane]


def bodies(rows: list[outbox.OutboxRow], lane: str) -> list[str]:
    return [str(c.get("body", "")) for c in in_lane(rows, lane)]


async def all_cases(db: Database) -> list[Any]:
    async with db.transaction() as conn:
        found, _ = await cases.search(conn, station_ids=["hq"], limit=100)
    return found


async def tip(
    db: Database, bot: EventPipeline, body: str, sender: str = LI, room: str = ROOM, **content: Any
) -> tuple[RoomEvent, list[outbox.OutboxRow]]:
    event = message(body, sender, room_id=room, **content)
    await bot.handle(event)
    return event, await drain(db)


async def test_the_firecracker_report_becomes_a_fire_hazard_case_with_a_threaded_ack(
    db: Database, bot: EventPipeline
) -> None:
    event, rows = await tip(db, bot, FIRECRACKERS)
    [case] = await all_cases(db)
    assert case.category == "fire_hazard" and case.source == "room"
    assert case.location and "22nd floor" in case.location
    assert case.reporter == LI and case.event_id == event.event_id
    [ack] = [c for c in in_lane(rows, ROOM) if "Logged as case" in c["body"]]
    assert f"Logged as case {case.number} · fire hazard" in ack["body"]
    assert ack["m.relates_to"]["rel_type"] == "m.thread"
    assert ack["m.relates_to"]["event_id"] == event.event_id
    notice = bodies(rows, OFFICERS_ROOM)[0]
    assert case.number in notice and "Li Ming" not in notice and LI not in notice
    board = [c for c in in_lane(rows, ROOM) if "Cases this month" in c["body"]]
    assert board and case.number in board[0]["body"]
    pins = [r for r in rows if r.kind == "state" and r.event_type == "m.room.pinned_events"]
    assert pins


async def test_a_batch_of_tips_renders_the_board_once_with_every_case(
    db: Database, bot: EventPipeline
) -> None:
    await tip(db, bot, FIRECRACKERS)  # the board exists: later changes are edits
    reports = [
        "Someone is trying car doors in the B2 garage right now",
        "A man keeps trying the door handles of building 3, unit 2",
        "Two e-bikes were stolen from the bike shed of building 4 last night",
    ]
    await bot.handle_batch([message(text, ZHANG, room_id=ROOM) for text in reports], "s2")
    rows = await drain(db)
    numbers = [c.number for c in await all_cases(db)]
    assert len(numbers) == 4
    boards = [c for c in in_lane(rows, ROOM) if "Cases this month" in str(c.get("body"))]
    assert len(boards) == 1, "one board edit for the whole batch, not one per case"
    assert all(number in boards[0]["body"] for number in numbers)
    assert boards[0]["m.relates_to"]["rel_type"] == "m.replace"


async def test_the_chinese_firecracker_report_too(db: Database, bot: EventPipeline) -> None:
    await tip(db, bot, FIRECRACKERS_ZH)
    [case] = await all_cases(db)
    assert case.category == "fire_hazard"
    assert case.location and "22楼" in case.location


async def test_chatter_gets_silence(db: Database, bot: EventPipeline) -> None:
    for text in ("Good morning everyone!", "谢谢警官", "收到👌", "Anyone know a good plumber?"):
        _, rows = await tip(db, bot, text)
        assert rows == [], text
    assert await all_cases(db) == []


async def test_an_emergency_gets_the_hotline_and_the_officers_are_mentioned(
    db: Database, bot: EventPipeline
) -> None:
    _, rows = await tip(
        db,
        bot,
        "Thick smoke is pouring out of flat 1203 in building 3 right now, I can smell burning!",
    )
    [case] = await all_cases(db)
    assert case.urgent
    [ack] = [b for b in bodies(rows, ROOM) if "Logged" in b]
    assert "119" in ack
    [notice] = in_lane(rows, OFFICERS_ROOM)
    assert "URGENT" in notice["body"]
    assert set(notice["m.mentions"]["user_ids"]) == {OFFICER, "@zhou:police.example"}


async def test_a_reply_to_the_ack_adds_a_note_not_a_new_case(
    db: Database, bot: EventPipeline
) -> None:
    _, rows = await tip(db, bot, FIRECRACKERS)
    [ack_row] = [r for r in rows if r.kind == "message" and "Logged" in r.content["body"]]
    reply = message(
        "They are still there this evening, in a red bag",
        LI,
        room_id=ROOM,
        **{"m.relates_to": {"m.in_reply_to": {"event_id": f"$out{ack_row.id}"}}},
    )
    await bot.handle(reply)
    rows = await drain(db)
    assert len(await all_cases(db)) == 1
    assert [r.event_type for r in rows] == ["m.reaction"]
    [case] = await all_cases(db)
    async with db.transaction() as conn:
        history = await cases.history(conn, case.id)
    assert history[-1].action == "note" and "red bag" in (history[-1].note or "")


async def test_an_uncertain_message_is_asked_about_and_logged_on_yes(
    db: Database, bot: EventPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsure = TipAnalysis(True, "other", False, "building 2", (), 0.55)
    monkeypatch.setattr(intake_feature, "analyse", lambda text, lang=None: unsure)
    _, rows = await tip(db, bot, "hmm, someone left a suitcase by the bins near building 2")
    [question] = [c for c in in_lane(rows, ROOM) if "should log" in c["body"]]
    assert question["m.relates_to"]["rel_type"] == "m.thread"
    assert await all_cases(db) == []
    await bot.handle(message("yes", LI, room_id=ROOM))
    rows = await drain(db)
    [case] = await all_cases(db)
    assert "suitcase" in case.text
    assert any(f"Logged as case {case.number}" in b for b in bodies(rows, ROOM))
    _, rows = await tip(db, bot, "and another bag by building 3")
    await bot.handle(message("no", LI, room_id=ROOM))
    assert "not logged" in str(await drain(db))
    assert len(await all_cases(db)) == 1


async def test_a_private_dm_tip_never_reaches_a_group_room(
    db: Database, bot: EventPipeline
) -> None:
    secret = "The man in 1702 of building 8 is selling drugs, I saw foil and powder on his table"
    _, rows = await tip(db, bot, secret, room=DM_RESIDENT)
    [case] = await all_cases(db)
    assert case.source == "dm" and case.private
    for row in rows:
        if row.lane != DM_RESIDENT:
            assert "1702" not in str(row.content) and "powder" not in str(row.content)
    assert any("private report" in b for b in bodies(rows, OFFICERS_ROOM))
    # The outcome goes back by DM only.
    await bot.handle(message(f"!case solve {case.number} arrested", OFFICER, room_id=DM_OFFICER))
    rows = await drain(db)
    assert not in_lane(rows, ROOM)
    assert any(
        "Update on your report" in str(r.content)
        for r in rows
        if r.lane in (outbox.dm_lane(LI), DM_RESIDENT)
    )


async def test_anonymous_tips_show_a_pseudonym_and_questions_are_relayed_both_ways(
    db: Database, bot: EventPipeline
) -> None:
    await tip(
        db,
        bot,
        "!tip anonymous gambling den in the basement of building 4, "
        "lookouts at the door every night",
        room=DM_RESIDENT,
    )
    [case] = await all_cases(db)
    assert case.anonymous
    await bot.handle(message(f"!case {case.number}", OFFICER, room_id=DM_OFFICER))
    detail = bodies(await drain(db), DM_OFFICER)[0]
    assert "Reporter #1" in detail and LI not in detail
    await bot.handle(
        message(
            f'!case ask {case.number} "Which door do they watch?"', OFFICER, room_id=OFFICERS_ROOM
        )
    )
    rows = await drain(db)
    assert any("Which door" in str(r.content) for r in rows if r.lane == outbox.dm_lane(LI))
    await bot.handle(message("The east door, near the bins", LI, room_id=DM_RESIDENT))
    rows = await drain(db)
    relayed = bodies(rows, OFFICERS_ROOM)
    assert relayed and "east door" in relayed[0] and "Reporter #1" in relayed[0]
    assert LI not in relayed[0]
    # A supervisor may see who it was; that lookup is audited.
    await bot.handle(message(f"!case reporter {case.number}", SUPERVISOR, room_id="!dm-sup:x"))
    rows = await drain(db)
    assert any(LI in str(r.content) for r in rows if r.lane == outbox.dm_lane(SUPERVISOR))
    async with db.transaction() as conn:
        actions = [e.action for e in await audit.recent(conn, 50)]
    assert "case.reporter_revealed" in actions


async def test_solving_tells_the_group_edits_the_board_and_is_audited(
    db: Database, bot: EventPipeline
) -> None:
    event, _ = await tip(db, bot, FIRECRACKERS)
    [case] = await all_cases(db)
    await bot.handle(message(f"!case ack {case.number}", OFFICER, room_id=OFFICERS_ROOM))
    await bot.handle(
        message(
            f'!case solve {case.number} "removed with the fire brigade"',
            OFFICER,
            room_id=OFFICERS_ROOM,
        )
    )
    rows = await drain(db)
    outcome = [c for c in in_lane(rows, ROOM) if "Update on case" in c["body"]]
    assert outcome and outcome[0]["m.relates_to"]["m.in_reply_to"]["event_id"] == event.event_id
    assert "fire brigade" not in outcome[0]["body"], "the officer's note stays private"
    edits = [
        c for c in in_lane(rows, ROOM) if c.get("m.relates_to", {}).get("rel_type") == "m.replace"
    ]
    assert edits and "solved" in edits[-1]["m.new_content"]["body"]
    await bot.handle(message(f"!case solve {case.number} again", OFFICER, room_id=OFFICERS_ROOM))
    [answer] = bodies(await drain(db), OFFICERS_ROOM)
    assert "already closed" in answer and "!case reopen" in answer
    async with db.transaction() as conn:
        history = [(h.action, h.old, h.new) for h in await cases.history(conn, case.id)]
        actions = [e.action for e in await audit.recent(conn, 50)]
    assert ("status", "new", "acknowledged") in history
    assert ("status", "acknowledged", "solved") in history
    assert {"case.created", "case.acknowledged", "case.solved"} <= set(actions)


async def test_phone_calls_are_logged_with_their_channel(db: Database, bot: EventPipeline) -> None:
    await bot.handle(
        message(
            '!log call "Mrs Chen says the fire exit on floor 9 of building 3 is '
            'blocked by furniture" reporter="Mrs Chen" neighbourhood=hqxc',
            OFFICER,
            room_id=DM_OFFICER,
        )
    )
    rows = await drain(db)
    [case] = await all_cases(db)
    assert case.source == "call" and case.reporter_name == "Mrs Chen"
    assert case.category == "fire_hazard"
    assert any(case.number in b for b in bodies(rows, DM_OFFICER))


async def test_markup_in_a_tip_is_escaped_everywhere(db: Database, bot: EventPipeline) -> None:
    _, rows = await tip(
        db,
        bot,
        "A man is trying door handles on floor 6 of building 2 "
        '<img src=x onerror="alert(1)"> <b>now</b>',
    )
    for row in rows:
        html = str(row.content.get("formatted_body", ""))
        assert "<img" not in html and "<b>now</b>" not in html


async def test_a_huge_tip_is_stored_up_to_the_limit_and_acknowledged_briefly(
    db: Database, bot: EventPipeline
) -> None:
    body = "Someone broke into the bike shed of building 5 and stole three e-bikes. " * 1000
    _, rows = await tip(db, bot, body)
    [case] = await all_cases(db)
    assert case.text_truncated and len(case.text) == 16_000
    [ack] = [b for b in bodies(rows, ROOM) if "Logged" in b]
    assert len(ack) < 1000


async def test_a_non_member_posting_is_not_acted_on(db: Database, bot: EventPipeline) -> None:
    _, rows = await tip(db, bot, FIRECRACKERS, sender="@stranger:evil.example")
    assert rows == [] and await all_cases(db) == []


async def test_similar_reports_are_linked_and_flagged(db: Database, bot: EventPipeline) -> None:
    await tip(db, bot, FIRECRACKERS)
    _, rows = await tip(
        db,
        bot,
        "There are firecrackers stored in the meter box on the 22nd floor of building 5 again",
        sender=ZHANG,
    )
    first, second = sorted(await all_cases(db), key=lambda c: c.id)
    assert any("Possible duplicate of " + first.number in b for b in bodies(rows, OFFICERS_ROOM))
    async with db.transaction() as conn:
        assert (first.number, "possible_duplicate") in await cases.links(conn, second.id)


async def test_an_officers_tick_on_the_notice_acknowledges(
    db: Database, bot: EventPipeline
) -> None:
    _, rows = await tip(db, bot, FIRECRACKERS)
    [notice] = [r for r in rows if r.lane == OFFICERS_ROOM]
    reaction = RoomEvent(
        "$tick",
        OFFICERS_ROOM,
        OFFICER,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": f"$out{notice.id}", "key": "✅"}},
        1,
    )
    await bot.handle(reaction)
    [case] = await all_cases(db)
    assert case.status == "acknowledged"


async def test_supervisors_read_but_cannot_change_cases(db: Database, bot: EventPipeline) -> None:
    await tip(db, bot, FIRECRACKERS)
    [case] = await all_cases(db)
    await bot.handle(message(f"!case solve {case.number} done", SUPERVISOR, room_id="!dm-sup:x"))
    assert "only for officers" in str(await drain(db))
    await bot.handle(message("!cases", SUPERVISOR, room_id="!dm-sup:x"))
    assert case.number in str(await drain(db))


async def test_an_edit_of_a_logged_tip_is_kept_as_history_not_a_new_case(
    db: Database, bot: EventPipeline
) -> None:
    event, _ = await tip(db, bot, FIRECRACKERS)
    edit = message(
        "* 20 firecrackers actually",
        LI,
        room_id=ROOM,
        **{
            "m.new_content": {"msgtype": "m.text", "body": "20 firecrackers actually"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event.event_id},
        },
    )
    await bot.handle(edit)
    assert await drain(db) == []
    [case] = await all_cases(db)
    assert case.text == FIRECRACKERS
    async with db.transaction() as conn:
        history = await cases.history(conn, case.id)
    assert history[-1].action == "edited" and history[-1].note == "20 firecrackers actually"


async def test_an_edited_command_is_not_run_again(db: Database, bot: EventPipeline) -> None:
    edit = message(
        "* !ping",
        OFFICER,
        room_id=DM_OFFICER,
        **{
            "m.new_content": {"msgtype": "m.text", "body": "!ping"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$earlier"},
        },
    )
    await bot.handle(edit)
    assert await drain(db) == []


async def test_an_encrypted_photo_sent_with_a_tip_can_be_fetched_from_the_case(
    db: Database, bot: EventPipeline
) -> None:
    await tip(db, bot, FIRECRACKERS)
    encrypted = {
        "url": "mxc://example.org/ciphertext",
        "key": {"kty": "oct", "alg": "A256CTR", "k": "secret-key", "ext": True},
        "iv": "iv",
        "hashes": {"sha256": "digest"},
        "v": "v2",
    }
    _, rows = await tip(
        db, bot, "box.jpg", msgtype="m.image", file=encrypted, info={"mimetype": "image/jpeg"}
    )
    assert [r.event_type for r in rows] == ["m.reaction"]
    [case] = await all_cases(db)
    await bot.handle(message(f"!case {case.number}", OFFICER, room_id=DM_OFFICER))
    [shown] = bodies(await drain(db), DM_OFFICER)
    assert "1. photo box.jpg (encrypted)" in shown and "secret-key" not in shown

    await bot.handle(message(f"!case file {case.number} 1", SUPERVISOR, room_id=ROOM))
    rows = await drain(db)
    [sent] = [c for c in in_lane(rows, outbox.dm_lane(SUPERVISOR)) if c["msgtype"] == "m.image"]
    assert sent["file"] == encrypted and sent["url"] is None
    assert case.number in sent["body"] and sent["filename"] == "box.jpg"
    # Nothing about the evidence is posted in the group room, only where it went.
    assert all("secret-key" not in str(c) for c in in_lane(rows, ROOM))
    assert any("by direct message" in b for b in bodies(rows, ROOM))
    async with db.transaction() as conn:
        trail = await audit.recent(conn, limit=5)
    assert any(e.action == "case.file_sent" and e.actor == SUPERVISOR for e in trail)

    await bot.handle(message(f"!case file {case.number} 3", OFFICER, room_id=DM_OFFICER))
    assert "use a number from 1 to 1" in str(await drain(db))
    await bot.handle(message(f"!case file {case.number} 1", LI, room_id=DM_RESIDENT))
    assert "secret-key" not in str(await drain(db))


async def test_a_photo_sent_just_before_a_tip_is_attached_to_that_case_only(
    db: Database, bot: EventPipeline
) -> None:
    await tip(db, bot, "shed.jpg", msgtype="m.image", url="mxc://example.org/shed")
    await tip(db, bot, FIRECRACKERS)
    await tip(db, bot, "Someone broke into the bike shed of building 7 and stole two e-bikes")
    first, second = sorted(await all_cases(db), key=lambda c: c.id)
    async with db.transaction() as conn:
        [photo] = await cases.attachments(conn, first.id)
        assert photo["url"] == "mxc://example.org/shed"
        assert await cases.attachments(conn, second.id) == []
