"""``neighborwatch classify``: JSONL in, one JSONL line out per message; bad lines reported."""

from __future__ import annotations

import io
import json

from bot.cli import classify


def test_each_line_gets_an_analysis_with_its_id() -> None:
    source = io.StringIO(
        json.dumps({"id": "a", "text": "Smoke is coming out of flat 1203 right now!"})
        + "\n"
        + json.dumps({"id": "b", "text": "谢谢大家", "lang": "zh"})
        + "\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert classify(source, out, err) == 0
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert set(first) == {
        "id",
        "is_tip",
        "category",
        "emergency",
        "location",
        "identifiers",
        "confidence",
    }
    assert first["id"] == "a" and first["is_tip"] and first["emergency"]
    assert second == {
        "id": "b",
        "is_tip": False,
        "category": None,
        "emergency": False,
        "location": None,
        "identifiers": [],
        "confidence": second["confidence"],
    }
    assert err.getvalue() == ""


def test_bad_lines_are_reported_and_skipped() -> None:
    source = io.StringIO('not json\n{"text": 5}\n\n{"text": "hello"}\n')
    out, err = io.StringIO(), io.StringIO()
    assert classify(source, out, err) == 1
    assert len(out.getvalue().splitlines()) == 1
    assert "line 1" in err.getvalue() and "line 2" in err.getvalue()
