"""Commands against a real Synapse: !ping, !help by role, refusals with an audit row."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Account, BotUnderTest, room_with_bot
from tests.support.matrix_client import TestUser, reply_target, wait_until

pytestmark = pytest.mark.integration


async def reply_to(user: TestUser, room_id: str, bot_id: str, event_id: str) -> dict[str, object]:
    """Wait for the bot's reply to ``event_id`` and return it."""
    found: list[dict[str, object]] = []

    async def arrived() -> bool:
        found[:] = [
            ev for ev in await user.replies_from(room_id, bot_id) if reply_target(ev) == event_id
        ]
        return bool(found)

    await wait_until(arrived, timeout=30, what=f"the bot's reply to {event_id}")
    assert len(found) == 1, f"expected one reply, got {len(found)}"
    return found[0]


def body_of(event: dict[str, object]) -> str:
    content = event["content"]
    assert isinstance(content, dict)
    return str(content["body"])


async def test_resident_gets_ping_help_and_a_recorded_refusal(
    homeserver: object, account: Callable[[str], Account], make_bot: Callable[..., BotUnderTest]
) -> None:
    officer = account("officer")
    resident = account("resident")
    bot = make_bot(homeserver, officers=[officer.user_id])
    async with resident.client() as res, officer.client() as off:
        room = await room_with_bot(res, bot.user_id, invite=[officer.user_id])
        await off.join(room)

        ping = await res.send_text(room, "!ping")
        assert "pong" in body_of(await reply_to(res, room, bot.user_id, ping))

        fullwidth = await res.send_text(room, "！PING")
        assert "pong" in body_of(await reply_to(res, room, bot.user_id, fullwidth))

        resident_help = body_of(
            await reply_to(res, room, bot.user_id, await res.send_text(room, "!help"))
        )
        assert "!ping" in resident_help and "!help" in resident_help
        assert "!status" not in resident_help

        officer_help = body_of(
            await reply_to(off, room, bot.user_id, await off.send_text(room, "!help"))
        )
        assert "!status" in officer_help

        refused = await res.send_text(room, "!status")
        answer = body_of(await reply_to(res, room, bot.user_id, refused))
        assert "only for officers" in answer
        rows = bot.process.query(
            "SELECT actor, action, target, room_id FROM audit_log WHERE action = 'command.refused'"
        )
        assert rows == [(resident.user_id, "command.refused", "status", room)]

        status = body_of(
            await reply_to(off, room, bot.user_id, await off.send_text(room, "!status"))
        )
        assert "events handled" in status

        typo = body_of(await reply_to(res, room, bot.user_id, await res.send_text(room, "!pnig")))
        assert "Unknown command !pnig" in typo and "Did you mean !ping?" in typo

        # Chatter gets no answer: the bot's next reply is to the command after it.
        chatter = await res.send_text(room, "good morning everyone")
        last = await res.send_text(room, "!ping")
        await reply_to(res, room, bot.user_id, last)
        targets = [reply_target(ev) for ev in await res.replies_from(room, bot.user_id)]
        assert chatter not in targets


async def test_markup_in_a_command_is_escaped_in_the_reply(
    homeserver: object, account: Callable[[str], Account], make_bot: Callable[..., BotUnderTest]
) -> None:
    resident = account("resident")
    bot = make_bot(homeserver)
    async with resident.client() as res:
        room = await room_with_bot(res, bot.user_id)
        sent = await res.send_text(room, "!help <b>x</b>")
        reply = await reply_to(res, room, bot.user_id, sent)
        content = reply["content"]
        assert isinstance(content, dict)
        html = str(content.get("formatted_body", ""))
        assert "<b>x</b>" not in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html
