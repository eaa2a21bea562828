"""Verified, invite-only neighbourhood rooms on a real Synapse: the room's state, the server
refusing residents' invites, the QR code, enforcement and reconciliation, !members privacy."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import yaml
import zxingcpp
from localhs import Homeserver
from PIL import Image

from tests.conftest import Account, BotUnderTest
from tests.support.matrix_client import TestUser, wait_until
from tests.support.world import open_station

pytestmark = pytest.mark.integration


def by_type(state: list[dict[str, Any]], event_type: str, key: str = "") -> dict[str, Any]:
    for ev in state:
        if ev["type"] == event_type and ev.get("state_key") == key:
            return dict(ev["content"])
    return {}


async def test_a_created_room_matches_the_spec_and_residents_cannot_invite(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    resident_acct = account("resident")
    async with station.officer, resident_acct.client() as resident:
        room = await station.managed_room("hqxc", "guards")
        state = await station.officer.state(room)
        assert by_type(state, "m.room.join_rules") == {"join_rule": "knock"}
        assert by_type(state, "m.room.guest_access") == {"guest_access": "forbidden"}
        assert by_type(state, "m.room.history_visibility") == {"history_visibility": "shared"}
        assert by_type(state, "m.room.name")["name"] == "Hongqiao Xincheng · security guards"
        alias = f"#nw-hqxc-guards:{homeserver.server_name}"
        assert by_type(state, "m.room.canonical_alias")["alias"] == alias
        assert "110" in by_type(state, "m.room.topic")["topic"]
        assert by_type(state, "m.room.encryption") == {}, "rooms.encrypted is false here"
        power = by_type(state, "m.room.power_levels")
        assert power["users"] == {station.officer.user_id: 50}
        assert (power["invite"], power["kick"], power["redact"]) == (50, 50, 50)
        assert power["state_default"] == 100 and power["users_default"] == 0

        async def pinned_rules() -> bool:
            return bool(by_type(await station.officer.state(room), "m.room.pinned_events"))

        await wait_until(pinned_rules, timeout=30, what="the rules to be pinned")
        state = await station.officer.state(room)
        pinned = by_type(state, "m.room.pinned_events")["pinned"]
        rules = [ev for ev in await station.officer.messages(room) if ev["event_id"] in pinned]
        assert "Rules of this group" in rules[0]["content"]["body"]

        # The station's officers' room exists, with the officer invited.
        [officers_room] = await station.officer.invited_rooms()
        await station.officer.join(officers_room)
        name = await station.officer.state_event(officers_room, "m.room.name")
        assert name["name"] == "Test Station · officers"

        await station.enrol(
            resident, "hqxc/guards", room, "Li Ming", 'unit="Gate 2" phone=13800138000'
        )
        status, body = await resident.invite(room, "@someone:" + homeserver.server_name)
        assert status == 403, body

        # !members: residents see names and roles, officers get contact details by DM.
        listing = await station.command("!members", "Members of", user=resident, room=room)
        assert "Li Ming" in listing and "13800138000" not in listing and "Gate 2" not in listing
        await station.command("!members hqxc/guards", "Members of")
        officer_view = await station.officer.wait_text(station.dm, station.bot_id, "13800138000")
        assert "Gate 2" in officer_view
        in_room = await resident.texts_from(room, station.bot_id)
        assert not any("13800138000" in text for text in in_room)


async def test_the_qr_code_decodes_to_the_rooms_matrix_to_link(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    async with station.officer:
        await station.managed_room("qrtest", "residents", name="QR Court")
        await station.command("!qr qrtest/residents", "sent you the QR code")
        images: list[dict[str, Any]] = []

        async def image_arrived() -> bool:
            images[:] = [
                ev
                for ev in await station.officer.messages(station.dm)
                if ev.get("sender") == station.bot_id and ev["content"].get("msgtype") == "m.image"
            ]
            return bool(images)

        await wait_until(image_arrived, timeout=30, what="the QR image")
        png = await station.officer.download(images[0]["content"]["url"])
        [decoded] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
        assert decoded.text == f"https://matrix.to/#/#nw-qrtest-residents:{homeserver.server_name}"


async def test_hand_made_changes_are_undone_intruders_removed_and_old_officers_demoted(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    second = account("officer2")
    station = await open_station(homeserver, make_bot, account, extra_officers=[second])
    admin_info = homeserver.register(f"admin-{second.user_id[9:17]}", "admin-pass", admin=True)
    admin = TestUser(homeserver.url, admin_info["user_id"], admin_info["access_token"])
    intruder_acct = account("intruder")
    async with station.officer, admin, intruder_acct.client() as intruder:
        room = await station.managed_room("drift", "residents", name="Drift Gardens")
        officers_room = (await station.officer.invited_rooms())[0]
        await station.officer.join(officers_room)
        levels = await station.officer.state_event(room, "m.room.power_levels")
        assert levels["users"] == {station.officer.user_id: 50, second.user_id: 50}

        # While the bot is down, a server admin takes power and opens the room by hand,
        # and someone unverified walks in.
        station.bot.process.stop()
        await admin.ok(
            "POST", f"/_synapse/admin/v1/rooms/{room}/make_room_admin", {"user_id": admin.user_id}
        )
        await admin.join(room)
        assert (await admin.put_state(room, "m.room.join_rules", {"join_rule": "public"}))[0] == 200
        levels["users"][intruder.user_id] = 50
        levels["users"][admin.user_id] = 100
        levels["invite"] = 0
        assert (await admin.put_state(room, "m.room.power_levels", levels))[0] == 200
        assert await intruder.try_join(room)
        # ... and the second officer is taken off the station in config.
        config = yaml.safe_load(station.bot.process.config_path.read_text())
        config["stations"][0]["officers"] = [station.officer.user_id]
        station.bot.process.config_path.write_text(yaml.safe_dump(config))
        station.bot.process.start()

        async def restored() -> bool:
            rule = await station.officer.state_event(room, "m.room.join_rules")
            power = await station.officer.state_event(room, "m.room.power_levels")
            return (
                rule == {"join_rule": "knock"}
                and power["invite"] == 50
                and power["users"] == {station.officer.user_id: 50}
            )

        await wait_until(restored, timeout=30, what="the bot to restore the room's settings")

        async def removed() -> bool:
            members = await station.officer.joined_members(room)
            return intruder.user_id not in members and admin.user_id not in members

        await wait_until(removed, timeout=30, what="the unverified people to be removed")
        await station.officer.wait_text(officers_room, station.bot_id, f"{intruder.user_id} joined")
        audit = station.bot.process.query(
            "SELECT detail FROM audit_log WHERE action = 'room.reconciled' AND room_id = ?",
            (room,),
        )
        changes = " ".join(row[0] for row in audit)
        assert f"{second.user_id} 50 → 0" in changes and "invite 0 → 50" in changes


async def wait_dm_text(user: TestUser, bot_id: str, needle: str) -> str:
    """Accept the bot's direct-chat invitations and wait for ``needle`` in one of them."""
    found: list[str] = []

    async def arrived() -> bool:
        await user.accept_invites()
        data = await user.ok("GET", "/_matrix/client/v3/joined_rooms")
        for joined in data["joined_rooms"]:
            texts = [t for t in await user.texts_from(joined, bot_id) if needle in t]
            if texts:
                found[:] = texts
                return True
        return False

    await wait_until(arrived, timeout=30, what=f"a direct message with “{needle}”")
    return found[-1]
