"""Two homeservers federating on loopback: residents, officers and bots on different servers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from localhs import Homeserver

from tests.conftest import Account, BotUnderTest, register
from tests.integration.test_rooms_live import wait_dm_text
from tests.support.matrix_client import TestUser, wait_until
from tests.support.world import open_station

pytestmark = pytest.mark.integration

CODE = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}")
TIP = "16 firecrackers hidden in the electricity box on the 22nd floor of building {}"


def on(hs: Homeserver) -> Callable[[str], Account]:
    return lambda prefix: register(hs, prefix)


async def power_level(user: TestUser, room: str, who: str) -> int:
    levels = await user.state_event(room, "m.room.power_levels")
    return int(levels.get("users", {}).get(who, levels.get("users_default", 0)))


async def test_a_resident_and_an_officer_on_another_server(
    federated: tuple[Homeserver, Homeserver],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    a, b = federated
    remote_officer = register(b, "wang")
    station = await open_station(a, make_bot, on(a), extra_officers=[remote_officer])
    async with station.officer, remote_officer.client() as wang, register(b, "li").client() as li:
        room = await station.managed_room("fed", "residents", name="Federation Court")

        # The officer on server B is invited and gets moderator rights in A's room.
        async def wang_joined() -> bool:
            return await wang.try_join(room)

        await wait_until(wang_joined, timeout=60, what="the remote officer's invitation")
        assert await power_level(station.officer, room, wang.user_id) == 50

        # A resident on B asks to join with a code ("Ask to join" in Element).
        reply = await station.command("!code fed/residents", "Join code")
        match = CODE.search(reply)
        assert match, reply
        status, body = await li.knock(f"#nw-fed-residents:{a.server_name}", f"code {match[0]}")
        assert status == 200, body
        await wait_dm_text(li, station.bot_id, "full name")
        [dm] = (await li.ok("GET", "/_matrix/client/v3/joined_rooms"))["joined_rooms"]
        await li.send_text(dm, "Li Ming")
        await li.wait_text(dm, station.bot_id, "building and unit")
        await li.send_text(dm, "Building 5, 2201")
        await li.wait_text(dm, station.bot_id, "I have invited you")

        async def li_joined() -> bool:
            return await li.try_join(room)

        await wait_until(li_joined, timeout=60, what="the resident on B to be let in")

        # Li's tip becomes a case on A's bot; the acknowledgement reaches Li on B.
        await li.send_text(room, TIP.format(5))
        ack = await li.wait_text(room, station.bot_id, "Logged as case", timeout=60)
        number = re.search(r"case (\S+)", ack)
        assert number, ack
        case = number[1].rstrip(" ·")

        # The officer on B works the case from their own server.
        wang_dm = await station.open_dm(wang)
        await station.command(f"!case ack {case}", "acknowledged", user=wang, room=wang_dm)
        shown = await station.command(f"!case {case}", case, user=wang, room=wang_dm)
        assert "acknowledged" in shown and li.user_id in shown
        assert station.bot.process.query(
            "SELECT actor FROM audit_log WHERE action = 'case.acknowledged' AND target = ?",
            (case,),
        ) == [(wang.user_id,)]


def _daily_sections(events: list[dict[str, Any]]) -> dict[str, str]:
    return {
        str(ev["sender"]): str(ev["content"].get("body", ""))
        for ev in events
        if str(ev.get("content", {}).get("org.neighborwatch", {}).get("kind", "")).startswith(
            "digest.daily"
        )
    }


async def test_two_bots_post_their_sections_into_the_district_room_on_its_server(
    federated: tuple[Homeserver, Homeserver],
    make_bot: Callable[..., BotUnderTest],
    tmp_path: Path,
) -> None:
    a, b = federated
    clock = tmp_path / "clock"
    clock.write_text("2026-12-01T07:59:00+08:00")
    district = f"d-{uuid.uuid4().hex[:6]}"
    async with register(b, "chief").client() as chief:
        # The district runs on server B; its supervisor keeps the district's digest room there.
        alias_local = f"{district}-digest"
        room = await chief.create_room(name="Changning District · digest")
        await chief.ok(
            "PUT",
            f"/_matrix/client/v3/directory/room/{quote(f'#{alias_local}:{b.server_name}')}",
            {"room_id": room},
        )
        districts = [
            {
                "id": district,
                "name": "Changning District",
                "supervisors": [chief.user_id],
                "room": f"#{alias_local}:{b.server_name}",
            }
        ]
        bots = [
            make_bot(
                hs,
                env={"NEIGHBORWATCH_CLOCK_FILE": str(clock)},
                station={"district": district, "name": name},
                districts=districts,
                timezone="Asia/Shanghai",
                timers={"tick_seconds": 0.5},
                start=False,
            )
            for hs, name in ((a, "Hongqiao Station"), (b, "Xianxia Station"))
        ]
        for bot in bots:
            status, body = await chief.invite(room, bot.user_id)
            assert status == 200, body
            bot.process.start()

        async def both_joined() -> bool:
            members = await chief.joined_members(room)
            return all(bot.user_id in members for bot in bots)

        await wait_until(both_joined, timeout=60, what="both stations' bots in the district room")
        clock.write_text("2026-12-01T08:00:05+08:00")

        async def both_sections() -> bool:
            return len(_daily_sections(await chief.messages(room))) == 2

        await wait_until(both_sections, timeout=60, what="a section from each station's bot")
        sections = _daily_sections(await chief.messages(room))
        assert "Changning District · Hongqiao Station" in sections[bots[0].user_id]
        assert "Changning District · Xianxia Station" in sections[bots[1].user_id]
        for bot in bots:
            assert bot.process.query("SELECT external FROM rooms WHERE room_id = ?", (room,)) == [
                (1,)
            ]
