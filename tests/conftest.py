"""Shared fixtures: a real Synapse for the session, accounts, and the bot as a subprocess."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from localhs import Homeserver, ensure_synapse, federation, free_port

from tests.support.bot_process import BotProcess, write_config
from tests.support.matrix_client import TestUser


@dataclass(frozen=True)
class Account:
    user_id: str
    password: str
    access_token: str
    homeserver: str

    def client(self) -> TestUser:
        return TestUser(self.homeserver, self.user_id, self.access_token)


def register(hs: Homeserver, prefix: str) -> Account:
    localpart = f"{prefix}-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    info = hs.register(localpart, password)
    return Account(info["user_id"], password, info["access_token"], hs.url)


@pytest.fixture(scope="session")
def synapse_python() -> Path:
    return ensure_synapse()


@pytest.fixture(scope="session")
def homeserver(
    tmp_path_factory: pytest.TempPathFactory, synapse_python: Path
) -> Iterator[Homeserver]:
    hs = Homeserver(
        tmp_path_factory.mktemp("homeserver"), port=free_port(), synapse_python=synapse_python
    )
    hs.start()
    yield hs
    hs.stop()


@pytest.fixture(scope="session")
def federated(
    tmp_path_factory: pytest.TempPathFactory, synapse_python: Path
) -> Iterator[tuple[Homeserver, Homeserver]]:
    """Two homeservers federating on loopback (TLS federation listeners, ``localhost:PORT``
    server names); started once for the session."""
    first, second = federation(
        tmp_path_factory.mktemp("federation"), 2, synapse_python=synapse_python
    )
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def account(homeserver: Homeserver) -> Callable[[str], Account]:
    return lambda prefix: register(homeserver, prefix)


@dataclass
class BotUnderTest:
    account: Account
    process: BotProcess

    @property
    def user_id(self) -> str:
        return self.account.user_id


@pytest.fixture
def make_bot(tmp_path: Path) -> Iterator[Callable[..., BotUnderTest]]:
    """Create a bot account on ``hs`` with its own data dir; stopped at teardown."""
    started: list[BotProcess] = []

    def make(
        hs: Homeserver,
        *,
        officers: list[str] | None = None,
        supervisors: list[str] | None = None,
        homeserver_url: str | None = None,
        start: bool = True,
        env: dict[str, str] | None = None,
        **extra: object,
    ) -> BotUnderTest:
        acct = register(hs, "bot")
        directory = tmp_path / acct.user_id.split(":")[0].lstrip("@")
        directory.mkdir()
        config = write_config(
            directory,
            homeserver=homeserver_url or hs.url,
            bot_user_id=acct.user_id,
            officers=officers,
            supervisors=supervisors,
            **extra,
        )
        process = BotProcess(config, acct.password, env)
        started.append(process)
        if start:
            process.start()
        return BotUnderTest(acct, process)

    yield make
    for process in started:
        process.stop()


async def room_with_bot(
    user: TestUser, bot_user_id: str, *, invite: list[str] | None = None
) -> str:
    """A room created by ``user`` with the bot invited; returns once the bot has joined."""
    from tests.support.matrix_client import wait_until

    room_id = await user.create_room(name="test room", invite=[bot_user_id, *(invite or [])])

    async def bot_joined() -> bool:
        return bot_user_id in await user.joined_members(room_id)

    await wait_until(bot_joined, timeout=30, what="the bot to join the room")
    return room_id


@pytest.fixture
async def resident_client(account: Callable[[str], Account]) -> AsyncIterator[TestUser]:
    async with account("resident").client() as client:
        yield client
