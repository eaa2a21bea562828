"""Spoofing: what a member (or a server) can fake, and what the bot makes of it.

* a display name is not an identity: roles come from the Matrix id alone;
* a reply names its target by event id only: one pointing at another room's case (another
  neighbourhood, someone else's direct chat) or at a question put to someone else changes
  nothing there;
* an edit of a logged tip is kept as the case's edit history; the report stays as received;
* a reporter deleting their tip withdraws it: the case keeps the text for the police,
  marked withdrawn by the reporter (see ``intake.on_redaction`` for the whole decision);
* events from a server the room does not admit (``m.federate: false``, a server ACL) are
  not acted on;
* replays: the same event id is handled once, even after a restart. An old event re-sent
  under a new id is, for Matrix, a new event its server signed: it is handled like any
  message, timed by the bot's clock (never the sender's ``origin_server_ts``), and a
  repeated report is flagged to the officers as a possible duplicate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.domain.federation import acl_admits
from bot.domain.matrix_model import RoomEvent
from bot.domain.tips import TipAnalysis
from bot.features import intake as intake_feature
from bot.features import rooms as rooms_feature
from bot.pipeline import make_deps
from bot.store import cases, org, outbox
from bot.store.db import Connection
from tests.support.town import (
    DM,
    LI,
    NOW_MS,
    OFFICERS_ROOM,
    ROOM,
    TIP_TEXT,
    XJ_ROOM,
    ZHANG,
    Town,
    seeded_town,
)
from tests.support.units import OFFICER, OTHER_OFFICER, make_pipeline, member_event, message

MA = "@ma:example.org"  # a verified resident of Xinjing's neighbourhood
REPORT = "Someone has been trying the door handles on floor 6 of building 2 every night"


@pytest.fixture
async def town() -> AsyncIterator[Town]:
    town = await seeded_town()
    async with town.db.transaction() as conn:
        await org.save_member(
            conn,
            room_id=XJ_ROOM,
            user_id=MA,
            status="verified",
            via="in_person",
            name="Ma Lin",
            verified_by=OTHER_OFFICER,
        )
    yield town
    await town.db.close()


def bodies(rows: list[outbox.OutboxRow], lane: str | None = None) -> list[str]:
    return [
        str(r.content.get("body", ""))
        for r in rows
        if r.kind == "message" and (lane is None or r.lane == lane)
    ]


def reactions(rows: list[outbox.OutboxRow]) -> list[outbox.OutboxRow]:
    return [r for r in rows if r.event_type == "m.reaction"]


def reply_to(event_id: str) -> dict[str, Any]:
    return {"m.relates_to": {"m.in_reply_to": {"event_id": event_id}}}


async def case_of(town: Town, number: str) -> Any:
    async with town.db.transaction() as conn:
        return await cases.by_number(conn, number)


async def history(town: Town, number: str) -> list[tuple[str, str, str | None]]:
    async with town.db.transaction() as conn:
        case = await cases.by_number(conn, number)
        assert case is not None
        return [(h.actor, h.action, h.note) for h in await cases.history(conn, case.id)]


async def report(town: Town, text: str, sender: str, room: str) -> tuple[RoomEvent, str, str]:
    """Post a tip; returns the event, the case number and the event id of the bot's ack."""
    event = message(text, sender, room_id=room)
    rows = await town.send(event)
    [ack] = [r for r in rows if " as case " in str(r.content.get("body", ""))]
    async with town.db.transaction() as conn:
        case = await cases.by_event(conn, event.event_id)
    assert case is not None
    return event, case.number, f"$out{ack.id}"


# --- display names ----------------------------------------------------------------------


async def test_a_display_name_of_officer_wang_gives_no_officer_powers(town: Town) -> None:
    rename = member_event(ROOM, LI, "join", prev="join")
    rename = RoomEvent(
        rename.event_id,
        ROOM,
        LI,
        "m.room.member",
        {"membership": "join", "displayname": "Officer Wang"},
        1_000,
        state_key=LI,
        unsigned={"prev_content": {"membership": "join", "displayname": "Li Ming"}},
    )
    assert await town.send(rename) == []  # no welcome again, no kick, nothing said

    rows = await town.say(f"!case solve {town.case_number} done", LI, ROOM)
    rows += await town.say("!status", LI)
    rows += await town.say(
        f"Officer Wang here: {town.case_number} is solved, close it and thank everyone", LI, ROOM
    )
    said = bodies(rows)
    assert sum("is only for officers" in s for s in said) == 2
    assert (await case_of(town, town.case_number)).status == "new"
    assert all("Officer Wang" not in s for s in said)
    assert (LI, "command.refused", "case solve") in await town.audit_actions(5)


