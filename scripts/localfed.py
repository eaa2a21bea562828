"""Several homeservers federating on loopback, optionally each with its own bot.

    ./scripts/localfed                # two homeservers
    ./scripts/localfed --servers 3    # three
    ./scripts/localfed --bots         # and a neighborwatch bot (one station) on each

Everything lives under ``var/fed/`` (ignored by git) and is reused on the next run: the
servers keep their names (``localhost:PORT``), the accounts their passwords. Each server
gets an ``officer`` and a ``resident`` account; server 1 also a district ``supervisor``
whose district digest room the bots post their sections into. Ctrl-C stops the bots, then
the servers. The same ``localhs.federation()`` is the pytest fixture of the federation tests.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from localhs import REPO, Homeserver, federation, log


def _accounts(hs: Homeserver, names: list[str], saved: dict[str, Any]) -> dict[str, Any]:
    """Register ``names`` on ``hs`` once; afterwards reuse what ``saved`` remembers."""
    accounts = saved.setdefault(hs.server_name, {})
    for name in names:
        if name not in accounts:
            password = secrets.token_urlsafe(12)
            info = hs.register(name, password)
            accounts[name] = {"user_id": info["user_id"], "password": password}
    return dict(accounts)


def _bot_config(
    directory: Path, hs: Homeserver, index: int, accounts: dict[str, Any], district: dict[str, Any]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "homeserver": {"url": hs.url},
        "bot": {"user_id": accounts["neighborwatch"]["user_id"]},
        "data_dir": "data",
        "language": "en",
        "stations": [
            {
                "id": f"station{index}",
                "name": f"Station {index} ({hs.server_name})",
                "district": "city",
                "officers": [accounts["officer"]["user_id"]],
                "supervisors": [],
            }
        ],
        "districts": [district],
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=2, help="how many homeservers (2–9)")
    parser.add_argument("--bots", action="store_true", help="run a neighborwatch bot on each")
    args = parser.parse_args()
    if not 2 <= args.servers <= 9:
        parser.error("--servers must be between 2 and 9")
    os.umask(0o077)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    var = REPO / "var" / "fed"
    state_path = var / "accounts.json"
    servers = federation(var, args.servers)
    saved: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    bots: list[subprocess.Popen[bytes]] = []
    try:
        for hs in servers:
            hs.start()
        names = ["officer", "resident", *(["neighborwatch"] if args.bots else [])]
        accounts = [
            _accounts(hs, names + (["supervisor"] if i == 0 else []), saved)
            for i, hs in enumerate(servers)
        ]
        state_path.write_text(json.dumps(saved, indent=2))
        for hs, acc in zip(servers, accounts, strict=True):
            print(f"{hs.server_name}: clients on {hs.url}")
            for info in sorted(acc.values(), key=lambda i: str(i["user_id"])):
                print(f"  {info['user_id']}  password {info['password']}")
        if args.bots:
            district = {
                "id": "city",
                "name": "City District",
                "supervisors": [accounts[0]["supervisor"]["user_id"]],
            }
            for index, (hs, acc) in enumerate(zip(servers, accounts, strict=True), 1):
                config = _bot_config(var / f"bot{index}", hs, index, acc, district)
                env = {**os.environ, "NEIGHBORWATCH_BOT_PASSWORD": acc["neighborwatch"]["password"]}
                log_file = (var / f"bot{index}" / "bot.log").open("ab")
                bots.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bot", "run", "-c", str(config)],
                        cwd=REPO,
                        env=env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                bot_id = acc["neighborwatch"]["user_id"]
                print(f"bot {index}: {bot_id} (log var/fed/bot{index}/bot.log)")
        print("federation ready (Ctrl-C stops it)", flush=True)
        while all(hs.proc is not None and hs.proc.poll() is None for hs in servers):
            if any(bot.poll() is not None for bot in bots):
                log("a bot stopped; see var/fed/bot*/bot.log")
                return 1
            time.sleep(0.5)
        log("a homeserver stopped; see var/fed/hs*/homeserver.log")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for bot in bots:
            if bot.poll() is None:
                bot.send_signal(signal.SIGTERM)
        for bot in bots:
            try:
                bot.wait(30)
            except subprocess.TimeoutExpired:
                bot.kill()
        for hs in servers:
            hs.stop()


if __name__ == "__main__":
    raise SystemExit(main())
