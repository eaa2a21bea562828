"""Synthetic residents' reports, written for the benchmarks (not taken from any labelled set):
a few report templates and places, in English and Chinese, filled with random buildings,
floors, units and garages. Used by ``bench_intake`` and ``bench_e2e``."""

from __future__ import annotations

import random

PLACES_EN = [
    "building {b}",
    "the bike shed of building {b}",
    "floor {f} of building {b}",
    "the B{g} garage",
    "the east gate",
    "unit {u} of building {b}",
]
PLACES_ZH = [
    "{b}号楼",
    "{b}号楼{u}单元",
    "{b}号楼{f}楼楼道",
    "地下车库B{g}",
    "东门门口",
    "{b}号楼自行车棚",
]
REPORTS_EN = [
    "Someone is trying the door handles on {p}, a man in a grey hoodie",
    "The fire escape on {p} is blocked by old furniture and boxes",
    "My e-bike battery was stolen from {p} last night",
    "Two men are fighting outside {p}, one is bleeding",
    "A caller claiming to be from the gas company wants residents to pay a fee by transfer at {p}",
    "There is a strong smell of gas on {p}",
    "People gambling with big stakes in the basement of {p}, lookouts at the door",
]
REPORTS_ZH = [
    "{p}有人挨家挨户拧门把手，穿灰色卫衣",
    "{p}的消防通道被旧家具和纸箱堵住了",
    "昨晚{p}的电瓶车电池被偷了",
    "{p}有两个人在打架，其中一个流血了",
    "有人冒充燃气公司在{p}要求居民转账交费",
    "{p}燃气味很重",
    "{p}地下室有人聚众赌博，门口有人放风",
]
# When it was seen: makes reports distinct without looking machine-made.
WHEN_EN = "(seen at {h:02d}:{m:02d})"
WHEN_ZH = "（{h}点{m:02d}分看到的）"


def report(rnd: random.Random, zh: bool, *, when: bool = False) -> str:
    """One report, English or Chinese, about a random place (and time, if ``when``)."""
    values = {
        "b": rnd.randint(1, 30),
        "f": rnd.randint(1, 33),
        "u": rnd.randint(1, 6),
        "g": rnd.randint(1, 3),
    }
    place = rnd.choice(PLACES_ZH if zh else PLACES_EN).format(**values)
    text = rnd.choice(REPORTS_ZH if zh else REPORTS_EN).format(p=place)
    if when:
        stamp = (WHEN_ZH if zh else WHEN_EN).format(h=rnd.randint(0, 23), m=rnd.randint(0, 59))
        text = f"{text}{stamp}" if zh else f"{text} {stamp}"
    return text


def messages(n: int, seed: int = 7) -> list[str]:
    """``n`` reports, alternately English and Chinese (repeats possible)."""
    rnd = random.Random(seed)
    return [report(rnd, i % 2 == 1) for i in range(n)]


def unique_messages(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct reports (with the time they were seen), alternately English and Chinese."""
    rnd = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        text = report(rnd, len(out) % 2 == 1, when=True)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
