"""The organisation: neighbourhoods, their rooms per audience, members, join codes (pure).

Stations come from config; neighbourhoods (residential complexes) are created by
officers; each neighbourhood has one room per audience (residents, guards, …).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal

from bot.domain.render import Language

DEFAULT_AUDIENCES = ("residents", "guards", "committee", "volunteers", "property", "shops")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")

RoomKind = Literal["neighbourhood", "officers", "digest", "taskforce"]
MemberStatus = Literal["verified", "unverified", "left", "removed"]
RequestStatus = Literal["pending", "form", "done", "denied", "cancelled"]

# Join codes: no 0/O, 1/I/L, so a code read aloud or off paper is typed right.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
_CODE = re.compile(r"([A-Za-z2-9]{4})[-\s]?([A-Za-z2-9]{4})")
# Overlapping (a lookahead): in "code ABCD-EFGH", "code ABCD" must not hide "ABCD-EFGH".
_CODE_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9])(?=([A-Za-z2-9]{4}([-\s]?)[A-Za-z2-9]{4})(?![A-Za-z0-9]))"
)


@dataclass(frozen=True)
class Neighbourhood:
    id: int
    station_id: str
    slug: str
    name: str
    language: Language
    welcome: bool
    officer: str | None = None  # the officer in charge: new cases are assigned to them


@dataclass(frozen=True)
class ManagedRoom:
    room_id: str
    kind: RoomKind
    station_id: str | None
    neighbourhood_id: int | None
    audience: str | None
    alias: str | None
    name: str
    language: Language
    encrypted: bool
    district: str | None = None  # a district's digest room
    external: bool = False  # someone else's room the bot only posts in (not managed by it)

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class Member:
    id: int
    room_id: str
    user_id: str
    name: str | None
    role: str | None
    unit: str | None
    phone: str | None
    status: MemberStatus
    via: str
    verified_by: str | None
    verified_at: int | None
    invited_by: str | None
    created_at: int
    joined_at: int | None = None

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def active(self) -> bool:
        return self.status in ("verified", "unverified")


@dataclass(frozen=True)
class JoinCode:
    code: str
    room_id: str
    created_by: str
    created_at: int
    expires_at: int
    max_uses: int
    uses: int
    revoked: bool

    def problem(self, now_ms: int) -> str | None:
        """Why the code cannot be used now (``expired``, ``used up``, ``revoked``), or None."""
        if self.revoked:
            return "revoked"
        if now_ms >= self.expires_at:
            return "expired"
        if self.uses >= self.max_uses:
            return "used_up"
        return None


@dataclass(frozen=True)
class JoinRequest:
    id: int
    user_id: str
    room_id: str
    source: Literal["knock", "dm"]
    code: str | None
    reason: str | None
    status: RequestStatus
    step: str | None
    name: str | None
    unit: str | None
    approved_by: str | None
    created_at: int


def alias_localpart(slug: str, audience: str) -> str:
    return f"nw-{slug}-{audience}"


def officers_alias_localpart(station_id: str) -> str:
    return f"nw-{station_id}-officers"


def room_name(neighbourhood: str, audience_label: str) -> str:
    return f"{neighbourhood} · {audience_label}"


def matrix_to(alias_or_id: str) -> str:
    """The https://matrix.to link a QR code carries (an alias needs no ``via``)."""
    return f"https://matrix.to/#/{alias_or_id}"


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalise_code(text: str) -> str | None:
    """``abcd efgh`` / ``ABCD-EFGH`` → ``ABCD-EFGH``; None if it cannot be a code."""
    match = _CODE.fullmatch(text.strip())
    if match is None:
        return None
    code = (match.group(1) + match.group(2)).upper()
    if any(ch not in CODE_ALPHABET for ch in code):
        return None
    return f"{code[:4]}-{code[4:]}"


def find_code(text: str) -> str | None:
    """The first thing in free text (a knock reason) that looks like a join code."""
    candidates = sorted(
        _CODE_IN_TEXT.finditer(text or ""),
        key=lambda match: (match.group(2) != "-", match.start()),  # written as codes are first
    )
    for match in candidates:
        code = normalise_code(match.group(1))
        if code is not None:
            return code
    return None


_DURATION = re.compile(
    r"^(\d{1,4})\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?|分钟|小时|天|周)$", re.IGNORECASE
)
_UNIT_MS = {
    "m": 60_000,
    "min": 60_000,
    "分钟": 60_000,
    "h": 3_600_000,
    "小时": 3_600_000,
    "d": 86_400_000,
    "天": 86_400_000,
    "w": 604_800_000,
    "周": 604_800_000,
}


def parse_duration_ms(text: str) -> int | None:
    """``30m``, ``12h``, ``7d``, ``2w`` (also ``7天``) → milliseconds; None if not a duration."""
    match = _DURATION.match(text.strip())
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2).lower()
    key = unit if unit in _UNIT_MS else unit[0]
    ms = amount * _UNIT_MS[key]
    return ms if ms > 0 else None


def split_room_ref(text: str) -> tuple[str, str] | None:
    """``hqxc/guards`` or ``hqxc:guards`` → (slug, audience)."""
    for sep in ("/", ":"):
        if sep in text and not text.startswith(("#", "!")):
            slug, _, audience = text.partition(sep)
            if slug and audience:
                return slug.lower(), audience.lower()
    return None
