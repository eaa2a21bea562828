"""A resident's client with end-to-end encryption that behaves like today's Element.

It cross-signs its own device, and — Element's "only send to cross-signed devices" mode —
shares room keys only with devices that their owners have cross-signed: before every
send it checks each member device's signature chain and blacklists the rest. Messages
it receives are decrypted by nio; the test reads them as plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomMessage,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)

from bot.domain.crosssigning import device_cross_signed
from bot.matrix.e2ee import CrossSigning, query_keys
from bot.matrix.http import RawApi, path


class E2eeResident:
    def __init__(self, homeserver: str, user_id: str, password: str, store: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.password = password
        self.client = AsyncClient(
            homeserver,
            user_id,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
        )
        self.raw = RawApi(homeserver, lambda: self.client.access_token)
        self.cross_signing = CrossSigning(self.raw, user_id, store / "cross-signing.json")
        self.received: list[tuple[str, dict[str, Any]]] = []  # (room, decrypted message)
        self.undecryptable: list[str] = []
        self._withheld: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        response = await self.client.login(self.password, device_name="e2ee-resident")
        assert getattr(response, "access_token", None), response
        await self.client.keys_upload()
        assert self.client.device_id is not None
        await self.cross_signing.bootstrap(self.client.device_id, self.password)
        self._task = asyncio.create_task(self._sync_forever())

    async def reset_identity(self) -> None:
        """What a person does when they "reset their digital identity" in Element."""
        assert self.client.device_id is not None
        self.cross_signing.keys_file.unlink(missing_ok=True)
        await self.cross_signing.bootstrap(self.client.device_id, self.password, reset=True)

    async def _sync_forever(self) -> None:
        while True:
            try:
                response = await self.client.sync(timeout=1000, full_state=False)
                if isinstance(response, SyncResponse):
                    for room_id, room in response.rooms.join.items():
                        for event in room.timeline.events:
                            if isinstance(event, MegolmEvent):
                                self.undecryptable.append(event.event_id)
                            elif isinstance(event, RoomMessage):
                                self.received.append((room_id, event.source))
                    for room_id in response.rooms.invite:
                        await self.client.join(room_id)
                await self.client.send_to_device_messages()
                if self.client.should_upload_keys:
                    await self.client.keys_upload()
                if self.client.should_query_keys:
                    await self.client.keys_query()
                if self.client.should_claim_keys:
                    await self.client.keys_claim(self.client.get_users_for_key_claiming())
            except asyncio.CancelledError:
                raise
            except Exception:  # a test helper: keep syncing through hiccups
                await asyncio.sleep(0.5)

    async def join(self, room_id: str) -> None:
        await self.client.join(room_id)
        for _ in range(100):
            if room_id in self.client.rooms:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{room_id} never appeared in sync")

    async def only_cross_signed(self, room_id: str) -> None:
        """Element's rule: room keys go only to devices cross-signed by their owner."""
        room = self.client.rooms[room_id]
        if not room.members_synced:
            await self.client.joined_members(room_id)
        await self.client.keys_query() if self.client.should_query_keys else None
        users = [u for u in room.users if u != self.user_id]
        keys = await query_keys(self.raw, users)
        for user in users:
            info = keys[user]
            for device in self.client.device_store.active_user_devices(user):
                ok = device_cross_signed(
                    user, info.master, info.self_signing, info.devices.get(device.id)
                )
                if ok:
                    if device.blacklisted:
                        self.client.unblacklist_device(device)
                    self.client.verify_device(device)
                elif not device.blacklisted:
                    self.client.unverify_device(device)
                    self.client.blacklist_device(device)

    async def send_text(self, room_id: str, body: str, **extra: Any) -> str:
        await self.only_cross_signed(room_id)
        self.client.invalidate_outbound_session(room_id)  # share with today's decision
        response = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body, **extra},
            ignore_unverified_devices=False,
        )
        assert isinstance(response, RoomSendResponse), response
        return response.event_id

    async def send_encrypted_image(self, room_id: str, data: bytes, name: str) -> str:
        """Upload ``data`` encrypted (as Element does in encrypted rooms) and send it."""
        upload, keys = await self.client.upload(
            lambda *_: io.BytesIO(data),
            content_type="application/octet-stream",
            filename=name,
            filesize=len(data),
            encrypt=True,
        )
        assert isinstance(upload, UploadResponse) and keys, upload
        file = {**keys, "url": upload.content_uri}
        return await self.send_text(
            room_id, name, msgtype="m.image", file=file, info={"mimetype": "image/jpeg"}
        )

    async def send_withholding_key(self, room_id: str, body: str) -> str:
        """An encrypted message whose room key is not sent (yet): nobody can read it."""
        olm = self.client.olm
        assert olm is not None
        self.client.invalidate_outbound_session(room_id)
        olm.create_outbound_group_session(room_id)
        session = olm.outbound_group_sessions[room_id]
        # Megolm: a key shared later only opens messages from its then-current index on, so
        # keep the key as it is now (index 0) to send it after the message.
        self._withheld[room_id] = _FrozenKey(session, session.session_key)
        session.shared = True  # pretend: the key is held back
        content = olm.group_encrypt(
            room_id, {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}
        )
        # Sent as it is (room_send would encrypt it a second time).
        reply = await self.raw.call(
            "PUT", path("rooms", room_id, "send", "m.room.encrypted", uuid.uuid4().hex), content
        )
        assert reply.ok, reply.describe()
        return str(reply.body["event_id"])

    async def share_withheld_key(self, room_id: str) -> None:
        """Send the withheld room key now (to cross-signed devices only)."""
        await self.only_cross_signed(room_id)
        assert self.client.olm is not None
        # nio replaces a session marked shared (or drops it on device changes); this one
        # never was shared: put it back and share it as it is.
        session = self._withheld.pop(room_id)
        session.shared = False
        self.client.olm.outbound_group_sessions[room_id] = session
        await self.client.share_group_session(room_id, ignore_unverified_devices=False)

    def texts_from(self, sender: str, room_id: str | None = None) -> list[str]:
        return [
            str(ev.get("content", {}).get("body", ""))
            for room, ev in self.received
            if ev.get("sender") == sender and room_id in (None, room)
        ]

    def events_from(self, sender: str, room_id: str) -> list[dict[str, Any]]:
        return [ev for room, ev in self.received if ev.get("sender") == sender and room == room_id]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.raw.close()
        await self.client.close()


class _FrozenKey:
    """An outbound session that shares the key it had when the message was encrypted."""

    def __init__(self, session: Any, key: str) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "session_key", key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._session, name, value)
