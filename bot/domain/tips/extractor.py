"""Tip extraction: evidence from the lexicons, combined by a few explicit rules.

1. The message (its first ``MAX_CHARS`` characters) is normalised for matching: lower
   case, a space after opening punctuation, one space between tokens, invisible marks
   removed, curly quotes straight, full-width letters and digits half-width, traditional
   characters simplified (lexicon.py, lexicon_shared.yaml).
2. Both language scanners run on it when it has characters of their script (mixed text
   needs no language guess).  Each term found carries category evidence, context that
   real reports have (recency, a witness, a request for help …), negative context
   (thanks, notices, news, films, hypotheticals, ads, lost property …), acute danger
   types and timing (now / earlier / over).  Category and danger evidence right after a
   negation (没被偷, wasn't stolen) does not count.  Only the scans and the negation
   checks run per message: the evidence of a set of findings is worked out once and
   shared by the messages with the same findings (``gather``).
3. Category = the one with most evidence (ties: the strongest single cue, then
   ``category_order``); rulings of guideline §2 are lexicon groups with negative weights
   (a car broken into is not burglary) plus one rule here (with a clear premises cue,
   stealing words count for burglary).  Tip score = that evidence (capped) + context
   (capped) − negative context (a second cue of the same kind counts half) + a little
   for a specific place or identifier.  Confidence is a logistic of the score: 0.5 is
   the tip threshold, ≥ 0.7 a confident tip, 0.4–0.7 uncertain.  Without any category
   evidence a message is never a tip (and its context is not even collected).
4. Emergency (guideline §3): a tip with an acute danger that fits its category (fire,
   gas, someone trapped, violence, an intruder, someone trying doors, a payment to a
   scammer under way, someone about to jump …) that is explicitly happening now, or
   urgent with no sign that it is over or in the past.  Hotlines follow from the danger
   types (lexicon_shared.yaml).
5. Location and identifiers (location.py, identifiers.py) are reported only for tips.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import cast

from bot.domain.tips import CATEGORIES, Hotline, TipAnalysis
from bot.domain.tips.identifiers import find_identifiers
from bot.domain.tips.identifiers import rules as identifier_rules
from bot.domain.tips.lexicon import (
    Found,
    LexiconError,
    Memo,
    Normaliser,
    Scanner,
    TermInfo,
    categories_used,
    collect_terms,
    compile_scanner,
    load_normaliser,
    read_yaml,
)
from bot.domain.tips.location import best_location, place_words
from bot.domain.tips.location import rules as location_rules

MAX_CHARS = 4000  # only the start of a huge message is analysed

# Scoring (see the module docstring).  Category evidence is capped so a message full of
# crime words (a forwarded warning) cannot drown its negative context.
CAT_CAP = 6.0
CTX_CAP = 3.5
CTX_FACTOR = 0.7
NEG_REPEAT = 0.5  # weight of further negative cues of the same kind
NEG_REPEAT_CAP = 1.75  # … up to this multiple of the strongest one
NEG_FLOOR = -12.0
LOCATION_BONUS = 0.5
IDENTIFIER_BONUS = 0.5
THRESHOLD = 3.0  # score at which confidence is 0.5
BURGLARY_RULING = 3.0  # burglary evidence that makes generic stealing count as burglary
SLOPE = 1.1

# Which acute dangers make which category an emergency; ACUTE_ANY applies to all.
ACUTE_FOR: Mapping[str, frozenset[str]] = {
    "fire_hazard": frozenset({"fire", "gas"}),
    "violence": frozenset({"violence", "injured", "down"}),
    "burglary": frozenset({"intruder", "trying"}),
    "theft": frozenset({"breaking", "trying"}),
    "suspicious_person": frozenset({"trying", "intruder"}),
    "fraud": frozenset({"scam_pay"}),
    "safety_hazard": frozenset({"trapped", "injured", "falling", "down"}),
    "other": frozenset({"jump", "trapped", "injured", "down"}),
}
ACUTE_ANY = frozenset({"fire", "gas", "trapped"})
ACUTE_STATES = frozenset({"fire", "gas", "trapped", "down"})  # ongoing when reported

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# ([a-z]{2} would match the same, but a pattern starting with a repeat makes the regex
# engine try every position instead of skipping to a letter)
_HAS_LATIN = re.compile(r"[a-z][a-z]")
_NEGATORS_ZH = ("没", "没有", "不", "未", "别", "无", "并非")
_NEGATORS_EN = frozenset({"not", "no", "never", "without", "nothing", "nobody", "none"})
_NEGATION_FILLERS = frozenset(
    {"been", "be", "was", "were", "get", "got", "really", "even", "any", "one", "actually"}
)


# What one scanner found in a message: the shared Found, a bit mask of its hits to
# ignore (Scanner.find) and a bit mask of those right after a negation (_negations).
Findings = tuple[Found, int, int]
EVIDENCE_MEMO_SIZE = 4096  # distinct findings remembered (see Memo)


@dataclass(frozen=True)
class _Lexicon:
    zh: Scanner
    en: Scanner
    normalise: Normaliser
    category_order: tuple[str, ...]
    rank: Mapping[str, int]
    hotlines: Mapping[str, tuple[str, ...]]
    primary: Mapping[str, str]
    # gather's memo: findings of both scanners → their Evidence
    memo: Memo[tuple[Findings | None, Findings | None], Evidence] = field(
        default_factory=lambda: Memo(EVIDENCE_MEMO_SIZE), repr=False, compare=False
    )


@cache
def _lexicon() -> _Lexicon:
    shared = read_yaml("lexicon_shared.yaml")
    order = tuple(str(c) for c in shared.get("category_order", CATEGORIES))
    if sorted(order) != sorted(CATEGORIES):
        raise LexiconError("category_order must list every category once")
    hotlines = {str(k): tuple(str(n) for n in v) for k, v in shared["hotlines"].items()}
    primary = {str(k): str(v) for k, v in shared["primary_hotline"].items()}
    norm = load_normaliser()
    zh_terms = collect_terms(read_yaml("lexicon_zh.yaml"), "lexicon_zh.yaml")
    en_terms = collect_terms(read_yaml("lexicon_en.yaml"), "lexicon_en.yaml")
    zh_places, en_places = place_words(location_rules())
    zh = compile_scanner(zh_terms, False, norm, zh_places)
    en = compile_scanner(en_terms, True, norm, en_places)
    for name, scanner in (("zh", zh), ("en", en)):
        unknown = categories_used(scanner) - set(CATEGORIES)
        if unknown:
            raise LexiconError(f"lexicon_{name}.yaml: unknown categories {sorted(unknown)}")
    rank = {c: i for i, c in enumerate(order)}
    return _Lexicon(zh, en, norm, order, rank, hotlines, primary)


def normalise(text: str) -> str:
    """The text keyword matching sees (spans are taken from the original text)."""
    return _lexicon().normalise(text)


class Evidence:
    """What the lexicons found in one message, and the scores derived from it."""

    __slots__ = (
        "acute",
        "base",
        "best",
        "category",
        "cats",
        "ctx",
        "done",
        "neg_max",
        "neg_sum",
        "now",
        "past",
        "places_en",
        "places_zh",
        "strongest",
        "verdicts",
    )

    def __init__(self) -> None:  # by hand: one of these per message
        self.cats: dict[str, float] = {}
        self.strongest: dict[str, float] = {}  # best single cue per category
        self.ctx: dict[str, float] = {}
        self.neg_max: dict[str, float] = {}
        self.neg_sum: dict[str, float] = {}
        self.acute: set[str] = set()
        self.now = 0
        self.past = False
        self.done = False
        self.places_zh: set[str] = set()  # place words found, as listed
        self.places_en: set[str] = set()
        self.category: str | None = None  # strongest category (ties: category_order)
        self.best = 0.0  # its evidence
        self.base = 0.0  # tip score before the place / identifier bonuses
        # _verdict's memo, by 2 × has_location + has_identifier (gather shares Evidence)
        self.verdicts: list[Verdict | None] = [None, None, None, None]

    def finish(self, rank: Mapping[str, int]) -> Evidence:
        cats = self.cats
        if "theft" in cats and cats.get("burglary", 0.0) >= BURGLARY_RULING:
            # Guideline §2: entering premises to steal is burglary.  With a clear premises
            # cue (a forced door, a flat turned over) the stealing words count for it.
            cats["burglary"] += min(max(cats["theft"], 0.0), 3.0)
            cats["theft"] -= 3.0
        best = 0.0
        category: str | None = None
        strongest = self.strongest
        for cat, value in cats.items():
            if value <= 0:
                continue
            if category is None or value > best:
                best, category = value, cat
            elif value == best:
                # tie: a single strong cue beats an accumulation of hints, then the order
                mine, theirs = strongest.get(cat, 0.0), strongest.get(category, 0.0)
                if mine > theirs or (mine == theirs and rank[cat] < rank[category]):
                    category = cat
        negative = 0.0
        if self.neg_max:
            neg_sum = self.neg_sum
            for name, worst in self.neg_max.items():
                rest = neg_sum[name] - worst
                negative += max(worst + NEG_REPEAT * rest, NEG_REPEAT_CAP * worst)
            negative = max(negative, NEG_FLOOR)
        context = min(sum(self.ctx.values()), CTX_CAP) if self.ctx else 0.0
        self.category, self.best = category, best
        if category is None:
            self.base = -5.0 + context + negative
        else:
            self.base = min(best, CAT_CAP) + CTX_FACTOR * context + negative
        return self


def gather(norm: str, lex: _Lexicon | None = None) -> Evidence:
    """Evidence from both scanners (each only on text with characters of its script).

    Without any category evidence (negated or not) the result is left unscored
    (``category`` None): such a message is never a tip.  The result is shared by every
    message with the same findings (terms, patterns, negations): do not modify it."""
    if lex is None:
        lex = _lexicon()
    zh: Findings | None = None
    en: Findings | None = None
    if not norm.isascii():
        part = norm
        # Chinese terms are made of non-ASCII characters: in mostly-ASCII text, scan only
        # the non-ASCII runs (a plate's province character, a quoted Chinese word).
        # (UTF-8 length - length ≈ 2 × the number of CJK characters.)
        size = len(norm)
        if (len(norm.encode("utf-8", "surrogatepass")) - size) * 3 < 2 * size:
            part = " " + " ".join(_NON_ASCII_RUN.findall(norm)) + " "
        found, dropped = lex.zh.find(part)
        zh = (found, dropped, _negations(found, part, False))
    if _HAS_LATIN.search(norm):
        found, dropped = lex.en.find(norm)
        en = (found, dropped, _negations(found, norm, True))
    key = (zh, en)
    ev = lex.memo.results.get(key)
    if ev is None:
        ev = _evidence(zh, en, lex.rank)
        lex.memo.add(key, ev)
    return ev


def _evidence(zh: Findings | None, en: Findings | None, rank: Mapping[str, int]) -> Evidence:
    """The (finished, when it has category evidence) Evidence of these findings."""
    ev = Evidence()
    has_cats = False
    if zh is not None:
        has_cats = _add(ev, zh, ev.places_zh)
    if en is not None:
        has_cats = _add(ev, en, ev.places_en) or has_cats
    if not has_cats:
        return ev  # no category evidence: never a tip, context is irrelevant
    return ev.finish(rank)


def _add(ev: Evidence, findings: Findings, places: set[str]) -> bool:
    """Add the features of the terms and patterns found to ``ev`` (in the order
    ``Scanner.scan`` lists them); True when one has category evidence (even negated)."""
    found, dropped, negated = findings
    has_cats = False
    for i, (_, info) in enumerate(found.hits):
        if dropped >> i & 1:
            continue
        if info.places:
            places.update(info.places)
        if info.negatable:
            if info.cats:
                has_cats = True
            if not negated >> i & 1:
                _score(ev, info)
        if info.extra:
            _extra(ev, info)
    return has_cats


def _negations(found: Found, text: str, latin: bool) -> int:
    """Bit mask of the negatable hits of ``found`` that come right after a negation."""
    if not found.negatable:
        return 0
    if latin:
        if "no" not in text and "n't" not in text and "without" not in text:
            return 0  # no negation word anywhere (see _negated)
    elif _ZH_NEGATION.search(text) is None:
        return 0
    mask = 0
    hits = found.hits
    for i in found.negatable:
        if _negated(text, text.find(hits[i][0]), latin):
            mask |= 1 << i
    return mask


_ZH_NEGATOR_ENDS = frozenset(n[-1] for n in _NEGATORS_ZH if len(n) == 1)
_ZH_NEGATOR_PAIRS = frozenset(n for n in _NEGATORS_ZH if len(n) == 2)
_ZH_NEGATOR_SECOND = frozenset(n[-1] for n in _ZH_NEGATOR_PAIRS)
if any(not 1 <= len(n) <= 2 for n in _NEGATORS_ZH):  # what the two sets above cover
    raise AssertionError("Chinese negators must have one or two characters")
# Text without any of these has no negated Chinese term (see _negated).
_ZH_NEGATION = re.compile("|".join(re.escape(n) for n in _NEGATORS_ZH))


def _negated(norm: str, start: int, latin: bool) -> bool:
    """Is the term at ``start`` right after a negation (没被偷, wasn't stolen)?"""
    if start <= 0:
        return False
    if not latin:
        last = norm[start - 1]
        return last in _ZH_NEGATOR_ENDS or (
            last in _ZH_NEGATOR_SECOND and norm[start - 2 : start] in _ZH_NEGATOR_PAIRS
        )
    window = norm[max(0, start - 24) : start]
    if "no" not in window and "n't" not in window and "without" not in window:
        return False  # the usual case, decided without splitting
    words = window.split()
    if not words:
        return False
    last = words[-1]
    if last in _NEGATORS_EN or last.endswith("n't"):
        return True
    if len(words) >= 2 and last in _NEGATION_FILLERS:
        before = words[-2]
        return before in _NEGATORS_EN or before.endswith("n't")
    return False


def _score(ev: Evidence, info: TermInfo) -> None:
    """Count a (not negated) term towards its categories and emergency signs."""
    cats, strongest = ev.cats, ev.strongest
    for name, w in info.cats:
        cats[name] = cats.get(name, 0.0) + w
        if w > strongest.get(name, 0.0):
            strongest[name] = w
    if info.acute:
        ev.acute.update(info.acute)


def _extra(ev: Evidence, info: TermInfo) -> None:
    """Context, negative context and timing of one term."""
    if info.ctx:
        ctx = ev.ctx
        for name, w in info.ctx:
            if w > ctx.get(name, 0.0):
                ctx[name] = w
    if info.neg:
        neg_max, neg_sum = ev.neg_max, ev.neg_sum
        for name, w in info.neg:
            if w < neg_max.get(name, 0.0):
                neg_max[name] = w
            neg_sum[name] = neg_sum.get(name, 0.0) + w
    if info.now > ev.now:
        ev.now = info.now
    if info.past:
        ev.past = True
    if info.done:
        ev.done = True


def locate(text: str) -> str | None:
    """The most specific place named in ``text``, tip or not (see the package)."""
    lex = _lexicon()
    norm = normalise(text)
    zh: set[str] = set()
    en: set[str] = set()
    if not norm.isascii():
        zh.update(p for _, _, info in lex.zh.scan(norm) for p in info.places)
    if _HAS_LATIN.search(norm):
        en.update(p for _, _, info in lex.en.scan(norm) for p in info.places)
    idents = find_identifiers(text)
    return best_location(text, [(a, b) for a, b, _ in idents], list(zh), list(en))


def explain(text: str) -> list[str]:
    """The lexicon terms (and patterns) found in ``text``: for debugging lexicons."""
    lex = _lexicon()
    norm = normalise(text[:MAX_CHARS])
    return [term for _, term, _ in lex.zh.scan(norm) + lex.en.scan(norm)]


def score(ev: Evidence, has_location: bool, has_identifier: bool) -> float:
    """Tip score: evidence, context and negative context, plus the bonuses."""
    if ev.category is None:
        return ev.base
    return ev.base + LOCATION_BONUS * has_location + IDENTIFIER_BONUS * has_identifier


def confidence(s: float) -> float:
    return 1.0 / (1.0 + math.exp(-SLOPE * (s - THRESHOLD)))


def is_emergency(ev: Evidence, category: str) -> bool:
    """Guideline §3: acute danger fitting the category, explicitly happening now.

    Fire, gas, someone trapped or a person down are states: reported without any sign
    of the past ("there's a strong smell of gas") they are happening now.  Other dangers
    need a marker (现在, right now, still …) or an urgent call with no past marker.
    """
    if not ev.acute:
        return False
    acute = ev.acute & _ACUTE_RELEVANT.get(category, ACUTE_ANY)
    if not acute or ev.done:
        return False
    if ev.now >= 2:
        return True
    if ev.past:
        return False
    return ev.now == 1 or bool(acute & ACUTE_STATES)


_ACUTE_RELEVANT = {category: kinds | ACUTE_ANY for category, kinds in ACUTE_FOR.items()}


def hotlines_for(ev: Evidence, category: str) -> tuple[Hotline, ...]:
    """Numbers to call, most relevant first: the category's own service, then others."""
    return _hotlines(category, frozenset(ev.acute))


@cache
def _hotlines(category: str, acute: frozenset[str]) -> tuple[Hotline, ...]:
    lex = _lexicon()
    relevant = acute & (ACUTE_FOR.get(category, frozenset()) | ACUTE_ANY | {"injured", "down"})
    numbers: list[str] = []
    for kind in sorted(relevant):
        numbers.extend(lex.hotlines.get(kind, ()))
    primary = lex.primary.get(category, "110")
    if primary in numbers or not any(n in ("110", "119") for n in numbers):
        numbers.insert(0, primary)
    numbers.sort(key=lambda n: (n != primary, n == "120"))
    return cast(tuple[Hotline, ...], tuple(dict.fromkeys(numbers)))


NOT_A_TIP = TipAnalysis(
    is_tip=False, category=None, emergency=False, location=None, identifiers=(), confidence=0.0
)


def analyse(text: str, lang: str | None = None) -> TipAnalysis:
    """Analyse one message; never raises on any text.

    ``lang`` ("zh"/"en") is accepted as a hint but not needed: both lexicons run on every
    message that has characters of their script, so mixed text works without it.
    """
    if not isinstance(text, str) or not text or text.isspace():
        return NOT_A_TIP
    if not _loaded:
        _load()  # a broken installation (lexicon files) must surface, not be hidden below
    try:
        return _analyse(text[:MAX_CHARS])
    except Exception:  # pragma: no cover - defensive: never fail on odd input
        return NOT_A_TIP


_loaded = False


def _load() -> None:
    global _loaded
    _lexicon()
    location_rules()
    identifier_rules()
    _loaded = True


@cache
def _not_a_tip(conf: float) -> TipAnalysis:
    """Non-tip results are immutable and differ only in confidence: build each once."""
    return TipAnalysis(False, None, False, None, (), conf)


Verdict = tuple[float, bool, tuple[Hotline, ...]]  # confidence, emergency, hotlines


def _verdict(ev: Evidence, has_location: bool, has_identifier: bool) -> Verdict:
    """Confidence, emergency and hotlines of a message with evidence ``ev`` (with a
    category), naming a place and an identifier or not; worked out once per Evidence."""
    slot = 2 * has_location + has_identifier
    verdict = ev.verdicts[slot]
    if verdict is None:
        category = cast(str, ev.category)
        conf = round(confidence(score(ev, has_location, has_identifier)), 3)
        emergency = is_emergency(ev, category)
        verdict = (conf, emergency, hotlines_for(ev, category) if emergency else ())
        ev.verdicts[slot] = verdict
    return verdict


def _analyse(text: str) -> TipAnalysis:
    lex = _lexicon()
    ev = gather(lex.normalise(text), lex)
    category = ev.category
    if category is None:
        return NOT_A_TIP  # no category evidence at all
    if ev.base + LOCATION_BONUS + IDENTIFIER_BONUS < THRESHOLD:
        # not a tip whatever place or number it names: skip the span work
        return _not_a_tip(round(confidence(ev.base), 3))
    idents = find_identifiers(text)
    location = best_location(
        text, [(a, b) for a, b, _ in idents] if idents else (), ev.places_zh, ev.places_en
    )
    conf, emergency, hotlines = _verdict(ev, location is not None, bool(idents))
    if conf < 0.5:
        return _not_a_tip(conf)
    return TipAnalysis(
        True,
        category,
        emergency,
        location,
        tuple([s for _, _, s in idents]) if idents else (),
        conf,
        hotlines,
    )
