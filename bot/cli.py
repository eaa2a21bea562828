"""The ``neighborwatch`` command line (also ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from bot.config import Config, ConfigError, load_config, render_effective_config

EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_LOGIN = 4
EXIT_CRYPTO = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neighborwatch",
        description="A Matrix bot for community-policing informant networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help_text)
        child.add_argument("-c", "--config", default="config.yaml", help="config file")
        return child

    command("run", "run the bot in the foreground")
    command("check-config", "validate a config file and print it with secrets redacted")
    export = command("export", "export data for the police platform")
    export.add_argument("what", choices=["alerts", "cases"], help="what to export")
    export.add_argument(
        "--format",
        choices=["cap", "json", "csv"],
        help="alerts: cap (CAP 1.2 XML, the default); cases: json (Open311, the default) or csv",
    )
    export.add_argument(
        "--out",
        type=Path,
        help="alerts: a folder for one file per notice (default: an Atom feed on stdout); "
        "cases: a file (default: stdout)",
    )
    export.add_argument("--since", help="cases: only those reported on or after this date")
    export.add_argument("--station", help="cases: only this station's")
    export.add_argument(
        "--include-reporters",
        action="store_true",
        help="cases: include who reported them (written to the audit log)",
    )
    retention = command("retention", "anonymise closed cases past the retention period now")
    retention.add_argument(
        "--dry-run", action="store_true", help="only count what would be anonymised"
    )
    crypto = command("crypto", "the bot's encryption identity")
    crypto.add_argument(
        "action",
        choices=["status", "reset"],
        help="status: identity and device as the server sees them; reset: new cross-signing keys",
    )
    sub.add_parser(
        "classify",
        help="read JSONL messages ({text, id?, lang?}) on stdin, write the tip analysis as JSONL",
    )
    return parser


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.lines:
            print(f"config error: {line}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "classify":
        return classify(sys.stdin, sys.stdout, sys.stderr)
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "check-config":
        print(render_effective_config(config), end="")
        return 0
    if args.command == "export":
        return _export(config, args)
    if args.command == "retention":
        return _retention(config, args.dry_run)
    if args.command == "crypto":
        return _crypto(config, args.action)
    return _run(config)


def _database_path(config: Config) -> Path | None:
    from bot.app import DB_FILE

    path = config.data_dir / DB_FILE
    if not path.exists():
        print(f"neighborwatch: no database at {path}", file=sys.stderr)
        return None
    return path


def _export(config: Config, args: argparse.Namespace) -> int:
    from bot.exports import case_records, cases_csv, cases_json, load_cap, write_cap
    from bot.store import audit
    from bot.store.db import Database

    path = _database_path(config)
    if path is None:
        return EXIT_DATABASE
    fmt = args.format or ("cap" if args.what == "alerts" else "json")
    if (args.what == "alerts") != (fmt == "cap"):
        print("neighborwatch: alerts export as cap; cases as json or csv", file=sys.stderr)
        return EXIT_CONFIG
    since_ms = None
    if args.since:
        try:
            since = dt.datetime.fromisoformat(args.since).replace(tzinfo=ZoneInfo(config.timezone))
        except ValueError:
            print(
                f"neighborwatch: --since {args.since!r} is not a date like 2026-11-01",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        since_ms = int(since.timestamp() * 1000)

    async def load() -> str:
        db = await Database.open(path)
        try:
            if args.what == "alerts":
                return write_cap(await load_cap(db, config), config, args.out)
            async with db.transaction() as conn:
                records = await case_records(
                    conn,
                    config,
                    since_ms=since_ms,
                    station=args.station,
                    include_reporters=args.include_reporters,
                )
                if args.include_reporters:
                    await audit.record(
                        conn,
                        f"cli:{getpass.getuser()}",
                        "export.with_reporters",
                        detail={"cases": len(records), "station": args.station},
                    )
            return cases_csv(records) if fmt == "csv" else cases_json(records, config)
        finally:
            await db.close()

    output = asyncio.run(load())
    if args.what == "cases" and args.out is not None:
        args.out.write_text(output, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(output)
    return 0


def _crypto(config: Config, action: str) -> int:
    from bot.crypto_admin import crypto_command
    from bot.matrix.e2ee import CryptoStoreMissing, IdentityConflict

    if _database_path(config) is None:
        return EXIT_DATABASE
    try:
        print(asyncio.run(crypto_command(config, action, f"cli:{getpass.getuser()}")))
    except (CryptoStoreMissing, IdentityConflict) as err:
        print(f"neighborwatch: {err}", file=sys.stderr)
        return EXIT_CRYPTO
    return 0


def _retention(config: Config, dry_run: bool) -> int:
    from bot.features.retention import anonymise
    from bot.pipeline import make_deps
    from bot.store.clock import now_ms
    from bot.store.db import Database

    path = _database_path(config)
    if path is None:
        return EXIT_DATABASE

    async def run() -> int:
        db = await Database.open(path)
        try:
            async with db.transaction() as conn:
                deps = make_deps(conn, config, now_ms())
                count = await anonymise(deps, dry_run=dry_run)
                await deps.audit.record(
                    f"cli:{getpass.getuser()}",
                    "retention.run",
                    detail={"count": count, "dry_run": dry_run},
                )
                return count
        finally:
            await db.close()

    count = asyncio.run(run())
    verb = "would anonymise" if dry_run else "anonymised"
    print(f"{verb} {count} closed case(s) older than {config.retention.closed_case_days} days")
    return 0


def classify(source: TextIO, sink: TextIO, errors: TextIO) -> int:
    """One output line per input line; a line that is not a JSON object is reported, skipped."""
    from bot.domain.tips import analyse

    bad = 0
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError('needs an object with a string "text"')
        except ValueError as err:
            print(f"classify: line {number}: {err}", file=errors)
            bad += 1
            continue
        lang = item.get("lang") if item.get("lang") in ("zh", "en") else None
        result = analyse(item["text"], lang)
        record = {
            "id": item.get("id"),
            "is_tip": result.is_tip,
            "category": result.category,
            "emergency": result.emergency,
            "location": result.location,
            "identifiers": list(result.identifiers),
            "confidence": round(result.confidence, 3),
        }
        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 1 if bad else 0


def _profiled(work: Callable[[], None]) -> None:
    """Run ``work``; with ``NEIGHBORWATCH_PROFILE=FILE`` set, under cProfile, writing the
    statistics to FILE on a clean exit (for the benchmarks' profiles of a missed target)."""
    target = os.environ.get("NEIGHBORWATCH_PROFILE")
    if not target:
        work()
        return
    import cProfile

    profile = cProfile.Profile()
    try:
        profile.runcall(work)
    finally:
        profile.dump_stats(target)


def _run(config: Config) -> int:
    from bot.app import run_until_signalled
    from bot.matrix.e2ee import CryptoStoreMissing, IdentityConflict
    from bot.matrix.gateway import LoginFailed
    from bot.store.migrations import SchemaTooNewError

    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nio").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        _profiled(lambda: asyncio.run(run_until_signalled(config)))
    except SchemaTooNewError as err:
        print(f"neighborwatch: cannot start: {err}", file=sys.stderr)
        return EXIT_DATABASE
    except LoginFailed as err:
        print(f"neighborwatch: cannot start: {err}", file=sys.stderr)
        return EXIT_LOGIN
    except (CryptoStoreMissing, IdentityConflict) as err:
        print(f"neighborwatch: cannot start: {err}", file=sys.stderr)
        return EXIT_CRYPTO
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