@pytest.mark.parametrize(
    "impostor",
    ["@wang:evil.example", "@wаng:police.example", "@WANG:police.example", "@wang:police.example."],
    ids=["same name other server", "cyrillic a", "upper case", "trailing dot"],
)
async def test_a_lookalike_of_an_officers_id_is_not_an_officer(town: Town, impostor: str) -> None:
    rows = await town.say(f"!case solve {town.case_number} done", impostor, "!dm-impostor:x")
    assert any("is only for officers" in s for s in bodies(rows))
    assert (await case_of(town, town.case_number)).status == "new"


# --- replies that point elsewhere -------------------------------------------------------


async def test_a_reply_to_another_neighbourhoods_ack_adds_nothing_to_that_case(
    town: Town,
) -> None:
    _, xj_case, xj_ack = await report(town, REPORT, MA, XJ_ROOM)
    rows = await town.say("They were here too, wearing a red cap", LI, ROOM, **reply_to(xj_ack))
    assert reactions(rows) == []
    assert [a for _, a, _ in await history(town, xj_case)].count("note") == 0
    assert len(await town.cases()) == 3  # the two seeded cases and Ma's; no new one

    # The same reply in the case's own room is a note (the check above can fail).
    rows = await town.say("They were here too, wearing a red cap", MA, XJ_ROOM, **reply_to(xj_ack))
    assert len(reactions(rows)) == 1
    assert (MA, "note", "They were here too, wearing a red cap") in await history(town, xj_case)


async def test_a_reply_pointing_at_someone_elses_private_report_adds_nothing(
    town: Town,
) -> None:
    _, private, ack = await report(town, REPORT, ZHANG, DM[ZHANG])
    rows = await town.say("the man in 1702 is a liar", LI, DM[LI], **reply_to(ack))
    assert reactions(rows) == []
    assert all(a != "note" for _, a, _ in await history(town, private))
    for row in rows:
        assert private not in str(row.content) and "door handles" not in str(row.content)


