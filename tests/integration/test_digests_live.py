"""Digests on a real Synapse with an injected clock: the 08:00 digest reaches the station and
district rooms once (with its chart); a bot that was down over 08:00 sends it late, once; a
further restart sends nothing more."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from localhs import Homeserver
from PIL import Image

from tests.conftest import Account, BotUnderTest
from tests.support.matrix_client import TestUser, wait_until

pytestmark = pytest.mark.integration


async def digests_in(user: TestUser, room: str, bot: str) -> list[dict[str, Any]]:
    return [
        ev
        for ev in await user.messages(room)
        if ev.get("sender") == bot
        and str(ev.get("content", {}).get("org.neighborwatch", {}).get("kind", "")).startswith(
            "digest.daily"
        )
    ]


async def joined_room_named(user: TestUser, needle: str) -> str:
    found: list[str] = []

    async def invited() -> bool:
        for room in await user.invited_rooms():
            await user.join(room)
            name = await user.state_event(room, "m.room.name")
            if needle in name.get("name", ""):
                found.append(room)
        return bool(found)

    await wait_until(invited, timeout=60, what=f"an invitation to the {needle} room")
    return found[0]


async def test_the_daily_digest_arrives_once_on_time_and_once_late(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
    tmp_path: Path,
) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2026-12-01T07:59:00+08:00")  # a Tuesday: only the daily digest
    officer, supervisor, chief = account("officer"), account("supervisor"), account("chief")
    district = f"d-{uuid.uuid4().hex[:6]}"
    bot = make_bot(
        homeserver,
        officers=[officer.user_id],
        supervisors=[supervisor.user_id],
        env={"NEIGHBORWATCH_CLOCK_FILE": str(clock)},
        station={"district": district},
        districts=[{"id": district, "name": "Changning District", "supervisors": [chief.user_id]}],
        timezone="Asia/Shanghai",
        timers={"tick_seconds": 0.5},
    )
    async with supervisor.client() as sup, chief.client() as boss:
        station_room = await joined_room_named(sup, "Test Station · digest")
        district_room = await joined_room_named(boss, "Changning District · digest")
        await asyncio.sleep(2)
        assert await digests_in(sup, station_room, bot.user_id) == []

        clock.write_text("2026-12-01T08:00:05+08:00")

        async def both_arrived() -> bool:
            return bool(await digests_in(sup, station_room, bot.user_id)) and bool(
                await digests_in(boss, district_room, bot.user_id)
            )

        await wait_until(both_arrived, timeout=60, what="the 08:00 digests")
        await asyncio.sleep(3)  # several more ticks: nothing is sent twice
        [daily] = await digests_in(sup, station_room, bot.user_id)
        assert (
            "Daily digest" in daily["content"]["body"] and "2026-11-30" in daily["content"]["body"]
        )
        assert "late" not in daily["content"]["body"]
        assert len(await digests_in(boss, district_room, bot.user_id)) == 1

        charts = []

        async def chart_arrived() -> bool:
            charts[:] = [
                ev
                for ev in await sup.messages(station_room)
                if ev.get("sender") == bot.user_id and ev["content"].get("msgtype") == "m.image"
            ]
            return bool(charts)

        await wait_until(chart_arrived, timeout=30, what="the chart")
        png = await sup.download(charts[0]["content"]["url"])
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size[0] > 100

        # Down over 08:00 the next day: on restart the digest comes late, once.
        bot.process.stop()
        clock.write_text("2026-12-02T09:30:00+08:00")
        bot.process.start()

        async def late_arrived() -> bool:
            return (
                len(await digests_in(sup, station_room, bot.user_id)) == 2
                and len(await digests_in(boss, district_room, bot.user_id)) == 2
            )

        await wait_until(late_arrived, timeout=60, what="the late digests")
        latest = (await digests_in(sup, station_room, bot.user_id))[-1]
        assert "sent late" in latest["content"]["body"]
        assert "2026-12-01" in latest["content"]["body"]

        bot.process.stop()
        bot.process.start()
        await asyncio.sleep(4)
        assert len(await digests_in(sup, station_room, bot.user_id)) == 2
        assert len(await digests_in(boss, district_room, bot.user_id)) == 2
        assert bot.process.query(
            "SELECT COUNT(*), SUM(late) FROM digest_runs WHERE kind = 'daily'"
        ) == [(4, 2)]
