"""Nothing lost, nothing doubled: a real SIGKILL mid-stream, and a gap while the bot is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.conftest import Account, BotUnderTest, room_with_bot
from tests.support.matrix_client import TestUser, reply_target, wait_until

pytestmark = pytest.mark.integration


async def wait_for_replies(
    user: TestUser, room: str, bot_id: str, expected: int, timeout: float = 120
) -> list[str | None]:
    targets: list[str | None] = []

    async def enough() -> bool:
        targets[:] = [reply_target(ev) for ev in await user.replies_from(room, bot_id)]
        return len(targets) >= expected

    await wait_until(enough, timeout=timeout, interval=0.5, what=f"{expected} replies")
    return targets


async def test_sigkill_mid_stream_handles_every_message_exactly_once(
    homeserver: object, account: Callable[[str], Account], make_bot: Callable[..., BotUnderTest]
) -> None:
    officer = account("officer")  # !ping needs a verified member or staff
    bot = make_bot(homeserver, officers=[officer.user_id])
    async with officer.client() as res:
        room = await room_with_bot(res, bot.user_id)
        sent: list[str] = []

        async def send_all() -> None:
            for i in range(200):
                sent.append(await res.send_text(room, f"!ping {i}"))

        sender = asyncio.create_task(send_all())

        def handled() -> int:
            try:
                return int(bot.process.query("SELECT COUNT(*) FROM processed_events")[0][0])
            except Exception:  # the database may not exist for the first few ms
                return 0

        async def some_handled() -> bool:
            return handled() >= 30

        await wait_until(some_handled, timeout=60, interval=0.02, what="30 handled events")
        bot.process.kill()
        handled_at_kill = handled()
        assert handled_at_kill < 200, "the kill must land in the middle of the stream"
        await sender

        bot.process.start()
        targets = await wait_for_replies(res, room, bot.user_id, 200)
        await asyncio.sleep(3)  # give any duplicate a chance to show up
        targets = [reply_target(ev) for ev in await res.replies_from(room, bot.user_id)]

        assert len(targets) == 200, f"{len(targets)} replies for 200 messages"
        assert sorted(t for t in targets if t) == sorted(sent)
        rows = bot.process.query(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM processed_events"
            " WHERE outcome = 'command:ping'"
        )
        assert rows == [(200, 200)]
        assert bot.process.query(
            "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND kind = 'message'"
            " AND room_id = ?",
            (room,),
        ) == [(200,)]


async def test_messages_sent_while_the_bot_was_down_are_all_handled(
    homeserver: object, account: Callable[[str], Account], make_bot: Callable[..., BotUnderTest]
) -> None:
    officer = account("officer")  # !ping needs a verified member or staff
    bot = make_bot(homeserver, officers=[officer.user_id])
    async with officer.client() as res:
        room = await room_with_bot(res, bot.user_id)
        first = await res.send_text(room, "!ping before")
        await wait_for_replies(res, room, bot.user_id, 1)
        assert bot.process.stop() == 0

        sent = [await res.send_text(room, f"!ping {i}") for i in range(120)]
        bot.process.start()
        await wait_for_replies(res, room, bot.user_id, 121)
        await asyncio.sleep(2)
        targets = [reply_target(ev) for ev in await res.replies_from(room, bot.user_id)]
        assert targets == [first, *sent], "every message answered once, in order"
        assert "filled a gap" in bot.process.log_tail(400)