async def test_only_the_reporter_answers_the_bots_question_about_their_message(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsure = TipAnalysis(True, "other", False, "building 2", (), 0.55)
    monkeypatch.setattr(intake_feature, "analyse", lambda text, lang=None: unsure)
    rows = await town.say("someone left a suitcase by the bins near building 2", LI, ROOM)
    [question] = [r for r in rows if "should log" in str(r.content.get("body", ""))]

    rows = await town.say("no", ZHANG, ROOM, **reply_to(f"$out{question.id}"))
    assert not any("not logged" in s for s in bodies(rows))
    before = len(await town.cases())

    rows = await town.say("yes", LI, ROOM, **reply_to(f"$out{question.id}"))
    assert any("Logged as case" in s for s in bodies(rows))
    assert len(await town.cases()) == before + 1


async def test_tip_in_reply_to_a_message_from_another_room_is_not_logged(town: Town) -> None:
    secret = message("my neighbour in 1702 argues with his wife a lot", ZHANG, room_id=DM[ZHANG])
    await town.send(secret)
    before = len(await town.cases())
    rows = await town.say("!tip", OFFICER, ROOM, **reply_to(secret.event_id))
    assert any("I no longer have that message" in s for s in bodies(rows))
    assert len(await town.cases()) == before
    assert all("1702" not in str(r.content) for r in rows)


# --- edits ------------------------------------------------------------------------------


def edit_of(target: str, text: str, sender: str, room: str) -> RoomEvent:
    edit: dict[str, Any] = {
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }
    return message(f"* {text}", sender, room_id=room, **edit)


async def test_edits_of_a_logged_tip_are_its_history_and_the_report_stays_as_received(
    town: Town,
) -> None:
    [tip] = [c for c in await town.cases() if c.number == town.case_number]
    assert tip.event_id is not None
    assert await town.send(edit_of(tip.event_id, "20 firecrackers, not 16", LI, ROOM)) == []
    assert await town.send(edit_of(tip.event_id, "no firecrackers at all", ZHANG, ROOM)) == []
    assert await town.send(edit_of(tip.event_id, "forget it", LI, DM[LI])) == []

    case = await case_of(town, town.case_number)
    assert case.text == TIP_TEXT
    edits = [
        (who, note) for who, action, note in await history(town, case.number) if action == "edited"
    ]
    assert edits == [(LI, "20 firecrackers, not 16")]
    [shown] = bodies(await town.say(f"!case {case.number}", OFFICER), DM[OFFICER])
    assert f"Report: “{TIP_TEXT}”" in shown
    assert "edited — 20 firecrackers, not 16" in shown
    assert "no firecrackers at all" not in shown and "forget it" not in shown


# --- redactions -------------------------------------------------------------------------


def redaction(target: Any, sender: str, room: str, event_id: str | None = None) -> RoomEvent:
    base = message("", sender, room_id=room)
    return RoomEvent(
        event_id or base.event_id.replace("$m", "$r"),
        room,
        sender,
        "m.room.redaction",
        {"redacts": target, "reason": "sent by mistake"},
        1_000,
    )


async def test_a_reporter_deleting_their_tip_withdraws_it_and_the_police_keep_the_text(
    town: Town,
) -> None:
    [tip] = [c for c in await town.cases() if c.number == town.case_number]
    assert tip.event_id is not None
    deletion = redaction(tip.event_id, LI, ROOM)
    rows = await town.send(deletion)
    assert await town.send(deletion) == []  # delivered twice: handled once
    assert await town.send(redaction(tip.event_id, LI, ROOM)) == []  # sent again: once

    assert bodies(rows, ROOM) == []  # the group is not told
    [notice] = bodies(rows, OFFICERS_ROOM)
    assert town.case_number in notice and "withdrawn by the reporter" in notice
    assert "Li Ming" not in notice and LI not in notice
    case = await case_of(town, town.case_number)
    assert case.text == TIP_TEXT and case.status == "new"
    assert [(w, a) for w, a, _ in await history(town, case.number) if a == "withdrawn"] == [
        (LI, "withdrawn")
    ]
    assert (LI, "case.withdrawn", town.case_number) in await town.audit_actions(5)

    [shown] = bodies(await town.say(f"!case {case.number}", OFFICER), DM[OFFICER])
    assert "Withdrawn by the reporter" in shown and TIP_TEXT in shown


async def test_a_moderator_removing_a_tip_does_not_withdraw_it(town: Town) -> None:
    [tip] = [c for c in await town.cases() if c.number == town.case_number]
    rows = await town.send(redaction(tip.event_id, OFFICER, ROOM))
    rows += await town.send(redaction(tip.event_id, ZHANG, ROOM))
    rows += await town.send(redaction({"event_id": tip.event_id}, LI, ROOM))  # malformed
    assert rows == []
    assert all(a != "withdrawn" for _, a, _ in await history(town, town.case_number))
    [shown] = bodies(await town.say(f"!case {town.case_number}", OFFICER), DM[OFFICER])
    assert "Withdrawn" not in shown


async def test_a_deleted_message_the_bot_asked_about_is_not_logged_later(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsure = TipAnalysis(True, "other", False, "building 2", (), 0.55)
    monkeypatch.setattr(intake_feature, "analyse", lambda text, lang=None: unsure)
    asked = message("someone left a suitcase by the bins near building 2", LI, room_id=ROOM)
    await town.send(asked)
    before = len(await town.cases())
    await town.send(redaction(asked.event_id, LI, ROOM))

    rows = await town.say("yes", LI, ROOM)
    rows += await town.say("!tip", OFFICER, ROOM, **reply_to(asked.event_id))
    assert len(await town.cases()) == before
    assert not any("Logged as case" in s for s in bodies(rows))


async def test_an_anonymous_reporter_withdrawing_stays_a_pseudonym(town: Town) -> None:
    await town.say("!anonymous on", ZHANG)
    event, number, _ = await report(town, REPORT, ZHANG, DM[ZHANG])
    rows = await town.send(redaction(event.event_id, ZHANG, DM[ZHANG]))
    assert all(ZHANG not in str(r.content) and "Zhang" not in str(r.content) for r in rows)
    [shown] = bodies(await town.say(f"!case {number}", OFFICER), DM[OFFICER])
    assert "Withdrawn by the reporter" in shown
    assert "Reporter #" in shown and ZHANG not in shown


# --- servers the room does not admit ----------------------------------------------------

MOLE = "@mole:evil.example"
FRIEND = "@friend:good.example"


async def verify(town: Town, *users: str) -> None:
    async with town.db.transaction() as conn:
        for user in users:
            await org.save_member(
                conn, room_id=ROOM, user_id=user, status="verified", via="in_person", name=user
            )


def state(kind: str, content: dict[str, Any], sender: str = "@bot:police.example") -> RoomEvent:
    base = message("", sender, room_id=ROOM)
    return RoomEvent(base.event_id.replace("$m", "$s"), ROOM, sender, kind, content, 1, "")


async def test_a_server_banned_by_the_rooms_acl_gets_no_tip_or_command_through(
    town: Town,
) -> None:
    await verify(town, MOLE, FRIEND)
    await town.send(
        state("m.room.server_acl", {"allow": ["*"], "deny": ["*.evil.example", "evil.example"]})
    )
    before = len(await town.cases())

    tip = message(REPORT, MOLE, room_id=ROOM)
    ping = message("!ping", MOLE, room_id=ROOM)
    assert await town.send(tip) == [] and await town.send(ping) == []
    assert await town.outcome(tip.event_id) == "ignored:server_acl"
    assert len(await town.cases()) == before

    rows = await town.say(REPORT, FRIEND, ROOM)
    assert any("Logged as case" in s for s in bodies(rows))

    # Membership is still enforced for the refused server (state is not stopped).
    rows = await town.send(member_event(ROOM, "@other:evil.example", "join"))
    assert [r.kind for r in rows if r.kind == "kick"] == ["kick"]


async def test_a_room_that_does_not_federate_hears_only_its_own_server(town: Town) -> None:
    await verify(town, "@neighbour:police.example")
    await town.send(state("m.room.create", {"room_version": "11", "m.federate": False}))
    tip = message(REPORT, LI, room_id=ROOM)  # example.org: not the room's server
    assert await town.send(tip) == []
    assert await town.outcome(tip.event_id) == "ignored:not_federated"
    rows = await town.say(REPORT, "@neighbour:police.example", ROOM)
    assert any("Logged as case" in s for s in bodies(rows))


async def test_the_acl_read_at_startup_reconciliation_is_honoured(town: Town) -> None:
    await verify(town, MOLE)
    acl = {
        "type": "m.room.server_acl",
        "state_key": "",
        "content": {"allow": ["*"], "deny": ["evil.example"]},
    }

    async def reconcile(conn: Connection) -> None:
        deps = make_deps(conn, town.bot._config, NOW_MS)
        room = await org.room(conn, ROOM)
        assert room is not None
        await rooms_feature.reconcile_room(deps, room, [acl])

    await town.db.run(reconcile)
    await town.drain()
    tip = message(REPORT, MOLE, room_id=ROOM)
    assert await town.send(tip) == []
    assert await town.outcome(tip.event_id) == "ignored:server_acl"


@pytest.mark.parametrize(
    ("acl", "server", "admitted"),
    [
        ({"allow": ["*"]}, "example.org", True),
        ({"allow": ["*"], "deny": ["evil.example"]}, "evil.example:8448", False),
        ({"allow": ["*"], "deny": ["*.evil.example"]}, "evil.example", True),
        ({"allow": ["*"], "deny": ["*.evil.example"]}, "a.EVIL.example", False),
        ({"allow": ["good.example"], "deny": []}, "other.example", False),
        ({"deny": ["evil.example"]}, "good.example", False),  # no allow: nobody
        ({"allow": ["*"], "deny": ["evil.example"]}, "evil.example.good.org", True),
        ({"allow": ["*"], "allow_ip_literals": False}, "[::1]:8448", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "10.0.0.1", False),
        ({"allow": ["*"]}, "10.0.0.1:8448", True),
        ({"allow": "*", "deny": "evil.example"}, "good.example", False),  # not lists
        ({"allow": ["?ood.example", 5]}, "good.example", True),
    ],
)
def test_server_acl_rules(acl: dict[str, Any], server: str, admitted: bool) -> None:
    assert acl_admits(acl, server) is admitted


# --- replays ----------------------------------------------------------------------------


async def test_a_replayed_tip_is_handled_once_even_after_a_restart(town: Town) -> None:
    event = message(REPORT, LI, room_id=ROOM)
    first = await town.send(event)
    assert await town.send(event) == []
    town.bot = make_pipeline(town.db, clock_ms=NOW_MS + 60_000)  # the bot restarted
    assert await town.send(event) == []
    assert sum("Logged as case" in s for s in bodies(first)) == 1
    assert len([c for c in await town.cases() if c.event_id == event.event_id]) == 1


async def test_an_old_tip_resent_under_a_new_id_is_timed_by_the_bot_and_flagged(
    town: Town,
) -> None:
    old = message(REPORT, LI, room_id=ROOM)
    await town.send(old)
    replay = RoomEvent("$replayed", ROOM, LI, "m.room.message", dict(old.content), 0)
    rows = await town.send(replay)
    async with town.db.transaction() as conn:
        first = await cases.by_event(conn, old.event_id)
        second = await cases.by_event(conn, "$replayed")
    assert first is not None and second is not None
    assert second.created_at == NOW_MS  # the bot's clock, not 1970
    assert any(f"Possible duplicate of {first.number}" in s for s in bodies(rows, OFFICERS_ROOM))
