"""Shared by the live benchmarks (``bench_fanout``, ``bench_e2e``, ``bench_scale``, soak):
a real Synapse on 127.0.0.1, accounts exempted from rate limits, the real bot as a
subprocess, a police station with an officer, and ``name: value`` output.

The benchmarks reuse the integration tests' helpers (``tests/support``): the same client,
the same bot process wrapper, the same station, so what is measured is what is tested.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from localhs import Homeserver, ensure_synapse, free_port  # noqa: E402

from tests.conftest import Account, BotUnderTest  # noqa: E402
from tests.support.bot_process import BotProcess, write_config  # noqa: E402
from tests.support.world import Station, open_station  # noqa: E402

# Password hashing at its cheapest: benchmarks register thousands of accounts.
FAST_HASHING = {"bcrypt_rounds": 4}


def emit(name: str, value: float | int | str, digits: int = 1) -> None:
    """One figure, as ``name: value`` on stdout (progress and notes go to stderr)."""
    if isinstance(value, float):
        value = f"{value:.{digits}f}"
    print(f"{name}: {value}", flush=True)


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident set size of a running process, from /proc (Linux)."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a running process, from /proc (Linux)."""
    return _status_mb(pid, "VmHWM")


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a running process has used so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LiveBench:
    """A homeserver in ``directory`` (kept when ``keep``; else removed on exit) and helpers
    to create exempted accounts, bots and stations on it."""

    def __init__(self, directory: Path | None = None, *, overrides: dict[str, Any] | None = None):
        self.keep = directory is not None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="nw-bench-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hs = Homeserver(
            self.directory / "homeserver",
            port=free_port(),
            synapse_python=ensure_synapse(),
            overrides={**FAST_HASHING, **(overrides or {})},
        )
        self.bots: list[BotProcess] = []
        self._admin: Account | None = None

    def start(self) -> None:
        self.hs.start()

    def close(self) -> None:
        for bot in self.bots:
            bot.stop()
        self.hs.stop()
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def admin(self) -> Account:
        if self._admin is None:
            self._admin = self.account("admin", admin=True, exempt=False)
        return self._admin

    def account(self, prefix: str, *, admin: bool = False, exempt: bool = True) -> Account:
        """A fresh ``@prefix-xxxx`` account; exempted from rate limits unless told not to."""
        localpart = f"{prefix}-{uuid.uuid4().hex[:8]}"
        password = secrets.token_urlsafe(12)
        info = self.hs.register(localpart, password, admin=admin)
        acct = Account(info["user_id"], password, info["access_token"], self.hs.url)
        if exempt:
            self.hs.exempt_from_ratelimit(self.admin.access_token, acct.user_id)
        return acct

    def make_bot(
        self,
        _hs: Homeserver | None = None,
        *,
        officers: list[str] | None = None,
        supervisors: list[str] | None = None,
        start: bool = True,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> BotUnderTest:
        """Same signature as the tests' ``make_bot`` fixture (so ``open_station`` works)."""
        acct = self.account("bot")
        directory = self.directory / "bots" / acct.user_id.split(":")[0].lstrip("@")
        directory.mkdir(parents=True)
        config = write_config(
            directory,
            homeserver=self.hs.url,
            bot_user_id=acct.user_id,
            officers=officers,
            supervisors=supervisors,
            **extra,
        )
        process = BotProcess(config, acct.password, env)
        self.bots.append(process)
        if start:
            process.start()
        return BotUnderTest(acct, process)

    async def station(self, **bot_extra: Any) -> Station:
        """A bot with one officer (who has a direct chat with it) and a supervisor."""
        return await open_station(
            self.hs, self.make_bot, lambda prefix: self.account(prefix), **bot_extra
        )


@contextmanager
def live_bench(
    directory: Path | None = None, *, overrides: dict[str, Any] | None = None
) -> Iterator[LiveBench]:
    bench = LiveBench(directory, overrides=overrides)
    bench.start()
    try:
        yield bench
    finally:
        bench.close()
