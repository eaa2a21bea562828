"""The case log's rules (pure): statuses and transitions, case numbers, duplicates, authorities.

A case moves ``new`` → ``acknowledged`` → ``investigating`` → one of the closed
statuses (``solved``, ``referred`` to a named authority, ``unfounded``,
``duplicate`` of another case). A closed case can be reopened, which puts it
back to ``investigating``. Every change is written to the case's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Status = Literal[
    "new", "acknowledged", "investigating", "solved", "referred", "unfounded", "duplicate"
]
Source = Literal["room", "dm", "call", "visit", "officer"]

OPEN: frozenset[str] = frozenset({"new", "acknowledged", "investigating"})
CLOSED: frozenset[str] = frozenset({"solved", "referred", "unfounded", "duplicate"})
ANNOUNCED: frozenset[str] = frozenset({"solved", "referred", "unfounded"})

_ALLOWED: dict[str, frozenset[str]] = {
    "new": frozenset({"acknowledged", "investigating", *CLOSED}),
    "acknowledged": frozenset({"investigating", *CLOSED}),
    "investigating": frozenset(CLOSED),
}

# Who a case can be referred to (free text is accepted too; these get a translated name).
AUTHORITIES = (
    "fire",
    "urban_management",
    "housing",
    "market_regulation",
    "transport",
    "health",
    "civil_affairs",
    "station",
)
_CASE_REF = re.compile(r"^(?:([a-z][a-z0-9]*)-)?(?:(\d{4})-)?0*(\d{1,6})$", re.IGNORECASE)
MAX_TEXT = 16_000
"""Characters of a tip stored (a 64 KB message is kept up to this, with a flag)."""


class TransitionError(ValueError):
    """Not allowed from the case's current status; ``hint`` says what would be."""

    def __init__(self, current: str, wanted: str) -> None:
        super().__init__(f"{current} → {wanted}")
        self.current = current
        self.wanted = wanted


def check_transition(current: str, wanted: str) -> None:
    if wanted == "reopened":
        if current not in CLOSED:
            raise TransitionError(current, wanted)
        return
    if wanted not in _ALLOWED.get(current, frozenset()):
        raise TransitionError(current, wanted)


def is_closed(status: str) -> bool:
    return status in CLOSED


def case_number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix.upper()}-{year}-{seq:04d}"


@dataclass(frozen=True)
class CaseRef:
    """What someone typed to name a case: ``HQ-2026-0042``, ``2026-42`` or just ``42``."""

    prefix: str | None
    year: int | None
    seq: int


def parse_case_ref(text: str) -> CaseRef | None:
    match = _CASE_REF.match(text.strip().lstrip("#"))
    if match is None:
        return None
    prefix, year, seq = match.groups()
    return CaseRef(prefix.upper() if prefix else None, int(year) if year else None, int(seq))


def station_prefix(station_id: str) -> str:
    """Case numbers start with the station id's initials, e.g. hongqiao → HONGQIAO, hq → HQ."""
    return re.sub(r"[^A-Za-z0-9]", "", station_id).upper()[:8] or "NW"


def clip(text: str, limit: int = MAX_TEXT) -> tuple[str, bool]:
    """The text to store, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def excerpt(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_NUMBERS = re.compile(r"\d+")
_WORDS = re.compile(r"[a-z]+|[\u4e00-\u9fff]")


@lru_cache(maxsize=4096)
def _place(location: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """A place as compared: lower-cased, its numbers, its words (each place is compared
    with the day's other places of its neighbourhood, so this is worth keeping)."""
    lowered = location.lower()
    return lowered, frozenset(_NUMBERS.findall(lowered)), frozenset(_WORDS.findall(lowered))


def same_place(a: str | None, b: str | None) -> bool:
    """Nearby enough to flag a possible duplicate: same building numbers or most words shared."""
    if not a or not b:
        return False
    (la, nums_a, words_a), (lb, nums_b, words_b) = _place(a), _place(b)
    if la in lb or lb in la:
        return True
    if nums_a and nums_a == nums_b:
        return True
    if not words_a or not words_b:
        return False
    shared = len(words_a & words_b) / min(len(words_a), len(words_b))
    return shared >= 0.6 and (not nums_a or not nums_b or bool(nums_a & nums_b))


YES = frozenset(
    {"yes", "y", "ok", "sure", "please", "是", "是的", "对", "好", "好的", "要", "记录", "👍", "✅"}
)
NO = frozenset({"no", "n", "nope", "不", "不是", "否", "不用", "不要", "算了", "👎", "❌"})


def yes_or_no(text: str) -> bool | None:
    word = text.strip().strip("。.!！ ").lower()
    if word in YES:
        return True
    if word in NO:
        return False
    return None


@dataclass
class BoardLine:
    number: str
    category: str
    status: str
    location: str | None
    urgent: bool


@dataclass
class Board:
    """A room's pinned case board: this month's cases and their status."""

    month: str
    lines: list[BoardLine] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    id: int
    station_id: str
    number: str
    source: str
    reporter: str | None
    reporter_name: str | None
    anonymous: bool
    neighbourhood_id: int | None
    room_id: str | None
    event_id: str | None
    category: str
    urgent: bool
    location: str | None
    identifiers: tuple[str, ...]
    text: str
    text_truncated: bool
    status: str
    assignee: str | None
    outcome: str | None
    referred_to: str | None
    duplicate_of: int | None
    created_at: int
    acknowledged_at: int | None
    closed_at: int | None

    @property
    def closed(self) -> bool:
        return self.status in CLOSED

    @property
    def private(self) -> bool:
        """Reported by DM (or anonymously): never echoed to any group room."""
        return self.source == "dm" or self.anonymous


@dataclass(frozen=True)
class CaseEvent:
    at: int
    actor: str
    action: str
    old: str | None
    new: str | None
    note: str | None
