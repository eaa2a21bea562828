"""The ``neighborwatch`` command line (also ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.config import Config, ConfigError, load_config, render_effective_config

EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_LOGIN = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neighborwatch",
        description="A Matrix bot for community-policing informant networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bot in the foreground")
    run.add_argument("-c", "--config", default="config.yaml", help="config file")
    check = sub.add_parser(
        "check-config", help="validate a config file and print it with secrets redacted"
    )
    check.add_argument("-c", "--config", default="config.yaml", help="config file")
    export = sub.add_parser("export", help="export data for the police platform")
    export.add_argument("what", choices=["alerts"], help="what to export")
    export.add_argument("--format", choices=["cap"], default="cap", help="CAP 1.2 XML")
    export.add_argument(
        "--out",
        type=Path,
        help="folder for one file per notice (default: an Atom feed of all of them on stdout)",
    )
    export.add_argument("-c", "--config", default="config.yaml", help="config file")
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
        return _export(config, args.out)
    return _run(config)


def _export(config: Config, out: Path | None) -> int:
    from bot.app import DB_FILE
    from bot.exports import load_cap, write_cap
    from bot.store.db import Database

    path = config.data_dir / DB_FILE
    if not path.exists():
        print(f"neighborwatch: no database at {path}", file=sys.stderr)
        return EXIT_DATABASE

    async def load() -> list[Any]:
        db = await Database.open(path)
        try:
            return await load_cap(db, config)
        finally:
            await db.close()

    print(write_cap(asyncio.run(load()), config, out))
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


def _run(config: Config) -> int:
    from bot.app import run_until_signalled
    from bot.matrix.gateway import LoginFailed
    from bot.store.migrations import SchemaTooNewError

    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nio").setLevel(logging.WARNING)
    try:
        asyncio.run(run_until_signalled(config))
    except SchemaTooNewError as err:
        print(f"neighborwatch: cannot start: {err}", file=sys.stderr)
        return EXIT_DATABASE
    except LoginFailed as err:
        print(f"neighborwatch: cannot start: {err}", file=sys.stderr)
        return EXIT_LOGIN
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
