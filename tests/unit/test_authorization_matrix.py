"""Every registered command, run by every kind of person, is allowed or refused exactly as its
declaration says — generated from the command registry, so a new command cannot ship without
its permissions being exercised here.

The people: an outsider (member of nothing), a member who joined a managed room but was never
verified, a verified resident, an officer of another station, an officer and a supervisor.
Each runs each command bare and with an example that targets Hongqiao's rooms and cases, in
each place they could write from (their direct chat, and their group room if they have one).

* refused → the polite refusal, an audit row, and nothing else in the database changes;
* allowed → never the refusal, never a crash, always an answer (a usage line counts);
* an officer of another station is "allowed" by role, but a staff-only command aimed at
  Hongqiao's rooms or cases changes nothing there, and no command shows them Hongqiao's
  reports, residents' names or phones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.app import build_features
from bot.commands import CommandSpec
from bot.domain.roles import STAFF, Role
from bot.store import outbox
from tests.support.town import (
    DM,
    LI,
    OFFICERS_ROOM,
    OUTSIDER,
    ROOM,
    TIP_TEXT,
    WU,
    Town,
    seeded_town,
)
from tests.support.units import OFFICER, OTHER_OFFICER, SUPERVISOR, message

REGISTRY = build_features().commands
SPECS = REGISTRY.all()

EXAMPLES: dict[str, str] = {
    "alert": 'hqxc "Scam calls about parcels" level=advisory',
    "alert withdraw": '{alert} "over"',
    "alerts": "",
    "anonymous": "on",
    "approve": '@knocker:example.org hqxc/residents name="Knock Er"',
    "case": "{case}",
    "case ack": "{case}",
    "case ask": '{case} "Which entrance?"',
    "case assign": "{case} @zhou:police.example",
    "case category": "{case} theft",
    "case duplicate": "{case} {other}",
    "case file": "{case} 1",
    "case investigate": "{case} checking the box",
    "case link": "{case} {other}",
    "case note": '{case} "called the property office"',
    "case refer": '{case} fire "for the fire brigade"',
    "case reopen": '{case} "more information"',
    "case reporter": "{case}",
    "case solve": '{case} "removed them"',
    "case unfounded": '{case} "nothing there"',
    "cases": "all",
    "code": "hqxc/residents",
    "deny": "@knocker:example.org hqxc/residents nobody knows them",
    "digest": "daily station",
    "enrol": '@new:example.org hqxc/residents name="New Person"',
    "help": "case",
    "join": "{code}",
    "log": 'call "Mrs Chen reports a dog left alone for days" neighbourhood=hqxc',
    "members": "hqxc/residents",
    "neighbourhood add": 'hqnew "Hongqiao New" station=hq',
    "neighbourhood set": 'hqxc name="Renamed"',
    "neighbourhoods": "",
    "ping": "",
    "qr": "hqxc/residents",
    "remove": "@zhang:example.org hqxc/residents moved away",
    "retention": "",
    "room create": "hqxc guards",
    "rooms": "hqxc",
    "stats": "7d",
    "status": "",
    "taskforce add": "@li:other.example TF-1",
    "taskforce close": 'TF-1 "done"',
    "taskforce create": '"Firecracker ring" case={case} @li:other.example',
    "taskforce link": "{other} TF-1",
    "taskforces": "",
    "tip": "someone dumps rubbish in the stairwell of building 9 every night",
    "trust": "@li:example.org",
    "wanted": '"Short man" "red cap" to=hqxc',
    "wanted extend": "{wanted} 14d",
    "wanted found": '{wanted} "seen by a guard"',
    "wanted withdraw": '{wanted} "no longer needed"',
}
"""One invocation per command aimed at Hongqiao's rooms and cases. A command missing here
fails ``test_every_command_is_in_the_matrix``: add an example when you add a command."""

DM_ONLY = frozenset({"join", "anonymous"})
"""Commands that work only in the caller's direct chat; elsewhere they say where to send them
(a redirection, not a refusal)."""

BOOKKEEPING = frozenset({"audit_log", "processed_events", "outbox", "throttle"})
"""Tables a refused command may touch: the audit trail, the inbox, the refusal, the
strangers' rate limit."""

HQ_SECRETS = ("firecrackers", "Li Ming", "Zhang Wei", "13800138000", "5-2201", "Bike thieves")
"""What Hongqiao knows: a report, residents' names, phones and flats, an alert's text."""


@dataclass(frozen=True)
class Persona:
    name: str
    user: str
    roles: frozenset[Role]
    places: tuple[str, ...]
    must_not_see: tuple[str, ...] = ()


