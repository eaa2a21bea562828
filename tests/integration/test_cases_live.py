"""Tips become cases on a real Synapse: the firecracker report in both languages, an emergency,
chatter, a note by reply, outcomes and the case board, a private DM tip, the anonymous relay
both ways, phone calls, and the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from localhs import Homeserver

from tests.conftest import Account, BotUnderTest
from tests.support.matrix_client import TestUser, reply_target, wait_until
from tests.support.world import Station, open_station

pytestmark = pytest.mark.integration


async def from_bot(
    user: TestUser, room: str, bot: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Wait for an event from the bot in ``room`` that satisfies ``check``."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        found[:] = [ev for ev in await user.messages(room) if ev.get("sender") == bot and check(ev)]
        return bool(found)

    await wait_until(arrived, timeout=30, what=what)
    return found[-1]


def body_has(needle: str) -> Callable[[dict[str, Any]], bool]:
    return lambda ev: needle in str(ev.get("content", {}).get("body", ""))


async def setup(station: Station, residents: list[TestUser], slug: str) -> tuple[str, str]:
    room = await station.managed_room(slug, "residents", name="Tip Gardens")
    [officers_room] = await station.officer.invited_rooms()
    await station.officer.join(officers_room)
    for i, resident in enumerate(residents):
        await station.enrol(resident, f"{slug}/residents", room, f"Resident {i}")
    return room, officers_room


async def test_room_tips_become_cases_and_the_group_sees_the_outcome(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    li_acct, zhang_acct = account("li"), account("zhang")
    async with station.officer, li_acct.client() as li, zhang_acct.client() as zhang:
        room, officers_room = await setup(station, [li, zhang], "tips")
        bot = station.bot_id

        # The firecracker report, in English: a fire-hazard case, acknowledged in its thread.
        tip = await li.send_text(
            room, "16 firecrackers hidden in the electricity box on the 22nd floor of building 5"
        )
        ack = await from_bot(li, room, bot, body_has("Logged as case"), "the acknowledgement")
        body = ack["content"]["body"]
        assert "fire hazard" in body and "22nd floor" in body
        relation = ack["content"]["m.relates_to"]
        assert relation["rel_type"] == "m.thread" and relation["event_id"] == tip
        number = ack["content"]["org.neighborwatch"]["case"]
        notice = await station.officer.wait_text(officers_room, bot, f"New case {number}")
        assert "Resident 0" not in notice and li.user_id not in notice

        # ... and in Chinese.
        zh_tip = await zhang.send_text(room, "5号楼22楼的电表箱里藏了16个爆竹，太危险了")
        zh_ack = await from_bot(
            zhang, room, bot, lambda ev: reply_target(ev) == zh_tip, "the Chinese tip's ack"
        )
        assert "fire hazard" in zh_ack["content"]["body"]
        rows = station.bot.process.query(
            "SELECT category, location FROM cases WHERE event_id = ?", (zh_tip,)
        )
        assert rows[0][0] == "fire_hazard" and "22楼" in rows[0][1]

        # Chatter: no answer.
        chatter = await li.send_text(room, "Good morning neighbours, lovely weather today")

        # An emergency: the hotline at once, the officers mentioned.
        await li.send_text(
            room,
            "Thick smoke is pouring out of flat 1203 in building 3 "
            "right now, it smells like burning!",
        )
        urgent = await from_bot(
            li,
            room,
            bot,
            lambda ev: (
                "Logged as case" in ev["content"].get("body", "")
                and "119" in ev["content"].get("body", "")
            ),
            "the hotline reply",
        )
        assert "Thick smoke" not in urgent["content"]["body"]
        alarm = await from_bot(
            station.officer, officers_room, bot, body_has("URGENT"), "the urgent notice"
        )
        assert station.officer.user_id in alarm["content"]["m.mentions"]["user_ids"]
        targets = [reply_target(ev) for ev in await li.messages(room) if ev["sender"] == bot]
        assert chatter not in targets

        # A reply to the acknowledgement is a note on the case, marked with ✅.
        note = await li.send_text(
            room,
            "They are still there tonight, in a red bag",
            **{"m.relates_to": {"m.in_reply_to": {"event_id": ack["event_id"]}}},
        )
        await from_bot(
            li,
            room,
            bot,
            lambda ev: (
                ev["type"] == "m.reaction" and ev["content"]["m.relates_to"]["event_id"] == note
            ),
            "the ✅ on the note",
        )
        assert station.bot.process.query(
            "SELECT COUNT(*) FROM case_events e JOIN cases c ON c.id = e.case_id"
            " WHERE c.number = ? AND e.action = 'note' AND e.note LIKE '%red bag%'",
            (number,),
        ) == [(1,)]

        # Solved: the group is told in reply to the tip, the pinned board is edited.
        await station.command(
            f'!case solve {number} "removed with the fire brigade"', "solved", room=officers_room
        )
        outcome = await from_bot(li, room, bot, body_has(f"Update on case {number}"), "the outcome")
        assert reply_target(outcome) == tip and "fire brigade" not in outcome["content"]["body"]
        edit = await from_bot(
            li,
            room,
            bot,
            lambda ev: (
                ev["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
                and number in ev["content"]["m.new_content"]["body"]
                and "solved" in ev["content"]["m.new_content"]["body"]
            ),
            "the case board edited in place",
        )
        board_id = edit["content"]["m.relates_to"]["event_id"]
        pinned = await li.state_event(room, "m.room.pinned_events")
        assert board_id in pinned["pinned"]

        actions = {row[0] for row in station.bot.process.query("SELECT action FROM audit_log")}
        assert {"case.created", "case.note", "case.solved"} <= actions
        history = station.bot.process.query(
            "SELECT e.action, e.old, e.new FROM case_events e JOIN cases c ON c.id = e.case_id"
            " WHERE c.number = ? ORDER BY e.id",
            (number,),
        )
        assert ("status", "new", "solved") in history


async def test_private_and_anonymous_tips_and_phone_calls(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    li_acct, zhang_acct = account("li"), account("zhang")
    async with station.officer, li_acct.client() as li, zhang_acct.client() as zhang:
        room, officers_room = await setup(station, [li, zhang], "private")
        bot = station.bot_id

        # A private tip by DM: acknowledged there, never shown in any room.
        li_dm = await station.open_dm(li)
        secret = "The man in flat 1702 of building 8 is dealing drugs, foil and powder everywhere"
        await li.send_text(li_dm, secret)
        ack = await from_bot(li, li_dm, bot, body_has("Logged as case"), "the private ack")
        number = ack["content"]["org.neighborwatch"]["case"]
        await station.officer.wait_text(officers_room, bot, f"private report {number}")
        for viewer, rooms in (
            (station.officer, [room, officers_room, station.dm]),
            (zhang, [room]),
        ):
            for where in rooms:
                texts = " ".join(await viewer.texts_from(where, bot))
                assert "1702" not in texts and "powder" not in texts, where

        # Anonymous: officers see a pseudonym; a question goes to the reporter and back.
        zhang_dm = await station.open_dm(zhang)
        await zhang.send_text(
            zhang_dm,
            "!tip anonymous a gambling den in the basement of "
            "building 4, lookouts at the door every night",
        )
        anon = await from_bot(zhang, zhang_dm, bot, body_has("anonymously"), "the anon ack")
        anon_number = anon["content"]["org.neighborwatch"]["case"]
        detail = await station.command(f"!case {anon_number}", "Reporter #")
        assert zhang.user_id not in detail
        await station.command(
            f'!case ask {anon_number} "Which door do they watch?"',
            "Question sent",
            room=officers_room,
        )
        await zhang.wait_text(zhang_dm, bot, "Which door do they watch?")
        await zhang.send_text(zhang_dm, "The east door, next to the bins")
        answer = await station.officer.wait_text(officers_room, bot, "east door")
        assert "Reporter #" in answer and zhang.user_id not in answer

        # A phone call logged by the officer.
        reply = await station.command(
            '!log call "Mrs Chen: the fire exit on floor 9 of building 3 is blocked by '
            'furniture" reporter="Mrs Chen" neighbourhood=private',
            "Logged the call",
        )
        call_number = reply.split("case ")[1].split(" ")[0]
        assert station.bot.process.query(
            "SELECT source, reporter_name, category FROM cases WHERE number = ?", (call_number,)
        ) == [("call", "Mrs Chen", "fire_hazard")]
