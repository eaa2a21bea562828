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


@cache
def rules() -> IdentifierRules:
    data = read_yaml("lexicon_shared.yaml").get("identifiers")
    if not isinstance(data, dict):
        raise LexiconError("lexicon_shared.yaml: 'identifiers' must be a mapping")
    provinces = str(data["plate_provinces"])
    separators = str(data["plate_separators"])
    plate = rf"[{re.escape(provinces)}][A-Z][{re.escape(separators)}\s]?[A-Z0-9]{{5,6}}(?![A-Z0-9])"
    mobile = str(data["mobile_pattern"])
    re.compile(mobile)  # fail early on a bad pattern
    return IdentifierRules(re.compile(f"{plate}|{mobile}"))


def find_identifiers(text: str) -> list[tuple[int, int, str]]:
    """Every plate and mobile in ``text``: (start, end, string), in text order, no repeats."""
    out: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    pos = 0
    for s in rules().either.findall(text):
        start = text.find(s, pos)
        pos = start + len(s)
        if s not in seen:
            seen.add(s)
            out.append((start, pos, s))
    return out
