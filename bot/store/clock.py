"""Time in milliseconds since the epoch, the unit Matrix uses for timestamps.

``NEIGHBORWATCH_CLOCK_FILE`` (for drills and tests only) names a file holding the
time to use — epoch seconds or an ISO 8601 timestamp with an offset — read on
every call, so a test can move the bot's clock while it runs (an 08:00 digest
without waiting for 08:00). Unset, the system clock is used.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

_CLOCK_FILE = os.environ.get("NEIGHBORWATCH_CLOCK_FILE")


def now_ms() -> int:
    if _CLOCK_FILE:
        return _from_file(Path(_CLOCK_FILE))
    return int(time.time() * 1000)


def _from_file(path: Path) -> int:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return int(time.time() * 1000)
    try:
        return int(float(value) * 1000)
    except ValueError:
        return int(dt.datetime.fromisoformat(value).timestamp() * 1000)
