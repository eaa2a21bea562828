"""Wanted-person notices on a real Synapse: a photo with GPS data goes out clean to exactly the
target rooms, sightings reach only the officer, "found" and expiry clean up after themselves."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import pytest
from localhs import Homeserver
from PIL import Image

from bot.config import load_config
from bot.domain.media import has_metadata
from bot.features import notices as notices_feature
from bot.pipeline import make_deps
from bot.store.db import Database
from tests.conftest import Account, BotUnderTest
from tests.support.matrix_client import TestUser, wait_until
from tests.support.world import Station, open_station

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (64, 96), (90, 90, 160))
    exif = Image.Exif()
    exif[0x010F] = "SuspectPhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (31.0, 12.0, 1.0), "E", (121.0, 26.0, 2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


async def upload(user: TestUser, data: bytes) -> str:
    session = user._http()
    async with session.post(
        f"{user.homeserver}/_matrix/media/v3/upload?filename=s.jpg",
        data=data,
        headers={"Content-Type": "image/jpeg"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["content_uri"])


async def bot_events(user: TestUser, room: str, bot: str) -> list[dict[str, Any]]:
    return [ev for ev in await user.messages(room) if ev.get("sender") == bot]


async def tick_at(station: Station, now_ms: int) -> None:
    """The bot's timer work, run with an injected clock against its own database."""
    config = load_config(station.bot.process.config_path)
    db = await Database.open(station.bot.process.db_path)
    try:
        async with db.transaction() as conn:
            await notices_feature.tick(make_deps(conn, config, now_ms))
    finally:
        await db.close()


