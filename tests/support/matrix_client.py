"""A deliberately small Matrix client for tests: raw client-server API over aiohttp.

Tests use it to act as residents and officers against the real homeserver, so
what they check is what a real client would see.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp

_txn = itertools.count()


class MatrixError(RuntimeError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


class TestUser:
    __test__ = False  # not a pytest test class

    def __init__(self, homeserver: str, user_id: str, access_token: str) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self._session: aiohttp.ClientSession | None = None
        self._since: str | None = None
        self._invites: set[str] = set()

    async def __aenter__(self) -> TestUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.access_token}"}
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        *,
        retry_429: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        url = self.homeserver + path
        while True:
            async with self._http().request(method, url, json=body, params=params) as resp:
                data = await resp.json(content_type=None) if resp.content_length != 0 else {}
                if isinstance(data, list):  # GET /rooms/{id}/state
                    data = {"chunk": data}
                if resp.status == 429 and retry_429:
                    await asyncio.sleep(data.get("retry_after_ms", 500) / 1000)
                    continue
                return resp.status, data or {}

    async def ok(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        status, data = await self.request(method, path, body, params)
        if status != 200:
            raise MatrixError(status, data)
        return data

    async def create_room(
        self,
        *,
        name: str | None = None,
        invite: list[str] | None = None,
        preset: str = "private_chat",
        is_direct: bool = False,
    ) -> str:
        body: dict[str, Any] = {"preset": preset, "invite": invite or [], "is_direct": is_direct}
        if name:
            body["name"] = name
        data = await self.ok("POST", "/_matrix/client/v3/createRoom", body)
        return str(data["room_id"])

    async def join(self, room_id: str) -> None:
        await self.ok("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {})

    async def invite(self, room_id: str, user_id: str) -> tuple[int, dict[str, Any]]:
        return await self.request(
            "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite", {"user_id": user_id}
        )

    async def send_text(
        self, room_id: str, body: str, *, txn: str | None = None, **extra: Any
    ) -> str:
        """Send ``body``; a caller retrying a send passes the same ``txn`` each time, so the
        homeserver posts the message once however often it is tried."""
        txn = txn or f"t{time.time_ns()}-{next(_txn)}-{uuid.uuid4().hex[:6]}"
        content = {"msgtype": "m.text", "body": body, **extra}
        data = await self.ok(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}",
            content,
        )
        return str(data["event_id"])

    async def create_dm(self, other: str) -> str:
        """A direct chat with ``other`` (``is_direct`` invite, as Element does)."""
        return await self.create_room(invite=[other], preset="trusted_private_chat", is_direct=True)

    async def knock(
        self, room: str, reason: str = "", via: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        params = {"via": via} if via else None
        return await self.request(
            "POST", f"/_matrix/client/v3/knock/{quote(room)}", {"reason": reason}, params
        )

    async def invited_rooms(self) -> list[str]:
        """Rooms this user is invited to now (incremental /sync: Synapse caches initial ones)."""
        params = {"timeout": "0"}
        if self._since:
            params["since"] = self._since
        data = await self.ok("GET", "/_matrix/client/v3/sync", params=params)
        self._since = str(data["next_batch"])
        rooms = data.get("rooms") or {}
        self._invites |= set(rooms.get("invite", {}))
        self._invites -= set(rooms.get("join", {})) | set(rooms.get("leave", {}))
        return sorted(self._invites)

    async def accept_invites(self) -> list[str]:
        rooms = await self.invited_rooms()
        for room in rooms:
            await self.join(room)
            self._invites.discard(room)
        return rooms

    async def try_join(self, room: str) -> bool:
        status, _ = await self.request("POST", f"/_matrix/client/v3/join/{quote(room)}", {})
        return status == 200

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        status, data = await self.request("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        if status != 200:
            raise MatrixError(status, data)
        return list(data.get("chunk", [])) if isinstance(data, dict) else []

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any]:
        return await self.ok(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}",
        )

    async def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> tuple[int, dict[str, Any]]:
        return await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}",
            content,
        )

    async def resolve_alias(self, alias: str) -> str:
        data = await self.ok("GET", f"/_matrix/client/v3/directory/room/{quote(alias)}")
        return str(data["room_id"])

    async def download(self, mxc: str) -> bytes:
        server, media_id = mxc.removeprefix("mxc://").split("/", 1)
        url = f"{self.homeserver}/_matrix/client/v1/media/download/{server}/{media_id}"
        async with self._http().get(url) as resp:
            if resp.status != 200:
                raise MatrixError(resp.status, {"error": await resp.text()})
            return await resp.read()

    async def joined_members(self, room_id: str) -> set[str]:
        data = await self.ok("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members")
        return set(data.get("joined", {}))

    async def messages(self, room_id: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """Every event in the room the user can see, oldest first."""
        events: list[dict[str, Any]] = []
        token: str | None = None
        while len(events) < limit:
            params = {"dir": "b", "limit": "500"}
            if token:
                params["from"] = token
            data = await self.ok(
                "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", params=params
            )
            chunk = data.get("chunk", [])
            events.extend(chunk)
            token = data.get("end")
            if not chunk or not token:
                break
        events.reverse()
        return events

    async def texts_from(self, room_id: str, sender: str) -> list[str]:
        """Bodies of the messages ``sender`` posted in the room, oldest first."""
        return [
            str((ev.get("content") or {}).get("body", ""))
            for ev in await self.messages(room_id)
            if ev.get("sender") == sender and ev.get("type") == "m.room.message"
        ]

    async def wait_text(self, room_id: str, sender: str, needle: str, timeout: float = 30) -> str:
        """Wait for a message from ``sender`` containing ``needle``; return its body."""
        found: list[str] = []

        async def arrived() -> bool:
            found[:] = [t for t in await self.texts_from(room_id, sender) if needle in t]
            return bool(found)

        await wait_until(arrived, timeout=timeout, what=f"“{needle}” from {sender}")
        return found[-1]

    async def replies_from(self, room_id: str, sender: str) -> list[dict[str, Any]]:
        """Messages ``sender`` posted in the room that reply to another event, oldest first."""
        return [
            ev
            for ev in await self.messages(room_id)
            if ev.get("sender") == sender
            and ev.get("type") == "m.room.message"
            and reply_target(ev) is not None
        ]


def reply_target(event: dict[str, Any]) -> str | None:
    relates = (event.get("content") or {}).get("m.relates_to") or {}
    target = (relates.get("m.in_reply_to") or {}).get("event_id")
    return target if isinstance(target, str) else None


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 30,
    interval: float = 0.2,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it is true; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def login(homeserver: str, user: str, password: str) -> TestUser:
    """Log in with a password (as Element would) and return a client for that session."""
    async with aiohttp.ClientSession() as http:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        async with http.post(f"{homeserver}/_matrix/client/v3/login", json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise MatrixError(resp.status, data)
    return TestUser(homeserver, str(data["user_id"]), str(data["access_token"]))
