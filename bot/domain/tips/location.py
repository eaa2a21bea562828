"""Where it happens: an exact substring of the message (guideline §4).

The text is first cut into *tokens* by a few compiled expressions (each starts with a
literal character or a character class, so the regex engine skips other positions):
numbers with their suffix (5号楼, 2单元, 22楼, 1203, 9-1602, 8F, 3rd), Chinese numerals
with a suffix (一楼, 十二号楼), letter codes (B2, A座) and the place words of both lexicons
(楼道, 门口, bike shed, Block, floor, Rd …).  Python then turns tokens into *atoms*:
buildings (Block 3, No.9), units, floors (3rd floor, floor 9), rooms, facilities with
their modifiers (north gate, fire stairwell), named places (Lianhua supermarket,
联华超市, 128 Wuning Rd, 武宁路) and direction words (门口, 后面 …, only after another
atom).  Atoms that touch, or are joined by a connector (的/那个 in Chinese; of/at/in/by,
"on" before a road or floor, "between … and" in English), form one span; each span is
scored by how specific it is and the best one wins (earliest on ties).  Spans made only
of direction words, vague places (楼上, next door) and places someone went *towards*
are not used.  Vocabulary comes from the ``location`` sections of the lexicons.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from operator import itemgetter
from typing import Any

from bot.domain.tips.lexicon import LexiconError, read_yaml

# Scores of atom kinds when choosing between spans.
_KIND_SCORE = {
    "bld": 3.0,
    "room": 2.5,
    "floor": 2.0,
    "unit": 1.0,
    "fac": 1.5,
    "name": 2.0,
    "road": 1.0,
    "dir": 0.0,
}
_ANCHORS = frozenset(k for k, v in _KIND_SCORE.items() if v > 0)

_DIGITS = re.compile(  # starts with one character class so the engine can skip ahead
    r"[0-9０-９][0-9０-９]*(?:-[0-9０-９]+){0,2}"
    r"(?:号楼|号院|号门|号房|号电梯|号梯|单元|栋|幢|座|区|期|楼|层|室|"
    r"(?:st|nd|rd|th)(?![A-Za-z])|/?[fF](?![A-Za-z0-9]))?"
)
_NUMERALS = re.compile(
    r"[一二三四五六七八九十两][一二三四五六七八九十两零〇]{0,3}(?:号楼|单元|楼|层)"
)

_BLD_SUFFIX = ("号楼", "号院", "号门", "栋", "幢", "座", "区", "期")
_FLOOR_BAD_NEXT = "下上道梯顶房"
_FLOOR_BAD_PREV = "同这那每整哪"
_NAME_STOP = set(
    "的了在是有个那这和跟把被到从往我你他她它们就都也还又去来说里上下边家走跑开骑过穿绕问带半一马"
)
_ROAD_BAD_NEXT = "边口上面过旁"
_HEAD_BAD_NEXT = "卡账户"

# After a room-like number: words that make it an amount, a time, a year … not a room.
_NOT_ROOM_AFTER = (
    "元 块 万 千 百 年 岁 米 公里 个 人 次 辆 号 路 弄 多 余 左右 平 斤 小时 楼 层 户 栋 幢 单元 "
    "yuan rmb kuai k w pm am p.m a.m min hour hr day week month year car people person time m "
    "km kg % cm mm g ml s"
).split()
_NOT_ROOM_AFTER_CJK = tuple(w for w in _NOT_ROOM_AFTER if not w.isascii())
_NOT_ROOM_AFTER_LATIN = frozenset(w for w in _NOT_ROOM_AFTER if w.isascii())
# Before a room-like number: words that make it an amount or a phone number.
_NOT_ROOM_BEFORE = tuple(
    "¥ $ ￥ rmb about over only paid pay cost lost worth since call dial phone tel 第 约 共 花了 "
    "付了 被骗 骗了 转了 损失 价值 打 拨 报 拨打".split()
)
# Context that makes a room-like number a room even when it looks like a year or amount.
_ROOM_BEFORE = tuple(
    "room flat apt apartment unit suite # inside renting 楼上 楼下 隔壁 对门 对面 住在 住 户 室 "
    "楼 栋 幢 单元 座 号".split()
)
_WORD_AFTER = re.compile(r"[a-z%.]+")
_NUM_AFTER = re.compile(r"[ ]?#?[ ]?\d{1,3}[A-Za-z]?(?![\w])")
_LETTER_AFTER = re.compile(r" [A-Z](?![\w])")
_FLOOR_NUM_AFTER = re.compile(r"\s+\d{1,2}(?![\w])")


@dataclass(frozen=True)
class LocationRules:
    zh_kinds: Mapping[str, frozenset[str]]  # Chinese place word → its roles
    en_kind: Mapping[str, str]  # English place word → its role (see _primary_kind)
    en_floor_after: re.Pattern[str]
    en_mods: frozenset[str]
    en_joiners: frozenset[str]  # gaps allowed between two English atoms, normalised
    en_between_places: frozenset[str]  # "shelf next to the lockers": both are the place
    zh_glue: frozenset[str]
    travel: tuple[str, ...]  # lower-case words a travel destination follows
    vague: frozenset[str]
    articles: frozenset[str]  # words never part of a place name (the, at, our …)
    en_compounds: frozenset[str]  # "bank card": a place word before these is no place


def _alt(words: Iterable[str]) -> str:
    items = sorted({w for w in words if w}, key=len, reverse=True)
    return "|".join(re.escape(w) for w in items)


def _words(section: Mapping[str, Any], key: str) -> list[str]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LexiconError(f"location.{key} must be a list of strings (quote yes/no/on/off)")
    return value


def _kinds(groups: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for kind, words in groups.items():
        for w in words:
            out.setdefault(w, set()).add(kind)
    return {w: frozenset(k) for w, k in out.items()}


def _primary_kind(kinds: frozenset[str]) -> str:
    """One role per English place word: a shop-like head that is also a facility
    ("supermarket") is "headfac"; otherwise the first of a fixed priority."""
    if "head" in kinds:
        return "headfac" if "fac" in kinds else "head"
    for kind in ("fac", "bldword", "ordinal", "floorword", "floor", "brand", "road"):
        if kind in kinds:
            return kind
    raise LexiconError(f"no location role in {sorted(kinds)}")


@cache
def rules() -> LocationRules:
    zh = read_yaml("lexicon_zh.yaml").get("location")
    en = read_yaml("lexicon_en.yaml").get("location")
    if not isinstance(zh, dict) or not isinstance(en, dict):
        raise LexiconError("both lexicons need a 'location' mapping")
    zh_kinds = _kinds(
        {
            "fac": _words(zh, "facilities"),
            "dir": _words(zh, "directions"),
            "head": _words(zh, "named_heads"),
            "road": _words(zh, "road_heads"),
            "bldsuffix": ["座", "栋", "幢"],
        }
    )
    en_fac = [w.lower() for w in _words(en, "facilities")]
    en_fac += [w + "s" for w in en_fac if not w.endswith("s")]
    en_kinds = _kinds(
        {
            "bldword": [w.lower() for w in _words(en, "building_words")],
            "fac": en_fac,
            "floorword": [w.lower() for w in _words(en, "floor_words")],
            "ordinal": [w.lower() for w in _words(en, "floor_ordinals")],
            "road": [w.lower() for w in _words(en, "road_heads")],
            "head": [w.lower() for w in _words(en, "named_heads")],
            "brand": [w.lower() for w in _words(en, "brands")],
            "floor": ["b1", "b2", "b3", "b4"],
        }
    )
    en_kind = {w: _primary_kind(k) for w, k in en_kinds.items()}
    floor_words = _alt(w.lower() for w in _words(en, "floor_words"))
    joiners = _words(en, "joiners")
    travel_words = _words(en, "not_here_before") + _words(zh, "not_here_before")
    return LocationRules(
        zh_kinds=zh_kinds,
        en_kind=en_kind,
        en_floor_after=re.compile(rf"\s+(?:{floor_words})s?\b"),
        en_mods=frozenset(w.lower() for w in _words(en, "modifiers")),
        en_joiners=frozenset(
            [""] + [j.lower() for j in joiners] + [j.lower() + " the" for j in joiners]
        ),
        en_between_places=frozenset(
            w.lower() + t for w in _words(en, "between_places") for t in ("", " the")
        ),
        zh_glue=frozenset(_words(zh, "glue")),
        travel=tuple(w.lower() for w in travel_words),
        vague=frozenset(w.lower() for w in _words(en, "vague") + _words(zh, "vague")),
        articles=frozenset(w.lower() for w in _words(en, "not_in_names")),
        en_compounds=frozenset(w.lower() for w in _words(en, "compound_after")),
    )


# --------------------------------------------------------------------------- atoms
# An atom is a tuple (start, end, kind); plain tuples keep this hot path cheap.

Atom = tuple[int, int, str]
_DIGIT_CHARS = frozenset("0123456789０１２３４５６７８９")
_JUNK_BEFORE = frozenset("0123456789.,:/")
_JUNK_AFTER = frozenset("0123456789%")
_DECIMAL_MARKS = frozenset(".,:")


def _room_ok(text: str, start: int, end: int) -> bool:
    digits = text[start:end]
    if "-" in digits:  # 9-1602, 3-2-1201 (but not 15-20)
        return 3 <= len(digits.rsplit("-", 1)[1]) <= 4
    core = digits.rstrip("室号房")
    if not core.isdigit() or not 3 <= len(core) <= 4:
        return False
    before = text[max(0, start - 12) : start].lower()
    after = text[end : end + 8].lower()
    b1 = before[-1:]
    if b1 in _JUNK_BEFORE or (b1 == " " and before[-2:-1] in _JUNK_BEFORE and len(before) > 1):
        return False  # part of a longer number, a time, an amount or a phone
    a1 = after[:1]
    if a1 in _JUNK_AFTER or (a1 == " " and after[1:2] in _JUNK_AFTER and len(after) > 1):
        return False
    if a1 in _DECIMAL_MARKS and after[1:2].isdigit():
        return False  # 12.50, 1,200, 10:30
    if b1.isascii() and b1.isalpha():
        return False  # glued to a word: a code, not a room
    head = before.rstrip(" ")
    strong = head.endswith(_ROOM_BEFORE)
    if not strong and not digits.endswith(("室", "房")):
        rest = after.lstrip(" ")
        if rest.startswith(_NOT_ROOM_AFTER_CJK):
            return False
        m = _WORD_AFTER.match(rest)
        if m is not None and m.group().rstrip(".") in _NOT_ROOM_AFTER_LATIN:
            return False
    if not strong and head.endswith(_NOT_ROOM_BEFORE):
        return False
    n = int(core)
    floor, room = divmod(n, 100)
    if not (1 <= floor <= 60 and 1 <= room <= 40):
        return False
    return not (len(core) == 4 and 1950 <= n <= 2039 and not strong)


def _number_atom(text: str, start: int, end: int) -> Atom | None:
    token = text[start:end]
    last = token[-1]
    if last in _DIGIT_CHARS:
        if ("-" in token or 3 <= len(token) <= 4) and _room_ok(text, start, end):
            return (start, end, "room")
        if token in ("1", "2", "3", "4") and start > 0 and text[start - 1] in "Bb":
            prev = text[start - 2 : start - 1]
            if not (prev.isascii() and prev.isalnum()):
                return (start - 1, end, "floor")  # basement level: B2, 地下车库B2
        return None
    if token.endswith(("号电梯", "号梯")):
        return (start, end, "fac")
    if token.endswith(_BLD_SUFFIX):
        if token[0] in _DIGIT_CHARS or token.endswith(("号楼", "号院", "号门")):
            return (start, end, "bld")
        return None
    if last in "楼层":
        if (
            text[end : end + 1] in _FLOOR_BAD_NEXT_SET
            or text[start - 1 : start] in _FLOOR_BAD_PREV_SET
        ):
            return None
        return (start, end, "floor")
    if token.endswith("单元"):
        return (start, end, "unit")
    if last in "室房":
        return (start, end, "room")
    if last in "fF":
        return (start, end, "floor")
    if token.endswith(("st", "nd", "rd", "th")):
        return (start, end, "ordnum")
    return None


_FLOOR_BAD_NEXT_SET = frozenset(_FLOOR_BAD_NEXT)
_FLOOR_BAD_PREV_SET = frozenset(_FLOOR_BAD_PREV)
_ROAD_BAD_NEXT_SET = frozenset(_ROAD_BAD_NEXT)
_HEAD_BAD_NEXT_SET = frozenset(_HEAD_BAD_NEXT)
_ROAD_NUMBER = re.compile(r"[0-9０-９]{1,4}(?:号|弄)")


def _zh_name_start(text: str, start: int, low: int, high: int) -> int | None:
    """Start of a Chinese name of low..high characters ending at ``start``."""
    i = start
    while i > 0 and start - i < high:
        ch = text[i - 1]
        if not ("\u4e00" <= ch <= "\u9fff") or ch in _NAME_STOP:
            break
        i -= 1
    return i if start - i >= low else None


def _cap_name_start(text: str, start: int, max_words: int, number: bool) -> int | None:
    """Start of 1..max_words capitalised words right before ``start`` (articles and
    prepositions excluded); with ``number`` a house number may precede them."""
    if start < 2 or text[start - 1] != " ":
        return None
    window = text[max(0, start - 60) : start - 1]
    words = window.split(" ")
    articles = rules().articles
    taken = 0
    pos = start - 1
    for w in reversed(words):
        if taken >= max_words or not w or not w[0].isupper() or w.lower() in articles:
            if number and taken and w.isdigit() and len(w) <= 4:
                return pos - len(w)
            break
        if not all(c.isalnum() or c in "'’&.-" for c in w):
            break
        taken += 1
        pos -= len(w) + 1
    return pos + 1 if taken else None


def _mod_start(low: str, start: int, mods: frozenset[str]) -> int:
    """Start of up to two modifier words (north, fire, bike …) right before ``start``."""
    pos = start
    for _ in range(2):
        if pos < 2:
            break
        sep = low[pos - 1]
        if sep != " " and sep != "-":
            break
        space = low.rfind(" ", 0, pos - 1)
        dash = low.rfind("-", space + 1, pos - 1)  # a dash after that space, if any
        word_start = (dash if dash >= 0 else space) + 1
        if low[word_start : pos - 1] not in mods:
            break
        pos = word_start
    return pos


def place_words(r: LocationRules | None = None) -> tuple[list[str], list[str]]:
    """The Chinese and English place words, for the lexicon scanners to find."""
    r = r or rules()
    return list(r.zh_kinds), list(r.en_kind)


def find_atoms(
    text: str,
    exclude: Sequence[tuple[int, int]] = (),
    zh_words: Collection[str] = (),
    en_words: Collection[str] = (),
    r: LocationRules | None = None,
) -> list[Atom]:
    """Atoms in ``text``: numbers (found here) and the given place words (found by the
    lexicon scan of the message) at every place they occur."""
    if r is None:
        r = rules()
    atoms: list[Atom] = []
    append = atoms.append
    pos = 0
    for token in _DIGITS.findall(text):
        start = text.find(token, pos)
        end = pos = start + len(token)
        if len(token) < 3 and token[-1] in _DIGIT_CHARS:
            # a bare 1–2 digit number is no place, except a basement level (B2)
            if start and len(token) == 1 and token in "1234" and text[start - 1] in "Bb":
                prev = text[start - 2 : start - 1]
                if not (prev.isascii() and prev.isalnum()):
                    append((start - 1, end, "floor"))
            continue
        atom = _number_atom(text, start, end)
        if atom is not None:
            append(atom)
    if not text.isascii():
        m = _NUMERALS.search(text)  # rare: search, not finditer (cheaper without a match)
        while m is not None:
            atom = _number_atom(text, m.start(), m.end())
            if atom is not None:
                append(atom)
            m = _NUMERALS.search(text, m.end())
        masked = text
        if zh_words:
            for s, e, _ in atoms:
                if text[e - 1] == "楼":
                    # hide "5号楼" so a word cannot start inside it (7号楼顶楼: 楼顶 would
                    # otherwise hide 顶楼)
                    masked = masked[:s] + " " * (e - s) + masked[e:]
        kinds_of = r.zh_kinds
        for word in zh_words:
            kinds = kinds_of.get(word)
            if kinds is None:
                continue
            size = len(word)
            i = masked.find(word)
            while i >= 0:
                atom = _zh_word_atom(text, i, i + size, kinds)
                if atom is not None:
                    append(atom)
                i = masked.find(word, i + size)
    if en_words:
        low = text.lower()
        if len(low) == len(text):
            en_kind = r.en_kind
            compounds, mods = r.en_compounds, r.en_mods
            for word in en_words:
                kind = en_kind.get(word)
                if kind is None:
                    continue
                size = len(word)
                i = low.find(word)
                while i >= 0:
                    end = i + size
                    if (
                        (i == 0 or not low[i - 1].isalnum())
                        and (not word[-1].isalnum() or not low[end : end + 1].isalnum())
                        and low[end + 1 : end + 12].split(" ", 1)[0] not in compounds
                    ):
                        if kind == "fac":
                            append((_mod_start(low, i, mods), end, "fac"))
                        else:
                            atom = _en_word_atom(text, low, i, end, kind, r)
                            if atom is not None:
                                append(atom)
                    i = low.find(word, end)
    if exclude:
        atoms = [a for a in atoms if not any(s < a[1] and a[0] < e for s, e in exclude)]
    if len(atoms) <= 2:  # the usual cases, by hand
        if len(atoms) < 2:
            return atoms if not atoms or atoms[0][2] != "ordnum" else []
        a, b = atoms
        if b[0] < a[0] or (b[0] == a[0] and b[1] > a[1]):
            a, b = b, a
        if b[0] < a[1]:  # overlapping: the later one is dropped
            return [a] if a[2] != "ordnum" else []
        if a[2] != "ordnum" and b[2] != "ordnum":
            return [a, b]
        return [x for x in (a, b) if x[2] != "ordnum"]
    # by start, longest first (two stable sorts with C keys: equal atoms keep their order)
    atoms.sort(key=_END_OF, reverse=True)
    atoms.sort(key=_START_OF)
    out: list[Atom] = []
    reach = -1
    for a in atoms:  # longest first at each start; later overlapping atoms are dropped
        if a[0] >= reach:
            reach = a[1]
            if a[2] != "ordnum":  # "3rd" alone is no place
                out.append(a)
    return out


_START_OF = itemgetter(0)
_END_OF = itemgetter(1)
_KIND_OF = itemgetter(2)


def _zh_word_atom(text: str, start: int, end: int, kinds: frozenset[str]) -> Atom | None:
    if "head" in kinds and text[end : end + 1] not in _HEAD_BAD_NEXT_SET:
        s = _zh_name_start(text, start, 2, 4)
        if s is not None:
            return (s, end, "name")
    if "road" in kinds:
        s = _zh_name_start(text, start, 2, 3)
        if s is not None and text[end : end + 1] not in _ROAD_BAD_NEXT_SET:
            m = _ROAD_NUMBER.match(text, end)
            return (s, m.end() if m else end, "road")
    if "fac" in kinds:
        if text[start - 2 : start] == "小区":  # 小区游泳池: the compound's own facility
            start -= 2
        return (start, end, "fac")
    if "dir" in kinds:
        return (start, end, "dir")
    if (
        "bldsuffix" in kinds
        and start > 0
        and text[start - 1].isascii()
        and text[start - 1].isalpha()
    ):
        return (start - 1, end, "bld")  # A座, B栋
    return None


def _en_word_atom(
    text: str, low: str, start: int, end: int, kind: str, r: LocationRules
) -> Atom | None:
    if kind == "head" or kind == "headfac":
        s = _cap_name_start(text, start, 3, False)
        if s is not None:
            return (s, end, "name")
        if kind == "headfac":
            return (_mod_start(low, start, r.en_mods), end, "fac")
        return None
    if kind == "bldword":
        m = _NUM_AFTER.match(text, end)
        if m is not None:
            return (start, m.end(), "bld")
        if low[start:end] in ("building", "block", "tower", "villa"):
            m = _LETTER_AFTER.match(text, end)
            if m is not None:
                return (start, m.end(), "bld")
        return None
    if kind == "ordinal":
        m = r.en_floor_after.match(low, end)
        return (start, m.end(), "floor") if m is not None else None
    if kind == "floorword":
        m = _FLOOR_NUM_AFTER.match(text, end)
        if m is not None:
            return (start, m.end(), "floor")
        # "3rd floor": the ordinal number is a separate token just before
        b = _ORDNUM_BEFORE.search(low, max(0, start - 8), start)
        if b is not None:
            plural = 1 if low[end : end + 1] == "s" and not low[end + 1 : end + 2].isalpha() else 0
            return (b.start(), end + plural, "floor")
        return None
    if kind == "floor":
        return (start, end, "floor")
    if kind == "brand":
        return (start, end, "name")
    if kind == "road":
        s = _cap_name_start(text, start, 2, True)
        return (s, end, "road") if s is not None else None
    return None


_ORDNUM_BEFORE = re.compile(r"\d{1,2}(?:st|nd|rd|th)\s+$")


# --------------------------------------------------------------------------- spans


def _joinable(text: str, a: Atom, b: Atom, between: list[bool], r: LocationRules) -> bool:
    gap = text[a[1] : b[0]]
    if not gap:
        return True
    if len(gap) > 20:
        return False
    if gap in r.zh_glue and (_is_cjk(text[a[1] - 1]) or _is_cjk(text[b[0]])):
        return True
    if b[2] == "dir":
        return False
    joins, between[0] = _joins(gap, a[2], b[2], between[0])
    return joins


@lru_cache(maxsize=2048)
def _joins(gap: str, a: str, b: str, between: bool) -> tuple[bool, bool]:
    """Do atoms of kinds ``a`` and ``b`` separated by ``gap`` (not glue) form one place,
    and is a "between … and" open after them (``between``: one is open before)?"""
    r = rules()
    words = gap.lower().split()
    if words == ["between"] and b == "floor":
        return True, True
    if words == ["and"] and between and b == "floor":
        return True, False
    joined = " ".join(words)
    if joined in r.en_between_places and gap[:1].isspace():
        return a != "room" and b != "dir", between
    if joined in r.en_joiners and (gap[:1].isspace() or not gap.strip()):
        word = words[0] if words else ""
        if word == "on":
            return b in ("road", "floor"), between
        if gap.strip().lower() in r.en_between_places:
            return a != "room", between
        return not (word in ("in", "at", "by") and a == "room"), between
    return False, between


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _spans(text: str, atoms: Sequence[Atom], r: LocationRules) -> list[tuple[float, int, int]]:
    """(score, -start, end) of each run of joinable atoms that contains an anchor."""
    spans: list[tuple[float, int, int]] = []
    i = 0
    n = len(atoms)
    scores = _KIND_SCORE
    between = [False]  # a "between … and" is open (see _joinable), per run of atoms
    while i < n:
        first = i
        a = atoms[i]
        between[0] = False
        while i + 1 < n:
            b = atoms[i + 1]
            # touching atoms need no look at the gap
            if a[1] != b[0] and not _joinable(text, a, b, between, r):
                break
            a = b
            i += 1
        if first == i:  # a single atom (the usual case)
            i += 1
            start, end, kind = a
            score = scores[kind]
            if score <= 0 or text[start:end].lower() in r.vague:
                continue  # no anchor, or a vague place on its own
            road_only = kind == "road"
        else:
            group = atoms[first : i + 1]
            i += 1
            while group and group[0][2] == "dir":  # direction words only follow a place
                group = group[1:]
            if not group:
                continue
            kinds = set(map(_KIND_OF, group))
            score = 0.0
            for k in kinds:
                score += scores[k]
            if score <= 0:
                continue  # no anchor
            start, end = group[0][0], group[-1][1]
            if len(group) == 1 and text[start:end].lower() in r.vague:
                continue
            score += 0.3 * (len(group) - 1)
            road_only = len(kinds) == 1 and "road" in kinds
        if road_only:
            score -= 0.5
        before = text[start - 20 if start > 20 else 0 : start].lower().rstrip()
        if before.endswith(" the"):
            before = before[:-4].rstrip()
        if before.endswith(r.travel):
            score -= 3.0
        spans.append((score, -start, end))
    return spans


def best_location(
    text: str,
    exclude: Sequence[tuple[int, int]] = (),
    zh_words: Collection[str] = (),
    en_words: Collection[str] = (),
) -> str | None:
    """The most specific place named in ``text`` (an exact substring), or None.

    ``zh_words`` / ``en_words`` are the place words the lexicon scan found in it."""
    r = rules()
    atoms = find_atoms(text, exclude, zh_words, en_words, r)
    if not atoms:
        return None
    spans = _spans(text, atoms, r)
    if not spans:
        return None
    score, neg_start, end = max(spans) if len(spans) > 1 else spans[0]
    if score <= 0:
        return None
    s = text[-neg_start:end].strip(" \t\r\n,.;:!?，。；：！？、'\"")
    return s or None
