"""The quickstart, after ``scripts/quickstart`` has made ``.venv``: a local homeserver,
demo accounts, a ``config.yaml`` and the bot in the foreground.

Re-running reuses the homeserver, accounts and config. Ctrl-C stops the bot, then
the homeserver. Environment (all optional, for tests and side-by-side installs):
``NEIGHBORWATCH_VAR`` (default ``var/``), ``NEIGHBORWATCH_CONFIG`` (default
``config.yaml``), ``NEIGHBORWATCH_HS_PORT`` (default 8008).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from localhs import REPO, Homeserver, HomeserverError, free_port, log

DEMO_ACCOUNTS = ("officer", "supervisor", "resident")
BOT_LOCALPART = "neighborwatch"
ADMIN_LOCALPART = "quickstart-admin"
CONFIG_HEADER = (
    "# Written by scripts/quickstart for the local demo homeserver (it keeps homeserver.url\n"
    "# up to date). Every key is explained in config.example.yaml. language: zh for Chinese.\n"
)


class Quickstart:
    def __init__(self) -> None:
        self.var = Path(os.environ.get("NEIGHBORWATCH_VAR", REPO / "var")).resolve()
        self.config_path = Path(os.environ.get("NEIGHBORWATCH_CONFIG", REPO / "config.yaml"))
        # What a person (or a test) needs to log in: homeserver, bot, demo accounts.
        self.state_path = self.var / "quickstart.json"
        self.var.mkdir(parents=True, exist_ok=True)
        self.var.chmod(0o700)
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        )

    def save_state(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2))
        self.state_path.chmod(0o600)

    # ----------------------------------------------------------- homeserver

    def homeserver(self) -> tuple[Homeserver, bool]:
        """Our homeserver, started; the flag says whether we started it (and must stop it)."""
        port = int(os.environ.get("NEIGHBORWATCH_HS_PORT") or self.state.get("port") or 8008)
        hs = Homeserver(self.var / "homeserver", port=port)
        if hs.healthy():
            if self._ours_is_running(hs):
                log(f"reusing the homeserver already running on {hs.url}")
                return hs, False
            port = free_port()
            log(f"port {hs.port} is taken by another server; using {port}")
            hs = Homeserver(self.var / "homeserver", port=port)
        log(f"starting Synapse on {hs.url} (data in {hs.directory})")
        hs.start()
        self.state["port"] = hs.port
        self.state["homeserver"] = hs.url
        return hs, True

    @staticmethod
    def _ours_is_running(hs: Homeserver) -> bool:
        pid_file = hs.directory / "homeserver.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, OSError):
            return False
        return True

    # ------------------------------------------------------------- accounts

    def account(self, hs: Homeserver, localpart: str, *, admin: bool = False) -> dict[str, str]:
        """Reuse the stored account if its password still works; otherwise create or reset it."""
        section = "accounts" if localpart in DEMO_ACCOUNTS else "service_accounts"
        accounts: dict[str, dict[str, str]] = self.state.setdefault(section, {})
        known = accounts.get(localpart)
        if known is not None:
            try:
                hs.login(localpart, known["password"])
                return known
            except HomeserverError:
                log(f"the stored password of {localpart} no longer works; resetting it")
        password = secrets.token_urlsafe(12)
        try:
            info = hs.register(localpart, password, admin=admin)
        except HomeserverError as err:
            if "M_USER_IN_USE" not in str(err):
                raise
            self._reset_password(hs, f"@{localpart}:{hs.server_name}", password)
            info = {"user_id": f"@{localpart}:{hs.server_name}"}
        record = {"user_id": str(info["user_id"]), "password": password}
        accounts[localpart] = record
        self.save_state()
        return record

    def _reset_password(self, hs: Homeserver, user_id: str, password: str) -> None:
        admin = self.account(hs, ADMIN_LOCALPART, admin=True)
        token = hs.login(ADMIN_LOCALPART, admin["password"])["access_token"]
        status, body = hs.call(
            "POST",
            f"/_synapse/admin/v1/reset_password/{user_id}",
            {"new_password": password, "logout_devices": False},
            token=token,
        )
        if status != 200:
            raise HomeserverError(f"resetting the password of {user_id}: {status} {body}")

    def setup_demo(self, hs: Homeserver, bot: str, accounts: dict[str, dict[str, str]]) -> str:
        """A verified neighbourhood room, made the way an officer would: with bot commands.

        The officer talks to the bot in a direct chat, adds the neighbourhood "Demo
        Garden", creates its residents' room and enrols the demo resident, who accepts.
        """
        if "demo_room" in self.state:
            return str(self.state["demo_room"])
        officer = hs.login("officer", accounts["officer"]["password"])["access_token"]
        resident = hs.login("resident", accounts["resident"]["password"])["access_token"]
        dm = self._ok(
            hs,
            "POST",
            "/_matrix/client/v3/createRoom",
            officer,
            {
                "preset": "trusted_private_chat",
                "is_direct": True,
                "invite": [bot],
            },
        )["room_id"]
        _poll(
            lambda: (
                bot
                in self._ok(
                    hs, "GET", f"/_matrix/client/v3/rooms/{quote(dm)}/joined_members", officer
                ).get("joined", {})
            ),
            "the bot to join the officer's direct chat",
        )
        for command in (
            '!neighbourhood add demo "Demo Garden" lang=en',
            "!room create demo residents",
        ):
            self._send(hs, officer, dm, command)
        alias = quote(f"#nw-demo-residents:{hs.server_name}")
        room = str(
            _poll(
                lambda: hs.call("GET", f"/_matrix/client/v3/directory/room/{alias}", token=officer)[
                    1
                ].get("room_id"),
                "the demo room to be created",
            )
        )
        _poll(lambda: self._joins(hs, officer, room), "the officer's invitation")
        self._send(
            hs,
            officer,
            dm,
            f"!enrol {accounts['resident']['user_id']} demo/residents "
            'name="Demo Resident" unit="Building 1"',
        )
        _poll(lambda: self._joins(hs, resident, room), "the resident's invitation")
        self.state["demo_room"] = room
        self.state["officer_dm"] = dm
        self.save_state()
        return room

    @staticmethod
    def _ok(
        hs: Homeserver, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        status, data = hs.call(method, path, body, token=token)
        if status != 200:
            raise HomeserverError(f"{method} {path}: {status} {data}")
        return data

    def _send(self, hs: Homeserver, token: str, room: str, text: str) -> None:
        txn = secrets.token_hex(8)
        self._ok(
            hs,
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{txn}",
            token,
            {"msgtype": "m.text", "body": text},
        )

    @staticmethod
    def _joins(hs: Homeserver, token: str, room: str) -> bool:
        return hs.call("POST", f"/_matrix/client/v3/join/{quote(room)}", {}, token=token)[0] == 200

    # --------------------------------------------------------------- config

    def write_config(self, hs: Homeserver, bot: dict[str, str], accounts: dict[str, Any]) -> None:
        if self.config_path.exists():
            text = self.config_path.read_text()
            existing = yaml.safe_load(text) or {}
            url = (existing.get("homeserver") or {}).get("url")
            if url != hs.url and text.startswith(CONFIG_HEADER):
                existing["homeserver"] = {"url": hs.url}
                self.config_path.write_text(
                    CONFIG_HEADER + yaml.safe_dump(existing, sort_keys=False)
                )
                log(f"updated the homeserver URL in {self.config_path} to {hs.url}")
            elif url != hs.url:
                log(f"note: {self.config_path} points at {url}, not the local {hs.url}")
            else:
                log(f"using the existing {self.config_path}")
            return
        config = {
            "homeserver": {"url": hs.url},
            "bot": {"user_id": bot["user_id"], "password": bot["password"]},
            "data_dir": str(self.var / "data"),
            "language": "en",
            "timezone": "Asia/Shanghai",
            "command_prefix": "!",
            "stations": [
                {
                    "id": "demo",
                    "name": "Demo Police Station",
                    "district": "demo-district",
                    "officers": [accounts["officer"]["user_id"]],
                    "supervisors": [accounts["supervisor"]["user_id"]],
                }
            ],
        }
        self.config_path.write_text(CONFIG_HEADER + yaml.safe_dump(config, sort_keys=False))
        self.config_path.chmod(0o600)
        log(f"wrote {self.config_path}")

    # ------------------------------------------------------------------ run

    def banner(self, hs: Homeserver, accounts: dict[str, dict[str, str]]) -> str:
        lines = [
            "",
            "=" * 72,
            f"neighborwatch ready on {hs.url} (demo set up)",
            "Connect Element (Desktop, or Web at https://app.element.io): on the sign-in",
            f"screen choose 'Edit' next to the homeserver and enter {hs.url}",
            "Demo accounts:",
            *(
                f"  {name:<10} {user['user_id']:<28} password: {user['password']}"
                for name, user in ((n, accounts[n]) for n in DEMO_ACCOUNTS)
            ),
            "The resident is a verified member of 'Demo Garden · residents'; the officer runs",
            "the station from a direct chat with the bot. Send !help in either.",
            "Ctrl-C stops the bot and the homeserver.",
            f"(also written to {self.state_path})",
            "=" * 72,
            "",
        ]
        return "\n".join(lines)

    def run(self) -> int:
        hs, started = self.homeserver()
        bot_proc: subprocess.Popen[str] | None = None
        try:
            bot = self.account(hs, BOT_LOCALPART)
            accounts = {name: self.account(hs, name) for name in DEMO_ACCOUNTS}
            self.state.update(homeserver=hs.url, bot=bot["user_id"])
            self.save_state()
            self.write_config(hs, bot, accounts)
            env = {**os.environ, "NEIGHBORWATCH_BOT_PASSWORD": bot["password"]}
            bot_proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run", "-c", str(self.config_path)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            ready = threading.Event()
            threading.Thread(target=_relay, args=(bot_proc, ready), daemon=True).start()
            while not ready.wait(0.2):
                if bot_proc.poll() is not None:
                    return bot_proc.returncode
            self.setup_demo(hs, bot["user_id"], accounts)
            print(self.banner(hs, accounts), flush=True)
            return bot_proc.wait()
        except KeyboardInterrupt:
            log("stopping")
            return _stop(bot_proc)
        finally:
            if bot_proc is not None and bot_proc.poll() is None:
                _stop(bot_proc)
            if started:
                log("stopping the homeserver")
                hs.stop()


def _relay(proc: subprocess.Popen[str], ready: threading.Event) -> None:
    """Copy the bot's stdout to ours; note when it is ready."""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("neighborwatch ready"):
            ready.set()


def _poll(check: Any, what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise HomeserverError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen[str] | None) -> int:
    if proc is None:
        return 0
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return 0 if proc.returncode in (0, -signal.SIGTERM, -signal.SIGINT) else proc.returncode


def main() -> int:
    os.umask(0o077)
    # SIGTERM stops the quickstart the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    code = Quickstart().run()
    log(f"stopped after {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
