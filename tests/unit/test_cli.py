"""The administrator's command line: exports, retention and the crypto commands, as run by
hand against a stopped bot's data directory."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from bot.app import DB_FILE
from bot.cli import EXIT_CONFIG, EXIT_DATABASE, main
from bot.store import cases
from bot.store.cases import NewCase
from bot.store.db import Database

REPORTER = "@li:example.org"
DAY_MS = 86_400_000


def write_config(tmp_path: Path, **extra: object) -> Path:
    config = {
        "homeserver": {"url": "http://127.0.0.1:8008"},
        "bot": {"user_id": "@neighborwatch:localhost", "password": "s3cret-pass"},
        "data_dir": "data",
        "timezone": "Asia/Shanghai",
        "stations": [
            {
                "id": "hq",
                "name": "Hongqiao",
                "case_prefix": "HQ",
                "officers": ["@wang:police.example"],
                "supervisors": ["@zhao:district.example"],
            }
        ],
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _seed(db_path: Path) -> None:
    db = await Database.open(db_path)
    now = int(time.time() * 1000)
    async with db.transaction() as conn:
        for age_days, text in ((400, "old firecrackers"), (2, "new drug dealing")):
            case = await cases.create(
                conn,
                NewCase(  # type: ignore[arg-type]
                    station_id="hq",
                    year=2026,
                    source="room",
                    category="fire_hazard",
                    text=text,
                    created_by=REPORTER,
                    reporter=REPORTER,
                ),
                now - age_days * DAY_MS,
            )
            if age_days > 365:
                await conn.execute(
                    "UPDATE cases SET status = 'solved', closed_at = ? WHERE id = ?",
                    (now - (age_days - 1) * DAY_MS, case.id),
                )
    await db.close()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    (tmp_path / "data").mkdir()
    asyncio.run(_seed(tmp_path / "data" / DB_FILE))
    return path


def test_cases_export_as_open311_json_and_csv_without_reporters(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "cases", "-c", str(config_path)]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert [p["service_code"] for p in parsed] == ["fire_hazard", "fire_hazard"]
    assert REPORTER not in json.dumps(parsed)

    out = config_path.parent / "cases.csv"
    assert (
        main(["export", "cases", "--format", "csv", "--out", str(out), "-c", str(config_path)]) == 0
    )
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 2 and "reporter" not in rows[0]


def test_exporting_reporters_is_audited(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "cases", "--include-reporters", "-c", str(config_path)]) == 0
    assert REPORTER in capsys.readouterr().out
    audit = _query(config_path, "SELECT action FROM audit_log")
    assert ("export.with_reporters",) in audit


def test_a_since_date_filters_and_a_bad_one_is_explained(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recent = time.strftime("%Y-%m-%d", time.localtime(time.time() - 30 * 86_400))
    assert main(["export", "cases", "--since", recent, "-c", str(config_path)]) == 0
    assert [p["description"] for p in json.loads(capsys.readouterr().out)] == ["new drug dealing"]
    assert (
        main(["export", "cases", "--since", "last tuesday", "-c", str(config_path)]) == EXIT_CONFIG
    )
    assert "not a date like 2026-11-01" in capsys.readouterr().err
    assert main(["export", "alerts", "--format", "csv", "-c", str(config_path)]) == EXIT_CONFIG


def test_retention_dry_run_changes_nothing_then_the_real_run_anonymises(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retention", "--dry-run", "-c", str(config_path)]) == 0
    assert "would anonymise 1 closed case(s)" in capsys.readouterr().out
    assert _query(config_path, "SELECT COUNT(*) FROM cases WHERE reporter IS NOT NULL") == [(2,)]
    assert main(["retention", "-c", str(config_path)]) == 0
    assert "anonymised 1 closed case(s)" in capsys.readouterr().out
    assert _query(config_path, "SELECT text FROM cases WHERE reporter IS NOT NULL") == [
        ("new drug dealing",)
    ]
    assert ("retention.run",) in _query(config_path, "SELECT action FROM audit_log")


def test_commands_on_a_missing_database_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    for argv in (["crypto", "status"], ["retention"], ["export", "cases"]):
        assert main([*argv, "-c", str(path)]) == EXIT_DATABASE
        assert "no database at" in capsys.readouterr().err


def test_an_unknown_crypto_action_is_a_usage_error(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["crypto", "rotate", "-c", str(config_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'rotate'" in capsys.readouterr().err


def _query(config_path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(config_path.parent / "data" / DB_FILE)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()
