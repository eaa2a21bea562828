"""Exponential backoff, capped: 1, 2, 4, … up to ``cap`` seconds, reset on success."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    failures: int = 0

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        delay = min(self.cap, self.base * 2.0**self.failures)
        self.failures = min(self.failures + 1, 64)
        return delay

    def reset(self) -> None:
        self.failures = 0
