"""Performing the outbox's actions against the homeserver (``Action`` → ``SendResult``).

Each kind is made safe to repeat: messages and redactions carry the outbox's
transaction id; state, invites, kicks and joins are idempotent, and the
"already there" answers count as success; ``create_room`` first looks up the
alias it is about to claim and adopts that room if a previous attempt (cut off
by a crash) already created it.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from nio import (
    AsyncClient,
    Event,
    LocalProtocolError,
    MatrixRoom,
    OlmUnverifiedDeviceError,
    RoomMemberEvent,
    RoomSendResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError

from bot.domain.crosssigning import DeviceTrust
from bot.domain.matrix_model import Action, SendResult
from bot.domain.media import NotAnImage, strip_metadata
from bot.matrix.e2ee import apply_trust
from bot.matrix.http import NETWORK_ERRORS, HttpReply, RawApi, path

log = logging.getLogger(__name__)

# Answers that mean "what you asked for is already the case".
_ALREADY = ("is already in the room", "already joined", "not in the room", "not in room")


class MatrixWriter:
    def __init__(self, client: AsyncClient, raw: RawApi, user_id: str) -> None:
        self._client = client
        self._raw = raw
        self.user_id = user_id
        self.server_name = user_id.split(":", 1)[1]
        self.trust: DeviceTrust | None = None  # None: share room keys with every device
        self.encrypt_new_dms = False
        self._trust_seen: dict[str, tuple[int, int]] = {}
        self._device_changes: dict[str, int] = {}  # user → when their devices last changed
        self._device_change_counter = 0

    def devices_changed(self, users: list[str]) -> None:
        """From /sync's ``device_lists.changed``: decide again before sharing with them."""
        for user in users:
            self._device_change_counter += 1
            self._device_changes[user] = self._device_change_counter

    def _only_invited(self, room_id: str) -> bool:
        """Nobody but the bot has joined (yet): whoever joins later could not read it."""
        room = self._client.rooms.get(room_id)
        if room is None:
            return False
        return not [u for u in room.users if u != self.user_id and u not in room.invited_users]

    async def _room_known(self, room_id: str) -> bool:
        """Make sure nio knows the room (encryption, members) before sending to it.

        nio keeps rooms in memory, filled by /sync. After a restart, a room that has been
        quiet since the saved sync token is not among them; nor is one created or joined a
        moment ago. Its current state is fetched once and applied with nio's own handlers.
        Without encryption there is nothing to know.
        """
        if self._client.olm is None or room_id in self._client.rooms:
            return True
        events = await self.room_state(room_id)
        if events is None:
            return False  # not joined yet, or the server is busy: the send waits
        room = MatrixRoom(room_id, self.user_id)
        for raw in events:
            event = Event.parse_event(raw)
            if isinstance(event, RoomMemberEvent):
                room.handle_membership(event)
            elif isinstance(event, Event):
                room.handle_event(event)
        room.members_synced = True
        room = self._client.rooms.setdefault(room_id, room)  # a sync may have won the race
        if room.encrypted:
            self._client.encrypted_rooms.add(room_id)
            self._client.olm.update_tracked_users(room)
        log.info("loaded the state of %s (%d members)", room_id, len(room.users))
        return True

    def _encrypted(self, room_id: str | None) -> bool:
        room = self._client.rooms.get(room_id or "")
        return bool(room is not None and room.encrypted)

    async def perform(self, action: Action, txn_id: str) -> SendResult:
        handler = getattr(self, f"_{action.kind}", None)
        if handler is None:
            return SendResult(error=f"unknown action {action.kind!r}", permanent=True)
        result: SendResult = await handler(action, txn_id)
        return result

    async def create_dm(self, user_id: str) -> SendResult:
        body: dict[str, Any] = {
            "preset": "trusted_private_chat",
            "is_direct": True,
            "invite": [user_id],
        }
        if self.encrypt_new_dms:
            body["initial_state"] = [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        reply = await self._raw.call("POST", path("createRoom"), body)
        return reply.as_result(str(reply.body.get("room_id")) if reply.ok else None)

    async def room_state(self, room_id: str) -> list[dict[str, Any]] | None:
        """The room's current state events, or None if it cannot be read now."""
        reply = await self._raw.call("GET", path("rooms", room_id, "state"))
        if not reply.ok:
            log.warning("reading the state of %s failed: %s", room_id, reply.describe())
            return None
        events = reply.body.get("chunk") if "chunk" in reply.body else None
        if events is None:
            return None
        return [ev for ev in events if isinstance(ev, dict)]

    async def resolve_alias(self, alias: str) -> str | None:
        reply = await self._raw.call("GET", path("directory", "room", alias))
        room_id = reply.body.get("room_id") if reply.ok else None
        return room_id if isinstance(room_id, str) else None

    # ------------------------------------------------------------- kinds

    async def _message(self, action: Action, txn_id: str) -> SendResult:
        assert action.room_id is not None
        room_id = action.room_id
        if not await self._room_known(room_id):
            return SendResult(error=f"{room_id} cannot be read yet", waiting=True)
        encrypted = self._encrypted(room_id)
        if encrypted and self._only_invited(room_id):
            # Room keys go to members; someone who joins later (a direct chat the bot just
            # opened, an officers' room) could never read it. Wait until someone has joined.
            return SendResult(error=f"waiting for someone to join {room_id}", waiting=True)
        content = media_for_room(dict(action.content), encrypted=encrypted)
        checked = self.trust is None or not encrypted
        if not checked and self.trust is not None:
            generation = await self.trust.generation()
            room = self._client.rooms.get(room_id)
            changed = (
                max((self._device_changes.get(u, 0) for u in room.users), default=0)
                if room is not None
                else 0
            )
            seen_generation, seen_change = self._trust_seen.get(room_id, (-1, -1))
            if seen_generation != generation or changed > seen_change:
                # Someone was (re)trusted, or a member's devices or identity changed, since
                # this room's key was shared: decide again, and start a new key if a
                # decision flipped (let back in, or shut out).
                if await self._apply_trust(room_id):
                    self._client.invalidate_outbound_session(room_id)
                self._trust_seen[room_id] = (generation, self._device_change_counter)
                checked = True
        for _attempt in range(2):
            try:
                if (
                    not checked
                    and self._client.olm is not None
                    and self._client.olm.should_share_group_session(room_id)
                ):
                    await self._apply_trust(room_id)
                    checked = True
                resp = await self._client.room_send(
                    room_id,
                    action.event_type or "m.room.message",
                    content,
                    tx_id=txn_id,
                    ignore_unverified_devices=self.trust is None,
                )
            except OlmUnverifiedDeviceError:
                # A device appeared since the last check: decide about it, then retry.
                await self._apply_trust(room_id)
                checked = True
                continue
            except LocalProtocolError as err:
                return SendResult(error=f"not ready to send to {room_id}: {err}")
            except NETWORK_ERRORS as err:
                return SendResult(error=f"network: {err or type(err).__name__}", unreachable=True)
            if isinstance(resp, RoomSendResponse):
                return SendResult(value=resp.event_id)
            return _nio_error(resp)
        return SendResult(error=f"devices in {room_id} keep changing; retrying")

    async def _apply_trust(self, room_id: str) -> bool:
        assert self.trust is not None
        return await apply_trust(self._client, self._raw, room_id, self.trust)

    async def _state(self, action: Action, txn_id: str) -> SendResult:
        assert action.room_id is not None and action.event_type is not None
        reply = await self._raw.call(
            "PUT",
            path("rooms", action.room_id, "state", action.event_type, action.state_key or ""),
            dict(action.content),
        )
        return reply.as_result(str(reply.body.get("event_id", "")) if reply.ok else None)

    async def _redact(self, action: Action, txn_id: str) -> SendResult:
        assert action.room_id is not None and action.target is not None
        body = {"reason": action.content["reason"]} if action.content.get("reason") else {}
        reply = await self._raw.call(
            "PUT", path("rooms", action.room_id, "redact", action.target, txn_id), body
        )
        return reply.as_result(str(reply.body.get("event_id", "")) if reply.ok else None)

    async def _membership(self, verb: str, action: Action) -> SendResult:
        assert action.room_id is not None and action.target is not None
        body: dict[str, Any] = {"user_id": action.target}
        if action.content.get("reason"):
            body["reason"] = action.content["reason"]
        reply = await self._raw.call("POST", path("rooms", action.room_id, verb), body)
        if not reply.ok and any(text in str(reply.body.get("error", "")) for text in _ALREADY):
            return SendResult(value=action.target)
        return reply.as_result(action.target)

    async def _invite(self, action: Action, txn_id: str) -> SendResult:
        return await self._membership("invite", action)

    async def _kick(self, action: Action, txn_id: str) -> SendResult:
        return await self._membership("kick", action)

    async def _join(self, action: Action, txn_id: str) -> SendResult:
        room = action.target or action.room_id
        assert room is not None
        via = [("server_name", str(server)) for server in action.content.get("via", [])]
        reply = await self._raw.call("POST", path("join", room, query=via), {})
        return reply.as_result(str(reply.body.get("room_id", room)) if reply.ok else None)

    async def _leave(self, action: Action, txn_id: str) -> SendResult:
        assert action.room_id is not None
        reply = await self._raw.call("POST", path("rooms", action.room_id, "leave"), {})
        return reply.as_result(action.room_id)

    async def _upload(self, action: Action, txn_id: str) -> SendResult:
        """Upload a file; encrypted (with its decryption info) when the room is encrypted.

        The result is JSON ``{"url": mxc or null, "file": encrypted-file object or null}``;
        the message that shows it refers to both, and ``media_for_room`` keeps the right one.
        """
        data = action.media or b""
        room_id = action.room_id
        if room_id is not None and not await self._room_known(room_id):
            return SendResult(error=f"{room_id} cannot be read yet", waiting=True)
        encrypt = bool(action.content.get("encrypt", self._encrypted(room_id)))
        mimetype = str(action.content.get("mimetype", "application/octet-stream"))
        uploaded = await self._upload_bytes(
            data, mimetype, str(action.content.get("filename", "file")), encrypt=encrypt
        )
        if isinstance(uploaded, SendResult):
            return uploaded
        return SendResult(value=json.dumps(uploaded))

    async def _upload_bytes(
        self, data: bytes, mimetype: str, filename: str, *, encrypt: bool
    ) -> dict[str, Any] | SendResult:
        try:
            resp, keys = await self._client.upload(
                lambda *_: io.BytesIO(data),
                content_type="application/octet-stream" if encrypt else mimetype,
                filename=filename,
                filesize=len(data),
                encrypt=encrypt,
            )
        except NETWORK_ERRORS as err:
            return SendResult(error=f"network: {err or type(err).__name__}", unreachable=True)
        if not isinstance(resp, UploadResponse):
            return _nio_error(resp)
        if encrypt and keys:
            return {"url": None, "file": {**keys, "url": resp.content_uri, "mimetype": mimetype}}
        return {"url": resp.content_uri, "file": None}

    async def _rehost(self, action: Action, txn_id: str) -> SendResult:
        """Download a photo, strip its metadata, upload the clean copy (see domain/media)."""
        source = str(action.content.get("source", ""))
        if not source.startswith("mxc://") or "/" not in source[6:]:
            return SendResult(error=f"not a media URI: {source[:80]}", permanent=True)
        server, media_id = source[6:].split("/", 1)
        max_bytes = int(action.content.get("max_bytes", 10_000_000))
        data, reply = await self._raw.get_bytes(
            path("media", "download", server, media_id).replace("/v3/", "/v1/", 1), max_bytes
        )
        if data is None:
            return reply.as_result()
        encrypted = action.content.get("file")
        if isinstance(encrypted, dict):
            try:
                data = decrypt_attachment(
                    data, encrypted["key"]["k"], encrypted["hashes"]["sha256"], encrypted["iv"]
                )
            except (KeyError, TypeError, EncryptionError) as err:
                return SendResult(error=f"cannot decrypt the photo: {err}", permanent=True)
        try:
            clean = strip_metadata(data)
        except NotAnImage as err:
            return SendResult(error=f"not an image: {err}", permanent=True)
        info: dict[str, Any] = {
            "url": None,
            "file": None,
            "mimetype": clean.mimetype,
            "w": clean.width,
            "h": clean.height,
            "size": len(clean.data),
        }
        filename = f"photo.{clean.extension}"
        if action.content.get("plain", True):
            plain = await self._upload_bytes(clean.data, clean.mimetype, filename, encrypt=False)
            if isinstance(plain, SendResult):
                return plain
            info["url"] = plain["url"]
        if action.content.get("encrypted", False):
            secret = await self._upload_bytes(clean.data, clean.mimetype, filename, encrypt=True)
            if isinstance(secret, SendResult):
                return secret
            info["file"] = secret["file"]
        return SendResult(value=json.dumps(info))

    async def _create_room(self, action: Action, txn_id: str) -> SendResult:
        body = dict(action.content)
        alias_name = body.get("room_alias_name")
        if isinstance(alias_name, str):
            existing = await self.resolve_alias(f"#{alias_name}:{self.server_name}")
            if existing is not None:
                log.info("room #%s exists already (%s): adopting it", alias_name, existing)
                joined = await self._raw.call("POST", path("join", existing), {})
                return joined.as_result(existing)
        reply = await self._raw.call("POST", path("createRoom"), body)
        return reply.as_result(str(reply.body.get("room_id")) if reply.ok else None)


def _nio_error(resp: Any) -> SendResult:
    """Classify a nio error response like any other HTTP answer."""
    status = resp.transport_response.status if resp.transport_response else 0
    body = {
        "errcode": resp.status_code or "",
        "error": resp.message,
        "retry_after_ms": resp.retry_after_ms,
    }
    return HttpReply(status, body).as_result()


def media_for_room(content: dict[str, Any], *, encrypted: bool) -> dict[str, Any]:
    """Keep ``file`` (encrypted media) in encrypted rooms and ``url`` elsewhere."""
    if "file" not in content and "url" not in content:
        return content
    result = dict(content)
    if encrypted and isinstance(result.get("file"), dict):
        result.pop("url", None)
    elif isinstance(result.get("url"), str) or not isinstance(result.get("file"), dict):
        result.pop("file", None)
    else:
        # Only an encrypted copy exists (an attachment received in an encrypted room):
        # keep it, so the receiver can still open it.
        result.pop("url", None)
    return result
