"""The README's first command: ./scripts/quickstart reaches "neighborwatch ready", answers
!ping from the demo resident, stops cleanly on Ctrl-C, and reuses everything when re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from localhs import free_port

from tests.support.matrix_client import login, reply_target, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READY_WITHIN_S = 90


class Quickstart:
    def __init__(self, tmp_path: Path, port: int) -> None:
        self.env = {
            **os.environ,
            "NEIGHBORWATCH_VAR": str(tmp_path / "var"),
            "NEIGHBORWATCH_CONFIG": str(tmp_path / "config.yaml"),
            "NEIGHBORWATCH_HS_PORT": str(port),
        }
        self.state_path = tmp_path / "var" / "quickstart.json"
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def start(self) -> float:
        """Start it like a user in a terminal; return the seconds until it said ready."""
        started = time.monotonic()
        self._ready.clear()
        self.proc = subprocess.Popen(
            [str(REPO / "scripts" / "quickstart")],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(READY_WITHIN_S):
            self.interrupt()
            raise AssertionError("no 'neighborwatch ready' in time:\n" + "".join(self.lines))
        return time.monotonic() - started

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "neighborwatch ready on" in line:  # the banner, once the demo is set up
                self._ready.set()

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole foreground process group."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(60)

    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.state_path.read_text())
        return data


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def test_quickstart_runs_answers_ping_stops_cleanly_and_reuses_its_setup(
    tmp_path: Path, synapse_python: Path
) -> None:
    qs = Quickstart(tmp_path, free_port())
    seconds = qs.start()
    try:
        assert seconds < READY_WITHIN_S
        state = qs.state()
        homeserver = str(state["homeserver"])
        accounts = state["accounts"]
        assert isinstance(accounts, dict)
        assert set(accounts) == {"officer", "supervisor", "resident"}
        assert all(set(a) >= {"user_id", "password"} for a in accounts.values())
        bot = str(state["bot"])
        output = "".join(qs.lines)
        assert homeserver in output and accounts["resident"]["password"] in output

        resident = await login(homeserver, "resident", accounts["resident"]["password"])
        async with resident:
            room = str(state["demo_room"])
            ping = await resident.send_text(room, "!ping")

            async def answered() -> bool:
                # The demo room is end-to-end encrypted: this plain-HTTP test client cannot
                # read the answer, but the reply relation travels in the clear.
                return any(
                    reply_target(ev) == ping
                    for ev in await resident.messages(room)
                    if ev.get("sender") == bot
                )

            await wait_until(answered, timeout=30, what="the bot to answer !ping")
    finally:
        code = qs.interrupt()
    assert code == 0, "".join(qs.lines[-20:])
    assert not healthy(homeserver), "Ctrl-C must stop the homeserver too"

    # Second run: same homeserver data, same accounts, same bot device.
    again = Quickstart(tmp_path, free_port())
    again.start()
    try:
        assert again.state()["accounts"] == accounts
        assert "restored session" in "".join(again.lines)
    finally:
        assert again.interrupt() == 0
