"""Metrics for the tip extractor against labelled JSONL (the format of dev.jsonl).

Each line: {"id", "lang", "text", "is_tip", "category", "emergency", "location",
"identifiers"}.  Figures:

* tip precision / recall / F1 (positive class: is_tip)
* category accuracy on true tips (a missed tip counts as wrong)
* emergency precision / recall over all messages
* identifier F1, micro over all identifiers of all messages (tips and non-tips)
* location overlap: mean over true tips that have a gold location of the character-level
  F1 (Dice) between the predicted and the gold span positions; a missing prediction (or a
  missed tip) scores 0.  Both are substrings; when a string occurs more than once, the
  occurrences that overlap best are compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Prediction:
    is_tip: bool
    category: str | None
    emergency: bool
    location: str | None
    identifiers: tuple[str, ...]


@dataclass
class Report:
    n: int = 0
    figures: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    return records


def _occurrences(text: str, s: str) -> list[range]:
    out: list[range] = []
    if not s:
        return out
    i = text.find(s)
    while i >= 0:
        out.append(range(i, i + len(s)))
        i = text.find(s, i + 1)
    return out


def span_f1(text: str, predicted: str | None, gold: str) -> float:
    """Character-level F1 (Dice) between predicted and gold substrings of ``text``."""
    if not predicted:
        return 0.0
    best = 0.0
    for g in _occurrences(text, gold) or [range(0, 0)]:
        for p in _occurrences(text, predicted):
            inter = len(set(g) & set(p))
            total = len(g) + len(p)
            if total:
                best = max(best, 2 * inter / total)
    return best


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate(
    records: Sequence[dict[str, Any]],
    predict: Callable[[str, str | None], Prediction],
    collect_errors: bool = False,
) -> Report:
    tp = fp = fn = 0
    cat_ok = cat_n = 0
    em_tp = em_fp = em_fn = 0
    id_tp = id_fp = id_fn = 0
    loc_sum = 0.0
    loc_n = 0
    rep = Report(n=len(records))
    for r in records:
        text = str(r["text"])
        pred = predict(text, r.get("lang"))
        gold_tip = bool(r["is_tip"])
        problems: list[str] = []
        if pred.is_tip and gold_tip:
            tp += 1
        elif pred.is_tip:
            fp += 1
            problems.append("false tip")
        elif gold_tip:
            fn += 1
            problems.append("missed tip")
        if gold_tip:
            cat_n += 1
            if pred.category == r["category"]:
                cat_ok += 1
            elif pred.is_tip:
                problems.append(f"category {pred.category} != {r['category']}")
        gold_em = bool(r["emergency"])
        if pred.emergency and gold_em:
            em_tp += 1
        elif pred.emergency:
            em_fp += 1
            problems.append("false emergency")
        elif gold_em:
            em_fn += 1
            problems.append("missed emergency")
        gold_ids = set(r["identifiers"])
        pred_ids = set(pred.identifiers)
        id_tp += len(gold_ids & pred_ids)
        id_fp += len(pred_ids - gold_ids)
        id_fn += len(gold_ids - pred_ids)
        if gold_ids != pred_ids and (gold_ids or pred_ids):
            problems.append(f"identifiers {sorted(pred_ids)} != {sorted(gold_ids)}")
        gold_loc = r["location"]
        if gold_tip and gold_loc:
            loc_n += 1
            overlap = span_f1(text, pred.location, gold_loc)
            loc_sum += overlap
            if overlap < 1.0:
                problems.append(f"location {pred.location!r} != {gold_loc!r} ({overlap:.2f})")
        elif pred.is_tip and gold_tip and pred.location and not gold_loc:
            problems.append(f"location {pred.location!r} != None")
        if collect_errors and problems:
            rep.errors.append(
                f"{r.get('id', '?')} [{r.get('lang', '?')}] {'; '.join(problems)}\n    {text}"
            )
    p = _ratio(tp, tp + fp)
    rc = _ratio(tp, tp + fn)
    ep = _ratio(em_tp, em_tp + em_fp)
    er = _ratio(em_tp, em_tp + em_fn)
    ip = _ratio(id_tp, id_tp + id_fp)
    ir = _ratio(id_tp, id_tp + id_fn)
    rep.figures = {
        "tip_f1": _f1(p, rc),
        "tip_precision": p,
        "tip_recall": rc,
        "category_accuracy": _ratio(cat_ok, cat_n),
        "emergency_precision": ep,
        "emergency_recall": er,
        "identifier_f1": _f1(ip, ir) if (id_tp + id_fp + id_fn) else 1.0,
        "location_overlap": _ratio(loc_sum, loc_n),
    }
    return rep


def throughput(
    texts: Iterable[str], run: Callable[[str], object], seconds: float = 2.0, windows: int = 5
) -> float:
    """Messages per second for ``run`` over ``texts``.

    Like ``timeit``, the figure is the best of ``windows`` measurements of about
    ``seconds / windows`` each (every one a whole number of passes over ``texts``): on a
    shared machine the least-disturbed run is the best estimate of the code's own speed.
    """
    import time

    items = list(texts)
    if not items:
        return 0.0
    for t in items:  # warm-up: lexicons load once, outside the timing
        run(t)
    best = 0.0
    for _ in range(max(1, windows)):
        count = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds / max(1, windows):
            for t in items:
                run(t)
            count += len(items)
            elapsed = time.perf_counter() - start
        best = max(best, count / elapsed)
    return best
