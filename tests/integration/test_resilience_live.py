"""The homeserver goes away, or pushes back with 429: the bot waits politely and loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from localhs import Homeserver, free_port

from tests.conftest import BotUnderTest, register, room_with_bot
from tests.support.matrix_client import reply_target, wait_until
from tests.support.proxy import ThreadedProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def own_homeserver(tmp_path: Path, synapse_python: Path) -> Iterator[Callable[..., Homeserver]]:
    """A homeserver of the test's own (it will be stopped or throttled)."""
    servers: list[Homeserver] = []

    def make(**kwargs: object) -> Homeserver:
        hs = Homeserver(
            tmp_path / f"hs{len(servers)}",
            port=free_port(),
            synapse_python=synapse_python,
            **kwargs,
        )  # type: ignore[arg-type]
        servers.append(hs)
        hs.start()
        return hs

    yield make
    for hs in servers:
        hs.stop()


async def test_homeserver_outage_backs_off_and_recovers(
    own_homeserver: Callable[..., Homeserver], make_bot: Callable[..., BotUnderTest]
) -> None:
    hs = own_homeserver()
    proxy = ThreadedProxy(upstream_port=hs.port)
    proxy.start()
    try:
        officer = register(hs, "officer")
        bot = make_bot(hs, homeserver_url=proxy.url, officers=[officer.user_id])
        async with officer.client() as res:
            room = await room_with_bot(res, bot.user_id)

            hs.stop()
            outage_start = time.monotonic()
            proxy.reset()
            await asyncio.sleep(20)
            attempts = proxy.connections
            hs.start()
            outage = time.monotonic() - outage_start

            # Backoff 1, 2, 4, 8, 16 s: about five attempts fit in a 20 s outage.
            # Spinning would be hundreds.
            assert 2 <= attempts <= 7, f"{attempts} requests in a {outage:.0f} s outage"

            after = await res.send_text(room, "!ping after the outage")

            async def answered() -> bool:
                return any(
                    reply_target(ev) == after for ev in await res.replies_from(room, bot.user_id)
                )

            await wait_until(answered, timeout=60, what="a reply after recovery")
            assert bot.process.proc is not None and bot.process.proc.poll() is None
    finally:
        proxy.stop()


async def test_rate_limited_burst_of_replies_all_arrive_in_order(
    own_homeserver: Callable[..., Homeserver], make_bot: Callable[..., BotUnderTest]
) -> None:
    hs = own_homeserver(overrides={"rc_message": {"per_second": 2, "burst_count": 4}})
    admin = hs.register("admin", "admin-password", admin=True)
    officer = register(hs, "officer")
    hs.exempt_from_ratelimit(admin["access_token"], officer.user_id)
    bot = make_bot(hs, officers=[officer.user_id])
    async with officer.client() as res:
        room = await room_with_bot(res, bot.user_id)
        sent = [await res.send_text(room, f"!ping {i}") for i in range(30)]

        async def all_replied() -> bool:
            return len(await res.replies_from(room, bot.user_id)) >= 30

        await wait_until(all_replied, timeout=120, interval=0.5, what="30 replies")
        await asyncio.sleep(1)
        targets = [reply_target(ev) for ev in await res.replies_from(room, bot.user_id)]
        assert targets == sent
        assert "rate limited" in bot.process.log_tail(1000), "the homeserver never said 429"
