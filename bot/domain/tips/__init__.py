"""Tip extraction: is a message a report police should log, and what is in it (pure).

``analyse(text, lang)`` → ``TipAnalysis``. Keywords and patterns live in the
YAML lexicons next to this module, one per language, not in code.

* ``extractor.py``: scoring, category rulings, emergency and hotlines;
* ``lexicon.py``: loading and compiling the lexicons (``lexicon_*.yaml``);
* ``location.py``: the place a report names (guideline §4);
* ``identifiers.py``: licence plates and mobile numbers (guideline §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CATEGORIES = (
    "burglary",
    "theft",
    "fire_hazard",
    "fraud",
    "gambling",
    "drugs",
    "prostitution",
    "suspicious_person",
    "violence",
    "safety_hazard",
    "public_order",
    "other",
)
Hotline = Literal["110", "119", "120"]


@dataclass(frozen=True, init=False)
class TipAnalysis:
    is_tip: bool
    category: str | None  # one of CATEGORIES when is_tip
    emergency: bool  # danger happening now
    location: str | None  # an exact substring of the text
    identifiers: tuple[str, ...]  # licence plates and mobile numbers, as written
    confidence: float  # 0..1 that this is a tip; is_tip == (confidence >= 0.5)
    hotlines: tuple[Hotline, ...] = ()  # for emergencies: whom to call, most relevant first

    def __init__(
        self,
        is_tip: bool,
        category: str | None,
        emergency: bool,
        location: str | None,
        identifiers: tuple[str, ...],
        confidence: float,
        hotlines: tuple[Hotline, ...] = (),
    ) -> None:
        # The generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__; one is built per message, so fill __dict__ at once.
        self.__dict__.update(
            is_tip=is_tip,
            category=category,
            emergency=emergency,
            location=location,
            identifiers=identifiers,
            confidence=confidence,
            hotlines=hotlines,
        )


def locate(text: str) -> str | None:
    """The most specific place named in ``text`` (an exact substring), tip or not.

    ``analyse`` reports a location only for tips (guideline §4); this is for other
    messages that name a place, such as a wanted-person notice ("last seen near …").
    """
    if not isinstance(text, str) or not text.strip():
        return None
    from bot.domain.tips.extractor import locate as _locate

    try:
        return _locate(text[:MAX_CHARS])
    except Exception:  # pragma: no cover - defensive, like analyse
        return None


from bot.domain.tips.extractor import MAX_CHARS, analyse  # noqa: E402  (needs the names above)

__all__ = ["CATEGORIES", "Hotline", "TipAnalysis", "analyse", "locate"]