PERSONAS = (
    Persona("outsider", OUTSIDER, frozenset({Role.ANYONE}), (DM[OUTSIDER],), HQ_SECRETS),
    Persona("unverified member", WU, frozenset({Role.ANYONE}), (DM[WU], ROOM), HQ_SECRETS),
    Persona(
        "resident",
        LI,
        frozenset({Role.ANYONE, Role.RESIDENT}),
        (DM[LI], ROOM),
        ("13800138000", "5-2201"),  # other residents' phones and flats
    ),
    Persona(
        "officer of another station",
        OTHER_OFFICER,
        frozenset({Role.ANYONE, Role.OFFICER}),
        (DM[OTHER_OFFICER],),
        HQ_SECRETS,
    ),
    Persona(
        "officer", OFFICER, frozenset({Role.ANYONE, Role.OFFICER}), (DM[OFFICER], OFFICERS_ROOM)
    ),
    Persona("supervisor", SUPERVISOR, frozenset({Role.ANYONE, Role.SUPERVISOR}), (DM[SUPERVISOR],)),
)


@pytest.fixture
async def town() -> AsyncIterator[Town]:
    town = await seeded_town()
    yield town
    await town.db.close()


def test_every_command_is_in_the_matrix() -> None:
    verbs = {spec.verb for spec in SPECS}
    assert verbs, "the registry is empty"
    for spec in SPECS:
        assert spec.roles, f"!{spec.verb} declares no roles: nobody could run it"
    missing = sorted(verbs - set(EXAMPLES))
    assert not missing, f"add an example invocation to EXAMPLES for: {missing}"
    stale = sorted((set(EXAMPLES) | DM_ONLY) - verbs)
    assert not stale, f"no such command any more: {stale}"


def invocations(spec: CommandSpec, town: Town) -> list[str]:
    example = EXAMPLES.get(spec.verb, "").format(
        case=town.case_number,
        other=town.other_case,
        alert=town.alert_number,
        wanted=town.wanted_number,
        code=town.code,
    )
    return list(dict.fromkeys([f"!{spec.verb}", f"!{spec.verb} {example}".rstrip()]))


def answers(rows: list[outbox.OutboxRow], persona: Persona, place: str) -> list[str]:
    lanes = {place, outbox.dm_lane(persona.user), DM[persona.user]}
    return [str(r.content.get("body", "")) for r in rows if r.kind == "message" and r.lane in lanes]


@pytest.mark.parametrize("persona", PERSONAS, ids=[p.name for p in PERSONAS])
@pytest.mark.parametrize("spec", SPECS, ids=[s.verb for s in SPECS])
async def test_command_is_allowed_or_refused_as_declared(
    town: Town, spec: CommandSpec, persona: Persona
) -> None:
    allowed = spec.allowed(persona.roles)
    for place in persona.places:
        for text in invocations(spec, town):
            where = f"{persona.name} sends {text!r} in {place}"
            before = await town.snapshot(BOOKKEEPING)
            event = message(text, persona.user, room_id=place)
            rows = await town.send(event)
            said = answers(rows, persona, place)
            outcome = await town.outcome(event.event_id)
            assert outcome != "error", f"{where}: the handler crashed"
            assert said, f"{where}: no answer at all ({outcome})"
            refused = [s for s in said if s.startswith(f"Sorry, !{spec.verb} is only for")]
            if not allowed:
                assert refused and outcome == "command:refused", f"{where}: not refused: {said}"
                assert "This attempt has been recorded" in refused[0]
                actor, action, target = (await town.audit_actions(1))[0]
                assert (actor, action, target) == (persona.user, "command.refused", spec.verb)
                assert await town.snapshot(BOOKKEEPING) == before, f"{where}: something changed"
                assert len(rows) == 1, f"{where}: more than the refusal was sent"
                continue
            assert not refused, f"{where}: refused: {said}"
            last = (await town.audit_actions(1))[:1]
            assert last != [(persona.user, "command.refused", spec.verb)], where
            if spec.verb in DM_ONLY and place != DM[persona.user] and outcome != "command:usage":
                assert any("in a direct message" in s for s in said), f"{where}: {said}"
            if persona.user == OTHER_OFFICER and spec.roles <= STAFF and text != f"!{spec.verb}":
                after = await town.snapshot(BOOKKEEPING)
                changed = [t for t in after if after[t] != before[t]]
                assert not changed, f"{where}: changed Hongqiao's {changed}"
            for row in rows:
                for secret in persona.must_not_see:
                    assert secret not in str(row.content), f"{where}: shown {secret!r}"


async def test_the_matrix_exercises_real_refusals_and_real_work(town: Town) -> None:
    """Guards the matrix itself: the seeded town is what the examples aim at."""
    assert TIP_TEXT.startswith("16 firecrackers") and town.case_number.startswith("HQ-")
    rows = await town.say(f"!case solve {town.case_number} removed", OFFICER, OFFICERS_ROOM)
    assert any("solved" in str(r.content.get("body", "")) for r in rows)
    rows = await town.say(f"!case solve {town.other_case} done", OTHER_OFFICER)
    assert any("There is no case" in str(r.content.get("body", "")) for r in rows), rows
