"""Joining a verified room, end to end on a real Synapse, each path with its own resident:
a code by DM, a knock with a code, a knock approved or denied by an officer, an expired
code and a code used more often than allowed."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from localhs import Homeserver

from tests.conftest import Account, BotUnderTest
from tests.integration.test_rooms_live import wait_dm_text
from tests.support.matrix_client import TestUser, wait_until
from tests.support.world import Station, open_station

pytestmark = pytest.mark.integration

CODE = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}")


async def make_code(station: Station, extra: str = "") -> str:
    reply = await station.command(f"!code onb/residents {extra}".strip(), "Join code")
    match = CODE.search(reply)
    assert match, reply
    return match.group(0)


async def answer_form(station: Station, user: TestUser, room: str, name: str, unit: str) -> None:
    await user.wait_text(room, station.bot_id, "full name")
    await user.send_text(room, name)
    await user.wait_text(room, station.bot_id, "building and unit")
    await user.send_text(room, unit)
    await user.wait_text(room, station.bot_id, "I have invited you")


async def joins(user: TestUser, room: str) -> None:
    async def joined() -> bool:
        return await user.try_join(room)

    await wait_until(joined, timeout=30, what=f"{user.user_id} to be let in")


async def test_every_way_in_and_every_refusal(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    alias = f"#nw-onb-residents:{homeserver.server_name}"
    people = {name: account(name) for name in ("ana", "bo", "cai", "dai", "eve", "fu")}
    clients = {name: acct.client() for name, acct in people.items()}
    try:
        room = await station.managed_room("onb", "residents", name="Onboarding Court")
        officers_room = (await station.officer.invited_rooms())[0]
        await station.officer.join(officers_room)
        code = await make_code(station, "uses=2")

        # 1. A code by direct message: a short form, then the invitation, then a welcome.
        ana = clients["ana"]
        ana_dm = await station.open_dm(ana)
        await ana.send_text(ana_dm, f"!join {code.lower()}")
        await answer_form(station, ana, ana_dm, "Ana Wang", "Building 5, 2201")
        await joins(ana, room)
        await station.officer.wait_text(room, station.bot_id, "Welcome, Ana Wang (residents)")

        # 2. A knock ("Ask to join") with the code in its note: the same form, by DM.
        bo = clients["bo"]
        status, body = await bo.knock(alias, f"Hello, my code is {code}")
        assert status == 200, body
        text = await wait_dm_text(bo, station.bot_id, "full name")
        assert "Onboarding Court" in text
        dm = (await bo.ok("GET", "/_matrix/client/v3/joined_rooms"))["joined_rooms"][0]
        await answer_form(station, bo, dm, "Bo Li", "-")
        await joins(bo, room)

        # 3. The code had two uses: the third person is refused, clearly.
        cai = clients["cai"]
        cai_dm = await station.open_dm(cai)
        await cai.send_text(cai_dm, f"!join {code}")
        await cai.wait_text(cai_dm, station.bot_id, "has already been used")
        assert not await cai.try_join(room)

        # 4. An expired code (its expiry moved into the past, as time would).
        stale = await make_code(station, "expires=1h")
        station.bot.process.execute("UPDATE join_codes SET expires_at = 0 WHERE code = ?", (stale,))
        await cai.send_text(cai_dm, f"!join {stale}")
        await cai.wait_text(cai_dm, station.bot_id, "has expired")

        # 5. A knock without a code waits for an officer, who approves it.
        dai = clients["dai"]
        status, _ = await dai.knock(alias, "I moved into building 7 last week")
        assert status == 200
        notice = await station.officer.wait_text(officers_room, station.bot_id, dai.user_id)
        assert "asks to join" in notice and "building 7" in notice
        await wait_dm_text(dai, station.bot_id, "passed to the community officers")
        reply = await station.command(f'!approve {dai.user_id} name="Dai Chen"', "Approved")
        assert "invited" in reply
        await joins(dai, room)
        members = await station.command("!members onb/residents", "Members of")
        assert "Dai Chen" in members and "Ana Wang" in members and "Bo Li" in members

        # 6. A knock the officer denies: the person is told, with the reason, and stays out.
        eve = clients["eve"]
        await eve.knock(alias, "let me in")
        await station.officer.wait_text(officers_room, station.bot_id, eve.user_id)
        await station.command(f"!deny {eve.user_id} we could not verify you", "Declined")
        told = await wait_dm_text(eve, station.bot_id, "was declined")
        assert "we could not verify you" in told
        assert not await eve.try_join(room)

        # Nothing to approve: a clear answer.
        fu = clients["fu"]
        reply = await station.command(f"!approve {fu.user_id}", "no pending request")
        assert fu.user_id in reply

        joined = await station.officer.joined_members(room)
        assert {ana.user_id, bo.user_id, dai.user_id} <= joined
        assert not {cai.user_id, eve.user_id, fu.user_id} & joined
        audit = {row[0] for row in station.bot.process.query("SELECT action FROM audit_log")}
        assert {
            "join.code",
            "join.knock_code",
            "join.knock",
            "join.approve",
            "join.deny",
            "join.bad_code",
            "member.verified",
        } <= audit
    finally:
        for client in [*clients.values(), station.officer]:
            await client.close()
