"""Cross-signing, the rules (pure): the bot's own keys, and whose devices may get room keys.

A user's *master* key signs their *self-signing* key, which signs each of their
devices. A device is "cross-signed by its owner" when that chain checks out —
which is what Element demands of every device it talks to, and what the bot
demands before it shares room keys (policy ``cross-signed``). Signatures are
ed25519 over canonical JSON (``signedjson``); a cross-signing key's id is its
own unpadded-base64 public key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from nacl.signing import SigningKey
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from unpaddedbase64 import decode_base64, encode_base64

TrustPolicy = Literal["cross-signed", "tofu", "all"]


@dataclass(frozen=True)
class UserKeys:
    """What ``/keys/query`` says of one user."""

    user_id: str
    master: Mapping[str, Any] | None
    self_signing: Mapping[str, Any] | None
    devices: Mapping[str, Mapping[str, Any]]

    @property
    def master_key(self) -> str | None:
        return key_of(self.master)


class DeviceTrust(Protocol):
    """Decides whose devices get room keys (implemented with the pinned identities)."""

    async def allowed_devices(self, keys: UserKeys) -> set[str]:
        """Which of the user's devices may receive room keys."""

    async def generation(self) -> int:
        """Changes whenever a decision may have changed (an officer trusted someone)."""


USAGES = ("master", "self_signing", "user_signing")


@dataclass(frozen=True)
class CrossSigningKeys:
    """The bot's three private cross-signing keys (seeds), as kept in its 0600 key file."""

    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def key(self, usage: str) -> SigningKey:
        return {
            "master": self.master,
            "self_signing": self.self_signing,
            "user_signing": self.user_signing,
        }[usage]

    def public(self, usage: str) -> str:
        return public_b64(self.key(usage))

    def to_json(self) -> str:
        return json.dumps({usage: encode_base64(bytes(self.key(usage))) for usage in USAGES})

    @classmethod
    def from_json(cls, text: str) -> CrossSigningKeys:
        data = json.loads(text)
        seeds = [SigningKey(decode_base64(data[usage])) for usage in USAGES]
        return cls(*seeds)

    def public_keys(self, user_id: str) -> dict[str, dict[str, Any]]:
        """The three public key objects, the subordinate two signed by the master key."""
        out: dict[str, dict[str, Any]] = {}
        for usage in USAGES:
            public = self.public(usage)
            obj: dict[str, Any] = {
                "user_id": user_id,
                "usage": [usage],
                "keys": {f"ed25519:{public}": public},
            }
            if usage != "master":
                obj = sign(obj, user_id, self.master)
            out[usage] = obj
        return out


def public_b64(key: SigningKey) -> str:
    return encode_base64(key.verify_key.encode())


def sign(obj: Mapping[str, Any], user_id: str, key: SigningKey) -> dict[str, Any]:
    """``obj`` with an ed25519 signature by ``key`` (key id = its public key) added."""
    signing = decode_signing_key_base64("ed25519", public_b64(key), encode_base64(bytes(key)))
    unsigned = {k: v for k, v in obj.items() if k != "unsigned"}
    return sign_json(unsigned, user_id, signing)


def key_of(obj: Mapping[str, Any] | None) -> str | None:
    """The public key (base64) in a cross-signing key object."""
    if not isinstance(obj, Mapping):
        return None
    keys = obj.get("keys")
    if not isinstance(keys, Mapping) or len(keys) != 1:
        return None
    value = next(iter(keys.values()))
    return value if isinstance(value, str) else None


def _verify(obj: Mapping[str, Any], user_id: str, public: str) -> bool:
    try:
        verify_key = decode_verify_key_bytes(f"ed25519:{public}", decode_base64(public))
        verify_signed_json(dict(obj), user_id, verify_key)
    except (SignatureVerifyException, ValueError, KeyError, TypeError):
        return False
    return True


def self_signing_valid(
    user_id: str, master: Mapping[str, Any] | None, self_signing: Mapping[str, Any] | None
) -> bool:
    """The self-signing key is the user's and is signed by their master key."""
    master_key, ssk_key = key_of(master), key_of(self_signing)
    if master_key is None or ssk_key is None or self_signing is None or master is None:
        return False
    if master.get("user_id") != user_id or self_signing.get("user_id") != user_id:
        return False
    usage = self_signing.get("usage")
    return (
        isinstance(usage, list)
        and "self_signing" in usage
        and _verify(self_signing, user_id, master_key)
    )


def device_cross_signed(
    user_id: str,
    master: Mapping[str, Any] | None,
    self_signing: Mapping[str, Any] | None,
    device: Mapping[str, Any] | None,
) -> bool:
    """The device ← self-signing ← master chain of ``user_id`` holds."""
    if device is None or device.get("user_id") != user_id:
        return False
    if not self_signing_valid(user_id, master, self_signing):
        return False
    ssk_key = key_of(self_signing)
    assert ssk_key is not None
    return _verify(device, user_id, ssk_key)


def device_signed_by(device: Mapping[str, Any], user_id: str, public: str) -> bool:
    return _verify(device, user_id, public)


__all__ = [
    "CrossSigningKeys",
    "TrustPolicy",
    "device_cross_signed",
    "device_signed_by",
    "key_of",
    "self_signing_valid",
    "sign",
]
