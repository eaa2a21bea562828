"""Licence plates and Chinese mobile numbers, exactly as written (guideline §5).

Formats come from ``lexicon_shared.yaml``: a plate is a province character, a letter, an
optional separator (·, ・ or a space) and 5–6 letters/digits (6 for new-energy plates); a
mobile is 11 digits starting 13–19, optionally grouped 3-4-4 with spaces or dashes, and a
leading +86 / 0086 is not part of it.  Landlines (021-…), 400/95xxx service numbers, room
numbers and WeChat IDs do not have these shapes and are not matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from bot.domain.tips.lexicon import LexiconError, read_yaml


@dataclass(frozen=True)
class IdentifierRules:
    either: re.Pattern[str]  # plate | mobile, one pass
    # ASCII characters an identifier can start with, or None when not known: ASCII text
    # with none of them has no identifier
    ascii_starts: str | None = None


@cache
def rules() -> IdentifierRules:
    data = read_yaml("lexicon_shared.yaml").get("identifiers")
    if not isinstance(data, dict):
        raise LexiconError("lexicon_shared.yaml: 'identifiers' must be a mapping")
    provinces = str(data["plate_provinces"])
    separators = str(data["plate_separators"])
    serial = rf"[A-Z][{re.escape(separators)}\s]?[A-Z0-9]{{5,6}}(?![A-Z0-9])"
    # one alternative per province: when every alternative starts with a literal
    # character, the regex engine skips positions that cannot start an identifier
    plate = "|".join(re.escape(p) + serial for p in dict.fromkeys(provinces))
    mobile = str(data["mobile_pattern"])
    re.compile(mobile)  # fail early on a bad pattern
    first = _literal_start(mobile)  # plates start with a province
    starts = None if first is None else "".join(c for c in provinces + first if c.isascii())
    return IdentifierRules(re.compile(f"{plate}|{mobile}"), starts)


def _literal_start(pattern: str) -> str | None:
    """The character every match of ``pattern`` starts with, when it plainly has one: a
    letter or digit, not quantified, and no "|" outside a group or class (else None)."""
    if not pattern[:1].isalnum() or pattern[1:2] in ("?", "*", "+", "{"):
        return None
    depth = 0
    in_class = escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"  # (a "]" first in a class would end it here: conservative)
        elif c == "[":
            in_class = True
        elif c in "()":
            depth += 1 if c == "(" else -1
        elif c == "|" and depth == 0:
            return None
    return pattern[0]


def find_identifiers(text: str) -> list[tuple[int, int, str]]:
    """Every plate and mobile in ``text``: (start, end, string), in text order, no repeats."""
    r = rules()
    starts = r.ascii_starts
    if starts is not None and text.isascii():
        for c in starts:
            if c in text:
                break
        else:
            return []
    found: list[str] = r.either.findall(text)
    if not found:
        return []
    out: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    pos = 0
    for s in found:
        start = text.find(s, pos)
        pos = start + len(s)
        if s not in seen:
            seen.add(s)
            out.append((start, pos, s))
    return out
