"""The ``neighborwatch`` command line (also ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

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
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "check-config":
        print(render_effective_config(config), end="")
        return 0
    return _run(config)


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
