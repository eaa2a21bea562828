"""Run the real bot (``python -m bot run``) as a subprocess, as an operator would."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_config(
    directory: Path,
    *,
    homeserver: str,
    bot_user_id: str,
    officers: list[str] | None = None,
    supervisors: list[str] | None = None,
    language: str = "en",
    station: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    config: dict[str, Any] = {
        "homeserver": {"url": homeserver},
        "bot": {"user_id": bot_user_id},
        "data_dir": str(directory / "data"),
        "language": language,
        # Test clients speak plain HTTP; the encryption tests switch this on.
        "rooms": {"encrypted": False},
        "stations": [
            {
                # Unique per bot: bots of different tests share one homeserver (and its aliases).
                "id": f"st-{uuid.uuid4().hex[:8]}",
                "name": "Test Station",
                "officers": officers or [],
                "supervisors": supervisors or [],
                **(station or {}),
            }
        ],
        **extra,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


class BotProcess:
    def __init__(self, config_path: Path, password: str, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.password = password
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()
        self.log_path = config_path.parent / "bot.log"

    @property
    def db_path(self) -> Path:
        return self.config_path.parent / "data" / "neighborwatch.db"

    def start(self, *, wait_ready: bool = True, timeout: float = 60) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._ready.clear()
        env = {**os.environ, "NEIGHBORWATCH_BOT_PASSWORD": self.password, **self.env}
        log = self.log_path.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "-c", str(self.config_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if wait_ready:
            self.wait_ready(timeout)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            if "neighborwatch ready" in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bot exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"bot not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "".join(self.log_path.read_text(encoding="utf-8").splitlines(True)[-lines:])

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait (clean shutdown)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush — a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """Change the bot's database behind its back (to move a code's expiry into the past)."""
        conn = sqlite3.connect(self.db_path, timeout=10)
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the bot's database (WAL mode lets us read while it runs)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()
