"""Lexicons: the YAML word lists next to this module, compiled once into fast scanners.

Each language file (``lexicon_zh.yaml``, ``lexicon_en.yaml``) holds ``groups``: a *tag*
(``kind:name``, e.g. ``cat:burglary``, ``ctx:recent``, ``neg:thanks``, ``acute:fire``,
``time:now``) or a list of tags, a *weight* and a list of *terms*.  A term is a literal
(matched on the normalised, lower-cased text) unless it starts with ``re:``, then it is a
regular expression that must start with a literal character or a leading ``(?:a|b)`` of
plain words.  English terms start at a word start and literals end at a word end; a
trailing ``*`` makes a literal a prefix (``burgl*``: burglar, burgled, burglary).  A
leading ``^`` (``^noted``, ``re:^…``) makes a term count only at the start of a message.
A term may appear in several groups: it then carries all their features.  The
``location`` sections' place words are matched too (without features), for location.py.

Speed matters (tens of thousands of messages a second on one core), so:

* text is normalised so that every word follows a space, and English terms start with
  one: the regex engine only tries positions where a term can start;
* literals are compiled into prefix tries split by first character into a few buckets
  (the engine tries a branch's alternatives one by one: one trie with 600 first
  characters would be slow), scanned with ``findall``; terms starting with an emoji
  get tries of their own, used only for text with such characters (``common_regexes``);
* all patterns of a language are one alternation grouped by first character(s), and a
  match is attributed to its pattern afterwards (matches are rare);
* each term's features are folded into one ``TermInfo`` up front, including what the
  shorter terms it hides would have told (``_inherit``);
* what a list of matches amounts to (``Found``) is worked out once and remembered
  (``Memo``): messages share a handful of terms, in few combinations.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

import yaml

PACKAGE = "bot.domain.tips"
KINDS = frozenset({"cat", "ctx", "neg", "acute", "time"})


class LexiconError(ValueError):
    """A lexicon file is malformed (raised at load time, never per message)."""


@dataclass(frozen=True)
class Feature:
    kind: str  # cat | ctx | neg | acute | time
    name: str
    weight: float


@dataclass(frozen=True, slots=True)
class TermInfo:
    """Everything one matched term tells, precomputed."""

    cats: tuple[tuple[str, float], ...]
    ctx: tuple[tuple[str, float], ...]
    neg: tuple[tuple[str, float], ...]
    acute: tuple[str, ...]
    now: int  # 0: no, 1: implied (an urgent call), 2: explicit (现在, right now)
    past: bool
    done: bool
    negatable: bool  # has category or acute evidence a negation would cancel
    places: tuple[str, ...] = ()  # place words in this term (itself included), as listed
    anchored: bool = False  # counts only at the start of a message
    extra: bool = False  # has context, negative context or timing (any of the above)

    @staticmethod
    def of(
        features: Sequence[Feature], places: tuple[str, ...] = (), anchored: bool = False
    ) -> TermInfo:
        now = 0
        for f in features:
            if f.kind == "time" and f.name == "now":
                now = max(now, 2 if f.weight >= 2 else 1)
        cats = tuple((f.name, f.weight) for f in features if f.kind == "cat")
        acute = tuple(f.name for f in features if f.kind == "acute")
        ctx = tuple((f.name, f.weight) for f in features if f.kind == "ctx")
        neg = tuple((f.name, f.weight) for f in features if f.kind == "neg")
        past = any(f.kind == "time" and f.name == "past" for f in features)
        done = any(f.kind == "time" and f.name == "done" for f in features)
        return TermInfo(
            cats=cats,
            ctx=ctx,
            neg=neg,
            acute=acute,
            now=now,
            past=past,
            done=done,
            negatable=bool(cats or acute),
            places=places,
            anchored=anchored,
            extra=bool(ctx or neg or now or past or done),
        )


Hit = tuple[int, str, TermInfo]  # start, term, info

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A bounded memo for results that recur.  A result is kept from the second time its
    key is seen, so keys seen once (most messages of a varied stream) neither fill it
    nor give the garbage collector long-lived objects to track; when full it is emptied.
    Look results up in ``results``."""

    __slots__ = ("results", "seen", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.results: dict[K, V] = {}
        self.seen: set[int] = set()  # hashes of keys seen once

    def add(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key`` if the key was seen before."""
        h = hash(key)
        if h not in self.seen:
            if len(self.seen) >= 4 * self.size:
                self.seen.clear()
            self.seen.add(h)
        else:
            if len(self.results) >= self.size:
                self.results.clear()
            self.results[key] = value


class Found:
    """What a scanner's matches in one text amount to, apart from where they are: the
    distinct terms (as ``Scanner.terms`` lists them), then the distinct patterns (as
    ``Scanner.pattern_hits``, before its start-of-message check), each with the string
    that locates it in the text.  Worked out once per distinct list of raw matches and
    shared (compared by identity), so it must not be modified."""

    __slots__ = ("anchored", "hits", "negatable")

    def __init__(
        self,
        hits: tuple[tuple[str, TermInfo], ...],
        anchored: tuple[int, ...],
        negatable: tuple[int, ...],
    ) -> None:
        self.hits = hits  # (needle, info): text.find(needle) is where it starts
        self.anchored = anchored  # indices of hits that count only at the start
        self.negatable = negatable  # indices of hits with evidence a negation cancels


# Opening punctuation glued to a word ("(scar", 'safe account') gets a space after it,
# so every word is preceded by a space and English terms can start with one (then only
# word starts are candidate positions for the regex engine).  Trailing punctuation
# needs nothing: terms end with \b.
_OPENER = re.compile(r"[\"'(\[{</\-—](?<![a-z0-9_].)(?=[a-z0-9])")
WORD_CHAR = re.compile(r"\w")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # outside the Basic Multilingual Plane


@dataclass(frozen=True)
class Normaliser:
    """Text as the scanners see it: characters mapped (``fixes``), lower case, a space
    after opening punctuation, one space between tokens and one at each end.  Lexicon
    literals go through the same function."""

    fixes: Mapping[str, str]
    needs_fix: re.Pattern[str]
    ascii_table: Mapping[int, str]  # the ASCII part of ``fixes``: str.translate's fast path
    ascii_visible_fixes: str  # printable ASCII characters ``ascii_table`` changes

    def _fix(self, m: re.Match[str]) -> str:
        return self.fixes[m.group()]

    def __call__(self, text: str) -> str:
        if text.isascii():
            # translate is slow-ish: only when needed (control characters are not printable)
            fix = not text.isprintable()
            if not fix:
                for c in self.ascii_visible_fixes:
                    if c in text:
                        fix = True
                        break
            if fix:
                text = text.translate(self.ascii_table)
            text = text.lower()
        else:
            text = self.needs_fix.sub(self._fix, text).lower()
        if _OPENER.search(text) is not None:  # rare: a search is cheaper than a sub
            text = _OPENER.sub(_space_after, text)
        return f" {' '.join(text.split())} "


def _space_after(m: re.Match[str]) -> str:
    return m.group() + " "


def load_normaliser() -> Normaliser:
    shared = read_yaml("lexicon_shared.yaml")
    norm = shared.get("normalise", {})
    fixes: dict[str, str] = {chr(ch): " " for ch in range(32)}
    fixes["\x7f"] = " "
    fixes["\u3000"] = " "
    for ch in range(0xFF10, 0xFF1A):  # full-width digits
        fixes[chr(ch)] = chr(ch - 0xFEE0)
    for ch in list(range(0xFF21, 0xFF3B)) + list(range(0xFF41, 0xFF5B)):  # letters
        fixes[chr(ch)] = chr(ch - 0xFEE0)
    for c in str(norm.get("strip", "")):
        fixes[c] = ""
    pairs = str(norm.get("replace", ""))
    for i in range(0, len(pairs) - 1, 2):
        fixes[pairs[i]] = pairs[i + 1]
    trad = "".join(str(shared.get("traditional", "")).split())
    for i in range(0, len(trad) - 1, 2):
        fixes[trad[i]] = trad[i + 1]
    chars = "".join(re.escape(c) for c in sorted(fixes))
    ascii_table = {
        ord(k): v for k, v in fixes.items() if k.isascii() and len(v) == 1 and v.isascii()
    }
    if any(k.isascii() and not (len(v) == 1 and v.isascii()) for k, v in fixes.items()):
        raise LexiconError("normalise: an ASCII character must map to one ASCII character")
    visible = "".join(
        chr(k) for k, v in ascii_table.items() if chr(k) != v and chr(k).isprintable()
    )
    return Normaliser(fixes, re.compile(f"[{chars}]"), ascii_table, visible)


@dataclass(frozen=True)
class Scanner:
    """Compiled matchers for one language (see the module docstring)."""

    literal_regexes: tuple[re.Pattern[str], ...]  # tries, bucketed by first character
    # The same tries without the terms that start with a character outside the Basic
    # Multilingual Plane (an emoji): the regex engine cannot put such a character in the
    # table it uses to skip positions, and then tests every position against each first
    # character in turn.  Text without such characters has the same matches.
    common_regexes: tuple[re.Pattern[str], ...]
    astral_starts: str  # those first characters ("" when the two are the same)
    literals: Mapping[str, TermInfo]
    pattern_regex: re.Pattern[str] | None  # all patterns, grouped by first character(s)
    # first character(s) of a pattern match → (compiled pattern, source, info)
    patterns_by_first: Mapping[str, tuple[tuple[re.Pattern[str], str, TermInfo], ...]]
    anchored: frozenset[str]  # terms that count only at the start of a message
    inside: Mapping[str, frozenset[str]]  # term → shorter terms inside it (multi-bucket)
    # ``find``'s memo: raw matches → Found
    memo: Memo[tuple[tuple[str, ...], tuple[str, ...]], Found] = field(
        default_factory=lambda: Memo(FOUND_MEMO_SIZE), init=False, repr=False, compare=False
    )

    def find(self, text: str) -> tuple[Found, int]:
        """What ``scan`` finds in ``text``, as a shared ``Found`` plus a bit mask of its
        hits to ignore (anchored terms not at the start of the message).  Only the regex
        scans run per text: what the matches mean is worked out once per distinct list
        of matches (messages share a handful of terms, in few combinations)."""
        literals = tuple(self._literal_matches(text))
        rx = self.pattern_regex
        key = (literals, tuple(rx.findall(text)) if rx is not None else ())
        found = self.memo.results.get(key)
        if found is None:
            found = self._interpret(*key)
            self.memo.add(key, found)
        dropped = 0
        for i in found.anchored:  # rare
            if WORD_CHAR.search(text, 0, text.find(found.hits[i][0])):
                dropped |= 1 << i
        return found, dropped

    def _literal_matches(self, text: str) -> list[str]:
        """What the literal tries match in ``text``, one trie after the other."""
        regexes = self.common_regexes
        if self.astral_starts and not text.isascii() and _ASTRAL.search(text):
            regexes = self.literal_regexes
        if len(regexes) == 1:
            return regexes[0].findall(text)
        found: list[str] = []
        for rx in regexes:
            found += rx.findall(text)
        return found

    def _interpret(self, literals: tuple[str, ...], patterns: tuple[str, ...]) -> Found:
        """``Found`` for these raw matches of the literal tries and ``pattern_regex``."""
        hits = [(term, self.literals[term]) for term in self._distinct(literals)]
        anchored = [i for i, (_, info) in enumerate(hits) if info.anchored]
        for matched, source, info in self._attribute(patterns):
            if source in self.anchored:
                anchored.append(len(hits))
            hits.append((matched, info))
        negatable = [i for i, (_, info) in enumerate(hits) if info.negatable]
        return Found(tuple(hits), tuple(anchored), tuple(negatable))

    def terms(self, text: str) -> Iterable[str]:
        """The distinct literals found in ``text`` (keys of ``literals``), in a fixed
        order, without those inside a longer literal found too (the longer term carries
        their timing and context features).  Anchored terms are not checked here."""
        return self._distinct(self._literal_matches(text))

    def _distinct(self, found: Sequence[str]) -> Iterable[str]:
        """``terms`` of these raw matches of the literal tries."""
        if len(found) < 2:
            return found
        inside = self.inside
        if inside:
            hidden: set[str] = set()
            for term in found:
                parts = inside.get(term)
                if parts:
                    hidden.update(parts)
            if hidden:
                found = [t for t in found if t not in hidden]
        return dict.fromkeys(found)

    def scan(self, text: str) -> list[Hit]:
        """Distinct terms and patterns found in ``text`` with the position of their first
        occurrence (-1 when nobody needs it): ``terms``, then ``pattern_hits``."""
        literals = self.literals
        hits: list[Hit] = []
        for term in self.terms(text):
            info = literals[term]
            start = text.find(term) if info.negatable or info.anchored else -1
            if info.anchored and WORD_CHAR.search(text, 0, start):
                continue
            hits.append((start, term, info))
        if self.pattern_regex is not None:
            hits += self.pattern_hits(text)
        return hits

    def pattern_hits(self, text: str) -> list[Hit]:
        """Distinct patterns found in ``text``, with the position of their first match."""
        hits: list[Hit] = []
        if self.pattern_regex is None:
            return hits
        anchored = self.anchored
        for matched, source, info in self._attribute(self.pattern_regex.findall(text)):
            start = text.find(matched)
            if not (source in anchored and WORD_CHAR.search(text, 0, start)):
                hits.append((start, source, info))
        return hits

    def _attribute(self, matches: Iterable[str]) -> list[tuple[str, str, TermInfo]]:
        """The pattern each of ``matches`` (of ``pattern_regex``) is a match of, as (match,
        pattern, info) for the first match of each distinct pattern."""
        out: list[tuple[str, str, TermInfo]] = []
        seen: set[str] = set()
        by_first = self.patterns_by_first
        for matched in matches:
            # which pattern matched: those with the same first character(s)
            group = by_first.get(matched[:2]) or by_first.get(matched[:1], ())
            for compiled, source, info in group:
                if source in seen or compiled.fullmatch(matched) is None:
                    continue
                seen.add(source)
                out.append((matched, source, info))
                break
        return out


# --------------------------------------------------------------------------- loading


FOUND_MEMO_SIZE = 4096  # distinct match lists remembered per scanner

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def read_yaml(name: str) -> dict[str, Any]:
    """A lexicon file of this package, parsed once (callers must not modify it)."""
    raw = resources.files(PACKAGE).joinpath(name).read_text("utf-8")
    data = yaml.load(raw, Loader=_Loader)  # a safe loader (libyaml when available)
    if not isinstance(data, dict):
        raise LexiconError(f"{name} must be a mapping")
    return data


def _parse_tag(tag: object, where: str) -> tuple[str, str]:
    if not isinstance(tag, str) or tag.count(":") != 1:
        raise LexiconError(f"{where}: tag must look like kind:name, got {tag!r}")
    kind, name = tag.split(":")
    if kind not in KINDS:
        raise LexiconError(f"{where}: unknown feature kind {kind!r}")
    return kind, name


def collect_terms(data: Mapping[str, Any], where: str) -> dict[str, list[Feature]]:
    """term → features, from the ``groups`` list of a lexicon file."""
    groups = data.get("groups")
    if not isinstance(groups, list):
        raise LexiconError(f"{where}: 'groups' must be a list")
    out: dict[str, list[Feature]] = {}
    for i, group in enumerate(groups):
        gw = f"{where} group {i}"
        if not isinstance(group, dict):
            raise LexiconError(f"{gw}: must be a mapping")
        tags = group.get("tag")
        tag_list = tags if isinstance(tags, list) else [tags]
        weight = float(group.get("weight", 1))
        terms = group.get("terms")
        if not isinstance(terms, list):
            raise LexiconError(f"{gw}: 'terms' must be a list")
        feats = [Feature(*_parse_tag(t, gw), weight) for t in tag_list]
        for term in terms:
            if not isinstance(term, str) or not term.strip():
                raise LexiconError(f"{gw}: bad term {term!r}")
            key = term.strip()
            if not key.startswith("re:"):
                key = key.lower()
            bucket = out.setdefault(key, [])
            for f in feats:
                if f not in bucket:
                    bucket.append(f)
    return out


# --------------------------------------------------------------------------- compiling

_WORD_END = "\x00"  # trie marker: a whole-word English literal ends here
_END = "\x01"  # trie marker: a literal ends here (no boundary check)


def _lead(word: str, latin: bool) -> str:
    """Latin terms starting with a letter or digit must start a word: in normalised text
    words follow a space, so such terms get a leading space."""
    return " " + word if latin and word[:1].isalnum() else word


def _trie_regex(words: Sequence[tuple[str, bool]]) -> str:
    """A regex matching any of ``words`` ((text, whole_word) pairs), longest first.

    Whole-word entries get ``\\b`` after their last character when it is a word
    character.  (Word starts: English terms begin with a space, see ``_lead``.)
    """
    root: dict[str, Any] = {}
    for word, whole in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        tail = _WORD_END if whole and (word[-1].isalnum() or word[-1] == "_") else _END
        node[tail] = {}

    def build(node: dict[str, Any], path: str) -> str:
        alts: list[str] = []
        ends: list[str] = []
        for ch in sorted(node):
            if ch == _WORD_END:
                ends.append(r"\b")
            elif ch == _END:
                ends.append("")
            else:
                alts.append(re.escape(ch) + build(node[ch], path + ch))
        # longest first: continue the trie before accepting an end here
        if "" in ends:
            options = alts + ([r"\b"] if r"\b" in ends else [])
            if not options:
                return ""
            return "(?:" + "|".join(options) + ")?"
        options = alts + ends
        if len(options) == 1:
            return options[0]
        return "(?:" + "|".join(options) + ")"

    return build(root, "")


_INHERITED = frozenset({"time", "ctx"})


def _word_aligned(word: str, i: int, j: int) -> bool:
    starts = i == 0 or word[i] == " " or not word[i - 1].isalnum()
    return starts and (j == len(word) or not word[j].isalnum())


def _overrides(features: Sequence[Feature]) -> bool:
    """A term with category or negative evidence of its own (or marked neutral) is there
    to override the shorter terms inside it (fire door vs fire, burnt the toast)."""
    return any(f.kind in ("cat", "neg") or f.name == "neutral" for f in features)


def _inherit(literals: dict[str, list[Feature]], latin: bool) -> None:
    """Give each literal the features of the literals inside it that it would hide.

    Only the longest literal at a position is reported, so "还在里面" would hide the
    "time:now" of "还在" and "is beating" the violence of "beating".  Timing and
    context are always inherited; category and danger evidence only by terms that do
    not override their parts (see ``_overrides``).
    """
    original = {k: list(v) for k, v in literals.items()}
    for word in original:
        kinds = (
            _INHERITED if _overrides(original[word]) else frozenset({"time", "ctx", "cat", "acute"})
        )
        n = len(word)
        for i in range(n):
            for j in range(i + 1, n + 1):
                if j - i == n:
                    continue
                inner = original.get(word[i:j])
                if inner is None or (latin and not _word_aligned(word, i, j)):
                    continue
                for f in inner:
                    if f.kind in kinds and f not in literals[word]:
                        literals[word].append(f)


def _inside(literals: Mapping[str, object]) -> dict[str, frozenset[str]]:
    """term → the shorter literals that are substrings of it."""
    out: dict[str, frozenset[str]] = {}
    longest = max((len(w) for w in literals), default=0)
    for word in literals:
        n = len(word)
        parts = {
            word[i:j]
            for i in range(n)
            for j in range(i + 1, min(n, i + longest) + 1)
            if j - i < n and word[i:j] in literals
        }
        if parts:
            out[word] = frozenset(parts)
    return out


def _contained(
    literals: Mapping[str, object], places: Mapping[str, str], latin: bool
) -> dict[str, tuple[str, ...]]:
    """term → the place words inside it (word-aligned for Latin), itself included, as
    listed in the lexicon (``places`` maps scanner keys to them)."""
    out: dict[str, tuple[str, ...]] = {}
    if not places:
        return out
    longest = max(len(p) for p in places)
    for word in literals:
        found: list[str] = []
        n = len(word)
        for i in range(n):
            for j in range(i + 1, min(n, i + longest) + 1):
                piece = word[i:j]
                if piece in places and (not latin or _word_aligned(word, i, j)):
                    found.append(places[piece])
        if found:
            out[word] = tuple(dict.fromkeys(found))
    return out


_LEADING_GROUP = re.compile(r"^\(\?:([^()\\\[\]{}*+?.^$]+)\)(.*)$", re.DOTALL)
_META = set("\\[](){}.*+?^$|")


def _split_first(source: str) -> list[tuple[str, str]]:
    """(first character, rest) pairs covering a pattern, so that every alternative the
    engine sees starts with a literal character.  ``(?:claim|says|said)REST`` becomes
    ``c`` + ``(?:laim)REST`` and ``s`` + ``(?:ays|aid)REST`` (the body is repeated once per
    distinct first character, not once per word); otherwise the pattern must start with
    a literal or an escaped punctuation mark."""
    m = _LEADING_GROUP.match(source)
    if m:
        by_first: dict[str, list[str]] = {}
        for word in m.group(1).split("|"):
            if not word:
                raise LexiconError(f"pattern {source!r}: empty leading alternative")
            by_first.setdefault(word[0], []).append(re.escape(word[1:]))
        return [
            (first, "(?:" + "|".join(tails) + ")" + m.group(2)) for first, tails in by_first.items()
        ]
    if source[:1] == "\\" and len(source) > 1 and not source[1].isalnum():
        return [(source[1], source[2:])]
    if not source or source[0] in _META:
        raise LexiconError(f"pattern {source!r} must start with a literal character")
    return [(source[0], source[1:])]


def _buckets(
    words: Sequence[tuple[str, bool]], latin: bool
) -> tuple[list[list[tuple[str, bool]]], dict[str, int]]:
    """Words split into buckets by first character, and first character → bucket."""
    firsts = sorted({w[0] for w, _ in words})
    if not firsts:
        return [], {}
    n = 1 if latin or len(firsts) <= 100 else max(2, round(len(firsts) / 100))
    groups: list[list[tuple[str, bool]]] = [[] for _ in range(n)]
    index = {ch: i * n // len(firsts) for i, ch in enumerate(firsts)}
    for w in words:
        groups[index[w[0][0]]].append(w)
    return groups, index


def trie_regexes(
    words: Sequence[tuple[str, bool]], latin: bool
) -> tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]:
    """Compiled tries of ``words`` ((text, whole_word) pairs), bucketed by first character
    (``latin``: one bucket); and the same without the words that start outside the Basic
    Multilingual Plane (see ``Scanner.common_regexes``)."""
    groups, _ = _buckets(words, latin)
    tries: list[re.Pattern[str]] = []
    common: list[re.Pattern[str]] = []
    for group in groups:
        if not group:
            continue
        tries.append(re.compile(_trie_regex(group)))
        rest = [w for w in group if not _is_astral(w[0][0])]
        if len(rest) == len(group):
            common.append(tries[-1])
        elif rest:
            common.append(re.compile(_trie_regex(rest)))
    return tuple(tries), tuple(common)


def _is_astral(ch: str) -> bool:
    return ord(ch) > 0xFFFF


def compile_scanner(
    terms: Mapping[str, Sequence[Feature]],
    latin: bool,
    normalise: Normaliser,
    places: Sequence[str] = (),
) -> Scanner:
    """Build one scanner.  Literals go through ``normalise`` like the text will; with
    ``latin`` they start at a word start and end at a word end (unless ``word*``), and
    patterns starting with a letter or digit start at a word start.

    ``places`` are place words for the location step: they are matched like literals
    (without features), and every term knows the place words inside it, so a place is
    not lost when a longer term hides it (楼道 in 楼道充电)."""
    literals: dict[str, list[Feature]] = {}
    patterns: list[tuple[str, list[Feature]]] = []
    trie_words: list[tuple[str, bool]] = []
    anchored: set[str] = set()
    for raw, feats in terms.items():
        if raw.startswith("re:"):
            source = raw[3:].strip()
            at_start = source.startswith("^")
            source = source.removeprefix("^")
            try:
                compiled = re.compile(source)
            except re.error as exc:
                raise LexiconError(f"bad pattern {source!r}: {exc}") from exc
            if compiled.groups:
                raise LexiconError(f"pattern {source!r} must use (?:...) groups only")
            patterns.append((source, list(feats)))
            if at_start:
                anchored.add(source)
            continue
        at_start = raw.startswith("^")
        term = raw.removeprefix("^")
        whole = latin and not term.endswith("*")
        word = _lead(normalise(term.rstrip("*") if latin else term).strip(), latin)
        if not word.strip():
            raise LexiconError(f"empty term {raw!r}")
        if at_start:
            anchored.add(word)
        if word in literals:
            literals[word].extend(f for f in feats if f not in literals[word])
        else:
            literals[word] = list(feats)
            trie_words.append((word, whole))
    place_keys: dict[str, str] = {}  # scanner key → place word as listed
    for place in places:
        key = _lead(normalise(place).strip(), latin)
        if not key.strip():
            continue
        place_keys[key] = place
        if key not in literals:
            literals[key] = []
            trie_words.append((key, latin))
    _inherit(literals, latin)
    contained = _contained(literals, place_keys, latin)
    by_first: dict[str, list[tuple[re.Pattern[str], str, TermInfo]]] = {}
    pattern_regex = None
    if patterns:
        # Alternatives grouped by first character, " (?:c(?:rest1|rest2)|…)", keep the
        # branches short and start with literals (the engine skips other positions).
        rests: dict[str, list[str]] = {}
        for source, feats in patterns:
            info = TermInfo.of(feats)
            for first, rest in _split_first(source):
                key = _lead(first, latin)
                rests.setdefault(key, []).append(f"(?:{rest})")
                by_first.setdefault(key, []).append(
                    (re.compile(re.escape(key) + f"(?:{rest})"), source, info)
                )

        def group(key: str) -> str:
            return "(?:" + "|".join(rests[key]) + ")"

        spaced_keys = [k for k in rests if k.startswith(" ")]
        alts = [re.escape(k) + group(k) for k in rests if k not in spaced_keys]
        if spaced_keys:
            inner = "|".join(re.escape(k[1:]) + group(k) for k in spaced_keys)
            alts.append(f" (?:{inner})")
        pattern_regex = re.compile("|".join(alts))
    literal_regexes, common_regexes = trie_regexes(trie_words, latin)
    return Scanner(
        literal_regexes=literal_regexes,
        common_regexes=common_regexes,
        astral_starts="".join(sorted({w[0] for w, _ in trie_words if _is_astral(w[0])})),
        literals={
            w: TermInfo.of(f, contained.get(w, ()), w in anchored) for w, f in literals.items()
        },
        pattern_regex=pattern_regex,
        patterns_by_first={k: tuple(v) for k, v in by_first.items()},
        anchored=frozenset(anchored),
        inside=_inside(literals) if len(literal_regexes) > 1 else {},
    )


def categories_used(scanner: Scanner) -> set[str]:
    cats = {c for info in scanner.literals.values() for c, _ in info.cats}
    for group in scanner.patterns_by_first.values():
        cats.update(c for _, _, info in group for c, _ in info.cats)
    return cats
