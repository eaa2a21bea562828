"""End-to-end encryption on a real Synapse, with a resident client that — like Element —
shares room keys only with devices their owners have cross-signed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from localhs import Homeserver
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from bot.domain.crosssigning import device_cross_signed
from bot.matrix.e2ee import query_keys
from bot.matrix.http import RawApi
from tests.conftest import Account, BotUnderTest
from tests.support.e2ee_client import E2eeResident
from tests.support.matrix_client import MatrixError, wait_until
from tests.support.world import Station, open_station

pytestmark = pytest.mark.integration
TIP = "16 firecrackers hidden in the electricity box on the 22nd floor of building {}"


async def resident_in_room(
    station: Station, account: Account, tmp: Path, slug: str, room: str, audience: str = "residents"
) -> E2eeResident:
    resident = E2eeResident(
        station.hs.url,
        account.user_id,
        account.password,
        tmp / account.user_id.split(":")[0].lstrip("@"),
    )
    await resident.start()
    await station.command(f'!enrol {account.user_id} {slug}/{audience} name="Li Ming"', "Enrolled")

    async def joined() -> bool:
        return room in resident.client.rooms

    await wait_until(joined, timeout=30, what="the encrypted room in the resident's sync")
    return resident


def cases_for(station: Station, needle: str) -> list[tuple[str, str]]:
    return station.bot.process.query(
        "SELECT number, category FROM cases WHERE text LIKE ?", (f"%{needle}%",)
    )


async def test_the_bot_is_cross_signed_and_talks_with_an_element_like_client(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
    tmp_path: Path,
) -> None:
    clock = tmp_path / "clock"
    clock.write_text(str(time.time()))
    station = await open_station(
        homeserver,
        make_bot,
        account,
        rooms={"encrypted": True},
        e2ee={"undecryptable_timeout": "10m"},
        env={"NEIGHBORWATCH_CLOCK_FILE": str(clock)},
        timers={"tick_seconds": 0.5},
    )
    bot = station.bot_id
    async with station.officer:
        # Anyone can check the bot the way a client does: master, self-signing, signed device.
        raw = RawApi(homeserver.url, lambda: station.officer.access_token)
        keys = (await query_keys(raw, [bot]))[bot]
        await raw.close()
        assert keys.master is not None and keys.self_signing is not None
        [device_id] = list(keys.devices)
        assert device_cross_signed(bot, keys.master, keys.self_signing, keys.devices[device_id])

        room = await station.managed_room("crypt", "residents", name="Cipher Court")
        state = await station.officer.state_event(room, "m.room.encryption")
        assert state["algorithm"] == "m.megolm.v1.aes-sha2"
        li = await resident_in_room(station, account("li"), tmp_path, "crypt", room)
        try:
            # A tip in the encrypted room: read, logged, and the answer readable by Li.
            await li.send_text(room, TIP.format(5))

            async def acknowledged() -> bool:
                return any("Logged as case" in t for t in li.texts_from(bot, room))

            await wait_until(acknowledged, timeout=60, what="Li reading the bot's answer")
            [(number, category)] = cases_for(station, "building 5")
            assert category == "fire_hazard"

            # A photo sent after the tip is kept with its keys; an officer can fetch it.
            photo = b"\xff\xd8 original evidence bytes, EXIF and all"
            await li.send_encrypted_image(room, photo, "box.jpg")

            async def attached() -> bool:
                return bool(
                    station.bot.process.query(
                        "SELECT 1 FROM case_attachments WHERE file IS NOT NULL"
                    )
                )

            await wait_until(attached, timeout=60, what="the encrypted photo on the case")
            await station.command(f"!case file {number} 1", "by direct message")

            async def forwarded() -> list[tuple[str]]:
                return station.bot.process.query(
                    "SELECT content FROM outbox WHERE status = 'sent'"
                    " AND json_extract(content, '$.msgtype') = 'm.image' AND content LIKE ?",
                    (f"%Attachment 1 of {number}%",),
                )

            await wait_until(forwarded, timeout=60, what="the photo in the officer's chat")
            [(content_json,)] = await forwarded()
            file = json.loads(content_json)["file"]
            data = await station.officer.download(file["url"])
            assert (
                decrypt_attachment(data, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
                == photo
            )

            # A key that arrives late: the message is kept, then handled exactly once.
            await li.send_withholding_key(room, TIP.format(6))
            await asyncio.sleep(3)
            assert cases_for(station, "building 6") == []
            assert station.bot.process.query("SELECT COUNT(*) FROM undecrypted") == [(1,)]
            await li.share_withheld_key(room)

            async def late_logged() -> bool:
                return len(cases_for(station, "building 6")) == 1

            await wait_until(late_logged, timeout=60, what="the late-keyed tip to be logged")
            await asyncio.sleep(2)
            assert len(cases_for(station, "building 6")) == 1

            # A message that never becomes readable: after the timeout, a private request.
            await li.send_withholding_key(room, TIP.format(7))
            await asyncio.sleep(3)
            clock.write_text(str(time.time() + 20 * 60))

            async def asked_to_resend() -> bool:
                return any("send it again" in t for t in li.texts_from(bot))

            await wait_until(asked_to_resend, timeout=60, what="the private resend request")
            assert cases_for(station, "building 7") == []
            clock.write_text(str(time.time()))

            # Restart: old sessions still decrypt, new messages too.
            station.bot.process.stop()
            await li.send_text(room, TIP.format(8))  # sent while the bot is down
            station.bot.process.start()
            await li.send_text(room, TIP.format(9))

            async def both_logged() -> bool:
                return bool(cases_for(station, "building 8")) and bool(
                    cases_for(station, "building 9")
                )

            await wait_until(both_logged, timeout=60, what="tips from before and after restart")

            # Li resets their identity: officers are told, keys are withheld until !trust.
            [officers_room] = await station.officer.invited_rooms()
            await station.officer.join(officers_room)
            await li.reset_identity()
            await asyncio.sleep(2)
            before = len(li.texts_from(bot, room))
            await li.send_text(room, TIP.format(10))
            # (The officers' room is encrypted and the officer's test client is plain HTTP:
            # what the bot told them is read from its outbox.)

            async def officers_told() -> bool:
                return bool(
                    station.bot.process.query(
                        "SELECT 1 FROM outbox WHERE room_id = ? AND content LIKE ?",
                        (officers_room, f"%identity of {li.user_id}%"),
                    )
                )

            await wait_until(officers_told, timeout=30, what="the officers to be told")
            await wait_until(
                lambda: _logged(station, "building 10"), timeout=60, what="the tip after the reset"
            )
            await asyncio.sleep(3)
            assert len(li.texts_from(bot, room)) == before, "no keys for the new identity"
            assert li.undecryptable, "the bot's answer reached Li's client unreadable"
            await station.command(f"!trust {li.user_id}", "Trusted")
            await li.send_text(room, TIP.format(11))

            async def readable_again() -> bool:
                return any(
                    "building 11" in t or "Logged as case" in t
                    for t in li.texts_from(bot, room)[before:]
                )

            await wait_until(readable_again, timeout=60, what="answers readable after !trust")
            actions = {r[0] for r in station.bot.process.query("SELECT action FROM audit_log")}
            assert {"identity.changed", "identity.trusted", "e2ee.unreadable"} <= actions
        finally:
            await li.close()

        # Without its crypto store the bot refuses to start rather than become someone else.
        station.bot.process.stop()
        store = station.bot.process.config_path.parent / "data" / "nio"
        for path in store.glob("*.db"):
            path.unlink()
        with pytest.raises(AssertionError, match="exited with 5"):
            station.bot.process.start(timeout=30)
        assert "crypto store" in station.bot.process.log_tail()


async def _logged(station: Station, needle: str) -> bool:
    return bool(cases_for(station, needle))


async def test_without_cross_signing_an_element_like_client_does_not_talk_to_the_bot(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
    tmp_path: Path,
) -> None:
    """The control experiment: the same tip, the bot not cross-signed — it cannot read it."""
    station = await open_station(
        homeserver, make_bot, account, rooms={"encrypted": True}, e2ee={"cross_sign": False}
    )
    async with station.officer:
        room = await station.managed_room("plain", "residents", name="Unsigned Court")
        li = await resident_in_room(station, account("li"), tmp_path, "plain", room)
        try:
            await li.send_text(room, TIP.format(12))
            await asyncio.sleep(8)
            assert cases_for(station, "building 12") == []
            assert station.bot.process.query("SELECT COUNT(*) FROM undecrypted") == [(1,)]
        finally:
            await li.close()


async def test_wanted_photos_decrypt_on_the_receiving_client(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
    tmp_path: Path,
) -> None:
    station = await open_station(homeserver, make_bot, account, rooms={"encrypted": True})
    bot = station.bot_id
    async with station.officer:
        room = await station.managed_room("photo", "guards", name="Photo Court")
        guard = await resident_in_room(station, account("guard"), tmp_path, "photo", room, "guards")
        try:
            buffer = io.BytesIO()
            Image.new("RGB", (30, 40), (10, 200, 10)).save(buffer, format="JPEG")
            session = station.officer._http()
            async with session.post(
                f"{homeserver.url}/_matrix/media/v3/upload?filename=p.jpg",
                data=buffer.getvalue(),
                headers={"Content-Type": "image/jpeg"},
            ) as resp:
                mxc = (await resp.json())["content_uri"]
            photo = await station.officer.send_text(
                station.dm,
                "p.jpg",
                msgtype="m.image",
                url=mxc,
                info={"mimetype": "image/jpeg", "size": len(buffer.getvalue())},
            )
            await station.officer.send_text(
                station.dm,
                '!wanted "Suspect" "Grey jacket" to=photo/guards',
                **{"m.relates_to": {"m.in_reply_to": {"event_id": photo}}},
            )
            images: list[dict[str, object]] = []

            async def image_arrived() -> bool:
                images[:] = [
                    ev
                    for ev in guard.events_from(bot, room)
                    if ev.get("content", {}).get("msgtype") == "m.image"
                ]
                return bool(images)

            await wait_until(image_arrived, timeout=60, what="the encrypted wanted photo")
            content = images[0]["content"]
            assert isinstance(content, dict) and "file" in content and "url" not in content
            file = content["file"]
            data = await station.officer.download(file["url"])
            plain = decrypt_attachment(data, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
            with Image.open(io.BytesIO(plain)) as image:
                assert image.size == (30, 40)
        finally:
            await guard.close()


async def test_rooms_made_before_encryption_was_switched_on_get_it_on_restart(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account, rooms={"encrypted": False})
    async with station.officer:
        room = await station.managed_room("late", "residents", name="Late Lane")
        with pytest.raises(MatrixError, match="404"):
            await station.officer.state_event(room, "m.room.encryption")
        station.bot.process.stop()
        config_path = station.bot.process.config_path
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        config["rooms"]["encrypted"] = True
        config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        station.bot.process.start()

        async def encrypted() -> bool:
            try:
                state = await station.officer.state_event(room, "m.room.encryption")
            except MatrixError:
                return False
            return state.get("algorithm") == "m.megolm.v1.aes-sha2"

        await wait_until(encrypted, timeout=60, what="encryption switched on by reconciliation")
        assert station.bot.process.query(
            "SELECT 1 FROM audit_log WHERE action = 'room.reconciled' AND room_id = ?"
            " AND detail LIKE '%encryption enabled%'",
            (room,),
        )


def _crypto_cli(station: Station, action: str) -> subprocess.CompletedProcess[str]:
    process = station.bot.process
    return subprocess.run(
        [sys.executable, "-m", "bot", "crypto", action, "-c", str(process.config_path)],
        env={**os.environ, "NEIGHBORWATCH_BOT_PASSWORD": process.password},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_crypto_status_shows_the_identity_and_reset_rotates_it(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account, rooms={"encrypted": True})
    bot = station.bot_id
    async with station.officer:
        station.bot.process.stop()
        shown = _crypto_cli(station, "status")
        assert shown.returncode == 0, shown.stderr
        before = json.loads(shown.stdout)
        assert before["device_cross_signed"] is True
        assert before["server_master_key"] == before["local_master_key"]

        rotated = _crypto_cli(station, "reset")
        assert rotated.returncode == 0, rotated.stderr
        assert "new cross-signing identity" in rotated.stdout
        after = json.loads(_crypto_cli(station, "status").stdout)
        assert after["server_master_key"] != before["server_master_key"]
        assert after["server_master_key"] == after["local_master_key"]
        assert after["device_id"] == before["device_id"] and after["device_cross_signed"] is True

        # Others see the new identity, and the bot starts with it (same device).
        raw = RawApi(homeserver.url, lambda: station.officer.access_token)
        keys = (await query_keys(raw, [bot]))[bot]
        await raw.close()
        assert keys.master_key == after["server_master_key"]
        station.bot.process.start()
        await station.command("!ping", "pong")
        assert station.bot.process.query("SELECT 1 FROM audit_log WHERE action = 'crypto.reset'"), (
            "the rotation is in the audit trail"
        )
