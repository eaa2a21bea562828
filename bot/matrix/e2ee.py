"""End-to-end encryption that works with today's Element.

* **A stable identity.** nio's crypto store lives in the data directory, keyed by the
  device id that is restored on every start. A saved session without its store, or a
  store whose keys are not the ones the server has for the device, is a hard error —
  never a silent new identity.
* **Cross-signing**, which nio lacks: the bot makes master / self-signing /
  user-signing keys once, keeps them in a 0600 file, uploads them (user-interactive
  auth with its password), and signs its own device with the self-signing key. Element
  only talks to devices cross-signed like this.
* **Who gets room keys.** Before a room key is shared, every member's devices are
  checked against the trust policy (a ``DeviceTrust`` port decides, with the pinned
  identities in the database): allowed devices are marked verified in nio's store, the
  others blacklisted, and nio is told never to share with a device that is neither.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nio import AsyncClient

from bot.domain.crosssigning import (
    CrossSigningKeys,
    DeviceTrust,
    UserKeys,
    device_cross_signed,
    device_signed_by,
    key_of,
    sign,
)
from bot.matrix.http import HttpReply, RawApi, path

log = logging.getLogger(__name__)


class CryptoStoreMissing(RuntimeError):
    """The bot has a device but not the keys that make it that device."""


class IdentityConflict(RuntimeError):
    """The server's cross-signing identity is not the one in the bot's key file."""


def store_file(store_path: Path, user_id: str, device_id: str) -> Path:
    """Where nio keeps the olm account and sessions of this device."""
    return store_path / f"{user_id}_{device_id}.db"


async def query_keys(raw: RawApi, users: list[str]) -> dict[str, UserKeys]:
    reply = await raw.call(
        "POST", path("keys", "query"), {"device_keys": {user: [] for user in users}}
    )
    if not reply.ok:
        raise OSError(f"/keys/query failed: {reply.describe()}")
    body = reply.body
    result = {}
    for user in users:
        devices = (body.get("device_keys") or {}).get(user) or {}
        result[user] = UserKeys(
            user_id=user,
            master=(body.get("master_keys") or {}).get(user),
            self_signing=(body.get("self_signing_keys") or {}).get(user),
            devices={d: k for d, k in devices.items() if isinstance(k, dict)},
        )
    return result


class CrossSigning:
    """The bot's own cross-signing identity: bootstrap, status, deliberate reset."""

    def __init__(self, raw: RawApi, user_id: str, keys_file: Path) -> None:
        self._raw = raw
        self.user_id = user_id
        self.keys_file = keys_file

    def load(self) -> CrossSigningKeys | None:
        if not self.keys_file.exists():
            return None
        return CrossSigningKeys.from_json(self.keys_file.read_text(encoding="utf-8"))

    def _save(self, keys: CrossSigningKeys) -> None:
        self.keys_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.keys_file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(keys.to_json())
        os.replace(temporary, self.keys_file)
        os.chmod(self.keys_file, 0o600)

    async def bootstrap(self, device_id: str, password: str, *, reset: bool = False) -> str:
        """Make sure the bot is cross-signed on the server; returns what was done."""
        own = (await query_keys(self._raw, [self.user_id]))[self.user_id]
        keys = None if reset else self.load()
        done = []
        if keys is None:
            if own.master is not None and not reset:
                raise IdentityConflict(
                    f"the homeserver already has cross-signing keys for {self.user_id} "
                    f"(master {own.master_key}) that {self.keys_file} does not hold. Restore "
                    "that file from a backup, or replace the identity deliberately with "
                    "`neighborwatch crypto reset`."
                )
            keys = CrossSigningKeys.generate()
            self._save(keys)  # before the upload: a crash between the two is recoverable
            done.append("created cross-signing keys")
        if own.master_key != keys.public("master"):
            if own.master is not None and not reset:
                raise IdentityConflict(
                    f"the homeserver's master key for {self.user_id} ({own.master_key}) is not "
                    f"the one in {self.keys_file} ({keys.public('master')}). Someone replaced "
                    "it; check, then run `neighborwatch crypto reset` to take it back."
                )
            await self._upload_keys(keys, password)
            done.append("uploaded them")
            own = (await query_keys(self._raw, [self.user_id]))[self.user_id]
        device = own.devices.get(device_id)
        if device is None:
            raise OSError(f"the homeserver does not list the bot's device {device_id} yet")
        if not device_signed_by(device, self.user_id, keys.public("self_signing")):
            await self._sign_device(keys, device)
            done.append(f"signed device {device_id}")
        return ", ".join(done) or "already cross-signed"

    async def _upload_keys(self, keys: CrossSigningKeys, password: str) -> None:
        public = keys.public_keys(self.user_id)
        body: dict[str, Any] = {
            "master_key": public["master"],
            "self_signing_key": public["self_signing"],
            "user_signing_key": public["user_signing"],
        }
        reply = await self._raw.call("POST", path("keys", "device_signing", "upload"), body)
        if reply.status == 401 and "session" in reply.body:
            if not password:
                raise IdentityConflict(
                    "uploading cross-signing keys needs the bot's password: set "
                    "NEIGHBORWATCH_BOT_PASSWORD (or bot.password)"
                )
            body["auth"] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "password": password,
                "session": reply.body["session"],
            }
            reply = await self._raw.call("POST", path("keys", "device_signing", "upload"), body)
        _check(reply, "uploading cross-signing keys")
        log.info(
            "uploaded cross-signing keys for %s (master %s)", self.user_id, keys.public("master")
        )

    async def _sign_device(self, keys: CrossSigningKeys, device: Mapping[str, Any]) -> None:
        signed = sign(device, self.user_id, keys.self_signing)
        reply = await self._raw.call(
            "POST",
            path("keys", "signatures", "upload"),
            {self.user_id: {str(device["device_id"]): signed}},
        )
        _check(reply, "uploading the device signature")
        failures = reply.body.get("failures") or {}
        if failures:
            raise OSError(f"the homeserver refused the device signature: {failures}")
        log.info("signed device %s with the self-signing key", device["device_id"])

    async def status(self, device_id: str) -> dict[str, Any]:
        own = (await query_keys(self._raw, [self.user_id]))[self.user_id]
        keys = self.load()
        device = own.devices.get(device_id)
        return {
            "user_id": self.user_id,
            "device_id": device_id,
            "device_ed25519": ((device or {}).get("keys") or {}).get(f"ed25519:{device_id}"),
            "server_master_key": own.master_key,
            "server_self_signing_key": key_of(own.self_signing),
            "local_master_key": keys.public("master") if keys else None,
            "keys_file": str(self.keys_file),
            "device_cross_signed": device_cross_signed(
                self.user_id, own.master, own.self_signing, device
            ),
        }


def _check(reply: HttpReply, what: str) -> None:
    if not reply.ok:
        raise OSError(f"{what} failed: {reply.describe()}")


async def apply_trust(client: AsyncClient, raw: RawApi, room_id: str, trust: DeviceTrust) -> bool:
    """Mark every member device verified (may get room keys) or blacklisted (may not).

    Returns True when a decision flipped (a device let back in, or shut out): the room's
    current key must then be replaced.
    """
    room = client.rooms.get(room_id)
    if room is None or client.olm is None:
        return False
    if not room.members_synced:
        await client.joined_members(room_id)
    if client.should_query_keys:
        await client.keys_query()
    users = [user for user in room.users if user != client.user_id]
    if not users:
        return False
    flipped = False
    for user, keys in (await query_keys(raw, users)).items():
        allowed = await trust.allowed_devices(keys)
        for device in client.device_store.active_user_devices(user):
            if device.id in allowed:
                if device.blacklisted:
                    client.unblacklist_device(device)
                    flipped = True
                if not device.verified:
                    client.verify_device(device)
            else:
                if device.verified:
                    client.unverify_device(device)
                    flipped = True
                if not device.blacklisted:
                    client.blacklist_device(device)
    return flipped
