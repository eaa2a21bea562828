"""A small police station on a real homeserver, for integration tests.

``open_station`` starts a bot whose config names one (or more) officers and a
supervisor, gives the first officer a direct chat with the bot, and offers
helpers for what officers do all day: run a command and read the answer,
create a neighbourhood room, enrol a resident.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from localhs import Homeserver

from tests.conftest import Account, BotUnderTest
from tests.support.matrix_client import TestUser, reply_target, wait_until


@dataclass
class Station:
    hs: Homeserver
    bot: BotUnderTest
    officer: TestUser
    officer_account: Account
    dm: str
    clients: list[TestUser] = field(default_factory=list)

    @property
    def bot_id(self) -> str:
        return self.bot.user_id

    async def command(
        self,
        text: str,
        needle: str = "",
        *,
        user: TestUser | None = None,
        room: str | None = None,
        timeout: float = 30,
    ) -> str:
        """Send ``text``; return the bot's reply to it (optionally waiting for ``needle``)."""
        who = user or self.officer
        where = room or self.dm
        sent = await who.send_text(where, text)
        found: list[str] = []

        async def answered() -> bool:
            found[:] = [
                str(ev["content"].get("body", ""))
                for ev in await who.messages(where)
                if ev.get("sender") == self.bot_id
                and reply_target(ev) == sent
                and needle in str(ev["content"].get("body", ""))
            ]
            return bool(found)

        await wait_until(answered, timeout=timeout, what=f"the bot's answer to {text!r}")
        return found[-1]

    async def managed_room(self, slug: str, audience: str, name: str = "Hongqiao Xincheng") -> str:
        """Create neighbourhood ``slug`` (if needed) and its ``audience`` room; join it."""
        await self.command(f'!neighbourhood add {slug} "{name}" lang=en')
        await self.command(f"!room create {slug} {audience}", "is ready", timeout=60)
        room_id = await self.officer.resolve_alias(f"#nw-{slug}-{audience}:{self.hs.server_name}")

        async def joined() -> bool:  # the invitation may land just after the "ready" reply
            return await self.officer.try_join(room_id)

        await wait_until(joined, timeout=30, what="the officer's invitation to the new room")
        return room_id

    async def many_rooms(
        self, neighbourhoods: int, audiences: Sequence[str], *, prefix: str = "estate"
    ) -> list[str]:
        """Create ``neighbourhoods`` × ``audiences`` managed rooms as an officer would, typing
        the commands one after another without waiting for each answer; return their ids."""
        slugs = [f"{prefix}{i}" for i in range(neighbourhoods)]
        for slug in slugs:
            await self.officer.send_text(self.dm, f'!neighbourhood add {slug} "{slug}" lang=en')
        for slug in slugs:
            for audience in audiences:
                await self.officer.send_text(self.dm, f"!room create {slug} {audience}")
        wanted = neighbourhoods * len(audiences)
        found: list[str] = []
        marks = ",".join("?" * len(slugs))

        async def created() -> bool:
            found[:] = [
                str(row[0])
                for row in self.bot.process.query(
                    "SELECT r.room_id FROM rooms r JOIN neighbourhoods n"
                    f" ON n.id = r.neighbourhood_id WHERE n.slug IN ({marks})",
                    tuple(slugs),
                )
            ]
            return len(found) >= wanted

        await wait_until(created, timeout=60 + wanted, interval=0.5, what=f"{wanted} rooms")
        return found

    async def enrol(
        self, resident: TestUser, ref: str, room_id: str, name: str, extra: str = ""
    ) -> None:
        """Enrol ``resident`` in person and have them accept the invitation."""
        await self.command(f'!enrol {resident.user_id} {ref} name="{name}" {extra}', "Enrolled")

        async def joined() -> bool:
            return await resident.try_join(room_id)

        await wait_until(joined, timeout=30, what=f"{resident.user_id} to be invited")

    async def open_dm(self, user: TestUser) -> str:
        room = await user.create_dm(self.bot_id)

        async def bot_joined() -> bool:
            return self.bot_id in await user.joined_members(room)

        await wait_until(bot_joined, timeout=30, what="the bot to join the direct chat")
        return room


async def open_station(
    hs: Homeserver,
    make_bot: Callable[..., BotUnderTest],
    account: Callable[[str], Account],
    *,
    extra_officers: list[Account] | None = None,
    **bot_extra: Any,
) -> Station:
    officer_account = account("officer")
    supervisor = account("supervisor")
    officers = [officer_account.user_id, *(a.user_id for a in extra_officers or [])]
    bot = make_bot(hs, officers=officers, supervisors=[supervisor.user_id], **bot_extra)
    officer = officer_account.client()
    station = Station(hs, bot, officer, officer_account, dm="", clients=[officer])
    station.dm = await station.open_dm(officer)
    return station
