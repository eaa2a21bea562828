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

from nio import AsyncClient, RoomSendResponse, UploadResponse
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError

from bot.domain.matrix_model import Action, SendResult
from bot.domain.media import NotAnImage, strip_metadata
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

    async def perform(self, action: Action, txn_id: str) -> SendResult:
        handler = getattr(self, f"_{action.kind}", None)
        if handler is None:
            return SendResult(error=f"unknown action {action.kind!r}", permanent=True)
        result: SendResult = await handler(action, txn_id)
        return result

    async def create_dm(self, user_id: str) -> SendResult:
        reply = await self._raw.call(
            "POST",
            path("createRoom"),
            {"preset": "trusted_private_chat", "is_direct": True, "invite": [user_id]},
        )
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
        try:
            resp = await self._client.room_send(
                action.room_id,
                action.event_type or "m.room.message",
                dict(action.content),
                tx_id=txn_id,
                ignore_unverified_devices=True,
            )
        except NETWORK_ERRORS as err:
            return SendResult(error=f"network: {err or type(err).__name__}", unreachable=True)
        if isinstance(resp, RoomSendResponse):
            return SendResult(value=resp.event_id)
        return _nio_error(resp)

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
        data = action.media or b""
        try:
            resp, _keys = await self._client.upload(
                lambda *_: io.BytesIO(data),
                content_type=str(action.content.get("mimetype", "application/octet-stream")),
                filename=str(action.content.get("filename", "file")),
                filesize=len(data),
            )
        except NETWORK_ERRORS as err:
            return SendResult(error=f"network: {err or type(err).__name__}", unreachable=True)
        if isinstance(resp, UploadResponse):
            return SendResult(value=resp.content_uri)
        return _nio_error(resp)

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
        uploaded = await self._upload(
            Action(
                "upload",
                action.room_id,
                content={"mimetype": clean.mimetype, "filename": f"photo.{clean.extension}"},
                media=clean.data,
            ),
            txn_id,
        )
        if not uploaded.ok:
            return uploaded
        info = {
            "url": uploaded.value,
            "mimetype": clean.mimetype,
            "w": clean.width,
            "h": clean.height,
            "size": len(clean.data),
        }
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
