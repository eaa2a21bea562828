"""Commands against a real Synapse: a verified resident's !ping and !help, refusals with an
audit row, unknown commands, markup escaped, chatter left alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from localhs import Homeserver

from tests.conftest import Account, BotUnderTest
from tests.support.matrix_client import reply_target, wait_until
from tests.support.world import open_station

pytestmark = pytest.mark.integration


async def test_a_resident_gets_ping_help_and_a_recorded_refusal(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    resident_acct = account("resident")
    async with station.officer, resident_acct.client() as res:
        room = await station.managed_room("cmd", "residents", name="Command Court")
        await station.enrol(res, "cmd/residents", room, "Li Ming")

        assert "pong" in await station.command("!ping", "pong", user=res, room=room)
        assert "pong" in await station.command("！PING", "pong", user=res, room=room)

        resident_help = await station.command("!help", "Commands you can use", user=res, room=room)
        assert "!ping" in resident_help and "!help" in resident_help
        assert "!status" not in resident_help and "!enrol" not in resident_help

        officer_help = await station.command("!help", "Commands you can use")
        assert "!status" in officer_help and "!enrol" in officer_help

        answer = await station.command("!status", "only for", user=res, room=room)
        assert "only for officers or supervisors" in answer
        rows = station.bot.process.query(
            "SELECT actor, action, target, room_id FROM audit_log WHERE action = 'command.refused'"
        )
        assert rows == [(res.user_id, "command.refused", "status", room)]

        status = await station.command("!status", "events handled")
        assert "outbox" in status

        typo = await station.command("!pnig", "Unknown command", user=res, room=room)
        assert "Unknown command !pnig" in typo and "Did you mean !ping?" in typo

        # Chatter gets no answer: the bot's next reply is to the command after it.
        chatter = await res.send_text(room, "good morning everyone")
        await station.command("!ping", "pong", user=res, room=room)
        targets = [reply_target(ev) for ev in await res.replies_from(room, station.bot_id)]
        assert chatter not in targets


async def test_markup_in_a_command_is_escaped_in_the_reply(
    homeserver: Homeserver,
    account: Callable[[str], Account],
    make_bot: Callable[..., BotUnderTest],
) -> None:
    station = await open_station(homeserver, make_bot, account)
    async with station.officer:
        sent = await station.officer.send_text(station.dm, "!help <b>x</b>")
        events: list[dict[str, Any]] = []

        async def answered() -> bool:
            events[:] = [
                ev
                for ev in await station.officer.replies_from(station.dm, station.bot_id)
                if reply_target(ev) == sent
            ]
            return bool(events)

        await wait_until(answered, timeout=30, what="the reply to !help <b>x</b>")
        html = str(events[0]["content"].get("formatted_body", ""))
        assert "<b>x</b>" not in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html
