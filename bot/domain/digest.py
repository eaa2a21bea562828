"""Digest periods and figures (pure): what a daily or weekly digest covers and says.

Periods are calendar days and weeks in the configured time zone: the daily
digest sent on the 25th covers the 24th from local midnight to local midnight
(23 or 25 hours long on a DST switch); the weekly one covers Monday to Monday.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

Kind = Literal["daily", "weekly"]
KINDS: tuple[Kind, ...] = ("daily", "weekly")


@dataclass(frozen=True)
class Period:
    kind: Kind
    start: dt.datetime
    end: dt.datetime

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    def previous(self) -> Period:
        return period_ending(self.kind, self.start)

    def label(self) -> str:
        if self.kind == "daily":
            return self.start.strftime("%Y-%m-%d")
        last = (self.end - dt.timedelta(days=1)).strftime("%Y-%m-%d")
        return f"{self.start:%Y-%m-%d} – {last}"


def _midnight(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone)


def period_ending(kind: Kind, end: dt.datetime) -> Period:
    """The period of ``kind`` that ends at local midnight ``end``."""
    zone = end.tzinfo
    assert zone is not None
    days = 1 if kind == "daily" else 7
    start = _midnight(end.date() - dt.timedelta(days=days), zone)
    return Period(kind, start, _midnight(end.date(), zone))


def period_for_run(kind: Kind, fired: dt.datetime) -> Period:
    """What a run fired at ``fired`` (local time) reports on: the last complete day / week."""
    zone = fired.tzinfo
    assert zone is not None
    today = fired.date()
    if kind == "daily":
        return period_ending(kind, _midnight(today, zone))
    monday = today - dt.timedelta(days=today.weekday())
    return period_ending(kind, _midnight(monday, zone))


def period_for_request(kind: Kind, now: dt.datetime) -> Period:
    """On demand: the day or week so far (today since midnight, this week since Monday)."""
    zone = now.tzinfo
    assert zone is not None
    today = now.date()
    start_day = today if kind == "daily" else today - dt.timedelta(days=today.weekday())
    return Period(kind, _midnight(start_day, zone), now)


def last_fire(cron: str, zone: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The most recent time ``cron`` fired at or before ``now`` (looking back 8 days)."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=zone)
    moment = now - dt.timedelta(days=8)
    latest = None
    previous = None
    while True:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None or fire > now:
            return latest
        latest = fire
        previous = fire
        moment = fire + dt.timedelta(seconds=1)


def median_seconds(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def change(now: int, before: int) -> str:
    """``+3``, ``-2``, ``±0``, or ``new`` when there was nothing before."""
    if before == 0:
        return "new" if now else "±0"
    delta = now - before
    return f"+{delta}" if delta > 0 else (f"{delta}" if delta < 0 else "±0")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} d"


@dataclass
class Counted:
    name: str
    count: int
    previous: int = 0

    @property
    def change(self) -> str:
        return change(self.count, self.previous)


@dataclass
class StaleCase:
    number: str
    category: str
    age_hours: float
    assignee: str | None


@dataclass
class OfficerActivity:
    officer: str
    handled: int
    median_response_s: float | None


@dataclass
class NoticeLine:
    number: str
    kind: str
    title: str
    sightings: int


@dataclass
class DigestFigures:
    """Everything a digest says; built by the store from aggregates (no reporter names)."""

    scope: str
    period: Period
    new_total: int = 0
    new_previous: int = 0
    by_category: list[Counted] = field(default_factory=list)
    by_neighbourhood: list[Counted] = field(default_factory=list)
    by_station: list[Counted] = field(default_factory=list)
    urgent: list[tuple[str, str, str]] = field(default_factory=list)
    outcomes: list[Counted] = field(default_factory=list)
    referred: list[Counted] = field(default_factory=list)
    median_ack_s: float | None = None
    median_close_s: float | None = None
    stale_unacknowledged: list[StaleCase] = field(default_factory=list)
    stale_unacknowledged_total: int = 0
    stale_open: list[StaleCase] = field(default_factory=list)
    stale_open_total: int = 0
    officers: list[OfficerActivity] = field(default_factory=list)
    active_reporters: int = 0
    new_members: int = 0
    pending_requests: int = 0
    notices: list[NoticeLine] = field(default_factory=list)
    hotspots: list[Counted] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        """Nothing happened and nothing is waiting: the digest says so in one line."""
        return not (
            self.new_total
            or self.outcomes
            or self.stale_unacknowledged_total
            or self.stale_open_total
            or self.notices
            or self.pending_requests
            or self.officers
        )


def daily_buckets(
    rows: Sequence[tuple[int, str]], days: int, end: dt.datetime
) -> tuple[list[str], dict[str, list[int]]]:
    """(day labels, counts per category per day) for the ``days`` local days before ``end``."""
    zone = end.tzinfo
    assert zone is not None
    first = end.date() - dt.timedelta(days=days)
    labels = [(first + dt.timedelta(days=i)).strftime("%m-%d") for i in range(days)]
    series: dict[str, list[int]] = {}
    for created_ms, category in rows:
        day = dt.datetime.fromtimestamp(created_ms / 1000, zone).date()
        index = (day - first).days
        if 0 <= index < days:
            series.setdefault(category, [0] * days)[index] += 1
    return labels, series
