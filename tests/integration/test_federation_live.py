"""Two homeservers federating on loopback: residents, officers and bots on different servers."""

from __future__ import annotations

import asyncio
import re
import time
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


async def test_a_task_force_spans_servers_and_keeps_residents_out(
    federated: tuple[Homeserver, Homeserver],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    a, b = federated
    station = await open_station(a, make_bot, on(a))
    async with (
        station.officer,
        register(b, "chen").client() as chen,
        register(b, "resident").client() as resident,
    ):
        await station.command(f'!log call "{TIP.format(9)}" reporter="Zhang San"', "Logged")
        [(number,)] = station.bot.process.query("SELECT number FROM cases")
        reply = await station.command(
            f'!taskforce create "Firecracker ring" case={number} {chen.user_id}',
            "is ready",
            timeout=60,
        )
        assert "TF-" in reply
        [(room,)] = station.bot.process.query("SELECT room_id FROM taskforces")

        # The officer on server B is invited across servers and reads the case summary.
        async def chen_in() -> bool:
            return await chen.try_join(room)

        await wait_until(chen_in, timeout=60, what="the remote officer in the task force")
        summary = await chen.wait_text(room, station.bot_id, number)
        assert "fire hazard" in summary and "Zhang San" not in summary

        # A status change of the linked case reaches the room (and server B).
        await station.command(f"!case investigate {number}", "investigating")
        await chen.wait_text(room, station.bot_id, f"{number}: new → investigating", timeout=60)

        # Chen invites a resident from their own server: the bot withdraws it; a join fails.
        status, body = await chen.invite(room, resident.user_id)
        assert status == 200, body
        await chen.wait_text(room, station.bot_id, "not a member of this task force", timeout=60)

        async def kept_out() -> bool:
            return resident.user_id not in await chen.joined_members(room) and not (
                await resident.try_join(room)
            )

        await wait_until(kept_out, timeout=60, what="the resident to be kept out")
        assert station.bot.process.query(
            "SELECT target FROM audit_log WHERE action = 'taskforce.removed'"
        ) == [(resident.user_id,)]


async def test_a_peer_server_down_for_30_s_misses_nothing_and_gets_nothing_twice(
    federated: tuple[Homeserver, Homeserver],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    a, b = federated
    station = await open_station(a, make_bot, on(a))
    async with (
        station.officer,
        register(b, "far").client() as far,
        register(a, "near").client() as near,
    ):
        room = await station.managed_room("out", "residents", name="Outage Court")
        await station.enrol(far, "out/residents", room, "Far Resident")
        await station.enrol(near, "out/residents", room, "Near Resident")

        b.stop()
        try:
            started = time.monotonic()
            for n in range(3):
                await station.command(f'!alert out/residents "Outage notice {n}"', "A-")
                await near.send_text(room, TIP.format(100 + n))
                await near.wait_text(room, station.bot_id, f"building {100 + n}", timeout=30)
            await asyncio.sleep(max(0.0, 30 - (time.monotonic() - started)))
        finally:
            b.start()
        # Life goes on after B is back; B's resident gets everything, each once.
        await near.send_text(room, TIP.format(200))
        expected = [("ALERT", f"Outage notice {n}") for n in range(3)] + [
            ("Logged as case", f"building {n}") for n in (100, 101, 102, 200)
        ]

        def count(texts: list[str], kind: str, detail: str) -> int:
            return sum(kind in t and detail in t for t in texts)

        async def all_arrived() -> bool:
            texts = await far.texts_from(room, station.bot_id)
            return all(count(texts, *e) for e in expected)

        await wait_until(all_arrived, timeout=120, what="B's resident to catch up")
        events = [ev for ev in await far.messages(room) if ev.get("sender") == station.bot_id]
        ids = [ev["event_id"] for ev in events]
        assert len(ids) == len(set(ids))
        texts = [str(ev["content"].get("body", "")) for ev in events]
        for wanted in expected:
            assert count(texts, *wanted) == 1, (wanted, texts)
