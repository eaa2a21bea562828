"""Time in milliseconds since the epoch, the unit Matrix uses for timestamps."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