async def test_wanted_notice_photo_sightings_found_and_expiry(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    guard_acct, resident_acct = account("guard"), account("resident")
    async with station.officer, guard_acct.client() as guard, resident_acct.client() as res:
        bot = station.bot_id
        alpha_guards = await station.managed_room("alpha", "guards", name="Alpha Court")
        alpha_shops = await station.managed_room("alpha", "shops", name="Alpha Court")
        beta_guards = await station.managed_room("beta", "guards", name="Beta Garden")
        beta_residents = await station.managed_room("beta", "residents", name="Beta Garden")
        targets = [alpha_guards, alpha_shops, beta_guards]
        [officers_room] = [r for r in await station.officer.invited_rooms()]
        await station.officer.join(officers_room)
        await station.enrol(guard, "alpha/guards", alpha_guards, "Guard Wu")
        await station.enrol(res, "beta/residents", beta_residents, "Resident Qian")

        # The officer sends the photo (with GPS in its EXIF) and replies to it with !wanted.
        original = jpeg_with_gps()
        assert has_metadata(original)
        mxc = await upload(station.officer, original)
        photo_event = await station.officer.send_text(
            station.dm,
            "suspect.jpg",
            msgtype="m.image",
            url=mxc,
            info={"mimetype": "image/jpeg", "size": len(original), "w": 64, "h": 96},
        )
        await station.officer.send_text(
            station.dm,
            '!wanted "Zhang San, about 40" "Telecom fraud; grey jacket; do not '
            'approach" to=alpha,beta/guards',
            **{"m.relates_to": {"m.in_reply_to": {"event_id": photo_event}}},
        )
        await station.officer.wait_text(station.dm, bot, "W-1 is posted to 3 room(s)")

        photos: dict[str, dict[str, Any]] = {}

        async def posted_everywhere() -> bool:
            for room in targets:
                events = await bot_events(station.officer, room, bot)
                images = [ev for ev in events if ev["content"].get("msgtype") == "m.image"]
                cards = [ev for ev in events if "WANTED W-1" in ev["content"].get("body", "")]
                if images and cards:
                    photos[room] = images[0]
            return len(photos) == 3

        await wait_until(posted_everywhere, timeout=60, what="photo and card in 3 rooms")
        for room, image in photos.items():
            data = await station.officer.download(image["content"]["url"])
            assert not has_metadata(data), f"EXIF left in the photo posted to {room}"
            assert b"SuspectPhoneMaker" not in data
            assert image["content"]["url"] != mxc
        assert not [
            ev for ev in await bot_events(res, beta_residents, bot) if "W-1" in str(ev["content"])
        ]

        # Sightings: a reply in the guards' room and a DM; only the officer hears of them.
        card = next(
            ev
            for ev in await bot_events(guard, alpha_guards, bot)
            if "WANTED W-1" in ev["content"].get("body", "")
        )
        await guard.send_text(
            alpha_guards,
            "Saw him at the north gate five minutes ago",
            **{"m.relates_to": {"m.in_reply_to": {"event_id": card["event_id"]}}},
        )
        guard_dm = await station.open_dm(guard)
        await guard.send_text(guard_dm, "saw W-1 again near the bike shed")
        await station.officer.wait_text(officers_room, bot, "north gate")
        await station.officer.wait_text(officers_room, bot, "bike shed")
        await guard.wait_text(guard_dm, bot, "Thank you")
        for room in [*targets, beta_residents]:
            texts = " ".join(await station.officer.texts_from(room, bot))
            assert "north gate" not in texts and "bike shed" not in texts
            assert "Thank you" not in texts

        # Found: every room is told, and the photos are redacted.
        await station.command('!wanted found W-1 "arrested"', "found")

        async def cleaned_up() -> bool:
            for room in targets:
                events = await station.officer.messages(room)
                redacted = [
                    ev
                    for ev in events
                    if ev["event_id"] == photos[room]["event_id"] and not ev.get("content")
                ]
                told = [
                    ev
                    for ev in events
                    if ev.get("sender") == bot
                    and "no longer sought" in ev.get("content", {}).get("body", "")
                ]
                if not (redacted and told):
                    return False
            return True

        await wait_until(cleaned_up, timeout=60, what="update + redaction in every room")

        # A second notice expires by the clock: reminded once, then cleaned up.
        await station.officer.send_text(
            station.dm,
            '!wanted "Li Si" "Burglary suspect" to=alpha/guards expires=10d',
            **{"m.relates_to": {"m.in_reply_to": {"event_id": photo_event}}},
        )
        await station.officer.wait_text(station.dm, bot, "W-2 is posted to 1 room(s)")
        created = station.bot.process.query("SELECT created_at FROM notices WHERE number='W-2'")
        start = int(created[0][0])
        await tick_at(station, start + 6 * DAY_MS)
        await tick_at(station, start + 7 * DAY_MS)
        await tick_at(station, start + 11 * DAY_MS)

        async def expired() -> bool:
            texts = await station.officer.texts_from(alpha_guards, bot)
            return any("W-2" in t and "no longer sought" in t for t in texts)

        await wait_until(expired, timeout=60, what="the expiry notice")
        reminders = [
            t
            for t in await station.officer.texts_from(station.dm, bot)
            if "W-2" in t and "expires in" in t
        ]
        assert len(reminders) == 1, reminders
        assert station.bot.process.query("SELECT status FROM notices WHERE number = 'W-2'") == [
            ("expired",)
        ]


async def test_bot_killed_mid_fanout_posts_every_room_exactly_once(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    # One write at a time, so that a kill lands with some rooms done and others not.
    station = await open_station(homeserver, make_bot, account, outbox={"concurrency": 1})
    async with station.officer:
        bot = station.bot_id
        process = station.bot.process
        rooms = await station.many_rooms(
            10, ["residents", "guards", "committee", "shops", "property"]
        )
        assert len(rooms) == 50

        sent_sql = (
            "SELECT COUNT(*) FROM notice_posts p JOIN outbox o ON o.id = p.card_row"
            " JOIN notices n ON n.id = p.notice_id WHERE n.number = 'A-1' AND o.status = 'sent'"
        )

        def cards_sent() -> int:
            return int(process.query(sent_sql)[0][0])

        await station.officer.send_text(station.dm, '!alert station "Water off in all estates"')

        async def some_sent() -> bool:
            return cards_sent() >= 5

        await wait_until(some_sent, timeout=60, interval=0.01, what="the first cards")
        process.kill()
        at_kill = cards_sent()
        assert at_kill < 50, "the kill must land in the middle of the fan-out"

        process.start()

        async def all_sent() -> bool:
            return cards_sent() == 50

        await wait_until(all_sent, timeout=120, what="the rest of the fan-out")
        await asyncio.sleep(2)  # a duplicate would have a chance to show up

        login = homeserver.login(bot.split(":")[0][1:], station.bot.account.password)
        async with TestUser(homeserver.url, bot, login["access_token"]) as reader:
            for room in rooms:
                cards = [
                    ev
                    for ev in await reader.messages(room)
                    if ev.get("sender") == bot and "Water off" in ev["content"].get("body", "")
                ]
                assert len(cards) == 1, f"{len(cards)} copies of the alert in {room}"
        assert process.query("SELECT COUNT(*) FROM notice_posts") == [(50,)]
