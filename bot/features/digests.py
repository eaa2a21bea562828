"""Supervisor digests: daily and weekly, on schedule, exactly once per room and period.

``run_due`` is the whole scheduling rule, so that it is the same at 08:00 sharp, a
minute later, or after a restart: for each digest room and kind, take the last
time its schedule fired; if that is after the room was made and its period has
no recorded run, record the run and send the digest (late if the fire time is
long past — the bot was down — and saying how many earlier ones were missed).
Recording and sending are one transaction through the outbox: never twice, never
lost. Reporter names never appear: only counts, case numbers and officers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from bot.commands import ParsedCommand, UsageError
from bot.config import Station
from bot.domain import digest as rules
from bot.domain.chart import cases_chart
from bot.domain.digest import DigestFigures, Kind, Period
from bot.domain.org import ManagedRoom, parse_duration_ms
from bot.domain.render import Language, text
from bot.domain.roles import STAFF
from bot.features.casework import category_label, status_label
from bot.features.context import CommandContext, Deps
from bot.features.registry import Features
from bot.store import cases, digests, org
from bot.store.digests import figures

MAX_EVENT_BYTES = 60_000
"""Synapse refuses events over 64 KiB; a digest stays well under, whatever the numbers."""
LIST_CAP = 15


def zone(deps: Deps) -> ZoneInfo:
    return ZoneInfo(deps.config.timezone)


def now_local(deps: Deps) -> dt.datetime:
    return dt.datetime.fromtimestamp(deps.now_ms / 1000, zone(deps))


def scope_of(deps: Deps, room: ManagedRoom) -> tuple[str, list[Station]]:
    """(scope name, stations covered) of a digest room."""
    config = deps.config
    if room.district is not None:
        district = config.district(room.district)
        stations = config.stations_in(room.district)
        name = district.name if district else room.district
        if room.external:
            # The district's own room, shared with other stations' bots: this bot's section.
            name = f"{name} · {', '.join(s.name for s in stations)}"
        return name, stations
    station = config.station(room.station_id)
    return (station.name if station else str(room.station_id)), [station] if station else []


async def build(
    deps: Deps, scope: str, stations: Sequence[Station], period: Period
) -> DigestFigures:
    config = deps.config
    return await figures(
        deps.conn,
        scope=scope,
        station_ids=[s.id for s in stations],
        period=period,
        now_ms=deps.now_ms,
        stale_unacknowledged_ms=config.digests.stale_unacknowledged_hours * 3_600_000,
        stale_open_ms=config.digests.stale_open_days * 86_400_000,
        station_names={s.id: s.name for s in stations},
    )


def render_digest(
    deps: Deps,
    lang: Language,
    found: DigestFigures,
    *,
    late: bool = False,
    missed: int = 0,
    on_demand: bool = False,
) -> Any:
    def cap(items: list[Any]) -> tuple[list[Any], int]:
        return items[:LIST_CAP], max(0, len(items) - LIST_CAP)

    nbh, nbh_more = cap(found.by_neighbourhood)
    officers, officers_more = cap(found.officers)
    params = dict(
        scope=found.scope,
        kind=found.period.kind,
        period=found.period.label(),
        late=late,
        missed=missed,
        on_demand=on_demand,
        quiet=found.quiet,
        new_total=found.new_total,
        new_change=rules.change(found.new_total, found.new_previous),
        categories=[
            {"name": category_label(lang, c.name), "count": c.count, "change": c.change}
            for c in found.by_category
        ],
        neighbourhoods=[{"name": c.name, "count": c.count, "change": c.change} for c in nbh],
        neighbourhoods_more=nbh_more,
        stations=[{"name": c.name, "count": c.count, "change": c.change} for c in found.by_station],
        urgent=[
            {"number": n, "category": category_label(lang, c), "status": status_label(lang, s)}
            for n, c, s in found.urgent
        ],
        outcomes=[{"name": status_label(lang, c.name), "count": c.count} for c in found.outcomes],
        referred=[{"name": c.name, "count": c.count} for c in found.referred],
        median_ack=rules.human_duration(found.median_ack_s),
        median_close=rules.human_duration(found.median_close_s),
        stale_unacked=[_stale(lang, s) for s in found.stale_unacknowledged],
        stale_unacked_total=found.stale_unacknowledged_total,
        stale_open=[_stale(lang, s) for s in found.stale_open],
        stale_open_total=found.stale_open_total,
        stale_hours=deps.config.digests.stale_unacknowledged_hours,
        stale_days=deps.config.digests.stale_open_days,
        officers=[
            {
                "officer": o.officer,
                "handled": o.handled,
                "response": rules.human_duration(o.median_response_s),
            }
            for o in officers
        ],
        officers_more=officers_more,
        active_reporters=found.active_reporters,
        new_members=found.new_members,
        pending_requests=found.pending_requests,
        notices=[
            {"number": n.number, "kind": n.kind, "title": n.title, "sightings": n.sightings}
            for n in found.notices
        ],
        hotspots=[{"name": c.name, "count": c.count} for c in found.hotspots],
    )
    message = deps.render("digest.body", lang, **params)
    size = len(message.body.encode()) + len((message.html or "").encode())
    if size > MAX_EVENT_BYTES:  # cannot happen with the caps above; never send an oversize
        from bot.domain.render import Message

        message = Message(message.body.encode()[: MAX_EVENT_BYTES // 2].decode(errors="ignore"))
    return message


def _stale(lang: Language, stale: rules.StaleCase) -> dict[str, Any]:
    return {
        "number": stale.number,
        "category": category_label(lang, stale.category),
        "age": rules.human_duration(stale.age_hours * 3600),
        "assignee": stale.assignee or "",
    }


async def send_chart(
    deps: Deps, room: ManagedRoom, stations: Sequence[Station], period: Period
) -> None:
    since = period.end - dt.timedelta(days=14)
    rows = await digests.daily_rows(
        deps.conn, [s.id for s in stations], int(since.timestamp() * 1000), period.end_ms
    )
    days, series = rules.daily_buckets(rows, 14, period.end)
    labels = {c: text("en", f"category.{c}") for c in series}
    title = text("en", "digest.chart_title", scope="")
    png = cases_chart(days, series, labels, title)
    await deps.messenger.send_image(
        room.room_id,
        png,
        filename="cases-14-days.png",
        mimetype="image/png",
        width=800,
        height=360,
        caption=deps.render("digest.chart_caption", room.language).body,
        tag={"kind": "digest.chart"},
    )


async def run_due(deps: Deps) -> int:
    """Send every digest whose time has come and that was not sent; returns how many."""
    sent = 0
    now = now_local(deps)
    late_ms = deps.config.digests.late_after_minutes * 60_000
    for room in await org.rooms(deps.conn, kind="digest"):
        scope, stations = scope_of(deps, room)
        if not stations:
            continue
        created = await org.room_created_at(deps.conn, room.room_id)
        schedule = deps.config.schedule_of(
            deps.config.station(room.station_id) if room.district is None else None,
            room.district,
        )
        for kind in rules.KINDS:
            cron = schedule.daily if kind == "daily" else schedule.weekly
            fired = rules.last_fire(cron, zone(deps), now)
            if fired is None or int(fired.timestamp() * 1000) < created:
                continue
            period = rules.period_for_run(kind, fired)
            previous_end = await digests.last_period_end(deps.conn, room.room_id, kind)
            late = deps.now_ms - int(fired.timestamp() * 1000) > late_ms
            if not await digests.claim_run(
                deps.conn, room.room_id, period, late=late, now=deps.now_ms
            ):
                continue
            missed = _periods_between(kind, previous_end, period)
            found = await build(deps, scope, stations, period)
            row = await deps.messenger.send(
                room.room_id,
                render_digest(deps, room.language, found, late=late, missed=missed),
                tag={"kind": f"digest.{kind}", "period": period.label(), "late": late},
            )
            await digests.set_run_message(deps.conn, room.room_id, period, row)
            if kind == "daily" and deps.config.digests.chart:
                await send_chart(deps, room, stations, period)
            await deps.audit.record(
                deps.bot_id,
                f"digest.{kind}",
                room_id=room.room_id,
                detail={"period": period.label(), "late": late, "missed": missed},
            )
            sent += 1
    return sent


def _periods_between(kind: Kind, previous_end: int | None, period: Period) -> int:
    if previous_end is None:
        return 0
    length_ms = (1 if kind == "daily" else 7) * 86_400_000
    gap = period.start_ms - previous_end
    return max(0, round(gap / length_ms))


async def nudge(deps: Deps) -> int:
    """Officers' daily reminder of their stale cases, once per scheduled time."""
    config = deps.config
    if config.digests.nudges == "off":
        return 0
    fired = rules.last_fire(config.digests.nudge_at, zone(deps), now_local(deps))
    if fired is None or not await digests.claim_job(
        deps.conn, "nudge", int(fired.timestamp() * 1000)
    ):
        return 0
    stale_ms = config.digests.stale_unacknowledged_hours * 3_600_000
    count = 0
    for station in config.stations:
        found, _ = await cases.search(
            deps.conn,
            station_ids=[station.id],
            statuses=("new", "acknowledged", "investigating"),
            limit=500,
        )
        stale = [c for c in found if deps.now_ms - c.created_at > stale_ms]
        for officer in station.officers:
            mine = [c for c in stale if c.assignee in (officer, None)]
            if not mine:
                continue
            message = deps.render(
                "digest.nudge",
                numbers=[
                    {
                        "number": c.number,
                        "category": category_label(config.language, c.category),
                        "status": status_label(config.language, c.status),
                        "mine": c.assignee == officer,
                    }
                    for c in mine[:20]
                ],
                more=max(0, len(mine) - 20),
            )
            room = await org.officers_room(deps.conn, station.id)
            if config.digests.nudges == "officers_room" and room is not None:
                await deps.messenger.send(room.room_id, message, mentions=[officer])
            else:
                await deps.messenger.send_dm(officer, message)
            count += 1
    return count


def register(features: Features) -> None:
    commands = features.commands

    @commands.command(
        "digest",
        usage="[daily|weekly] [station|district]",
        roles=STAFF,
        help_en="The digest so far today (or this week), for your station or district.",
        help_zh="本所或本区今日（或本周）至今的简报。",
    )
    async def digest(ctx: CommandContext, parsed: ParsedCommand) -> None:
        kind: Kind = "daily"
        level = "station"
        for arg in parsed.args:
            low = arg.lower()
            if low in rules.KINDS:
                kind = "daily" if low == "daily" else "weekly"
            elif low in ("station", "district"):
                level = low
            else:
                raise UsageError()
        config = ctx.deps.config
        if level == "district":
            supervised = [d.id for d in config.districts if ctx.sender in d.supervisors]
            if not supervised:
                await ctx.audit.record(ctx.sender, "scope.refused", target="digest district")
                await ctx.reply("digest.not_your_scope")
                return
            scope = config.district(supervised[0])
            stations = config.stations_in(supervised[0])
            name = scope.name if scope else supervised[0]
        else:
            stations = [
                s
                for s in config.stations
                if ctx.sender in s.officers or ctx.sender in s.supervisors
            ]
            if not stations:
                await ctx.reply("digest.not_your_scope")
                return
            name = ", ".join(s.name for s in stations)
        period = rules.period_for_request(kind, now_local(ctx.deps))
        found = await build(ctx.deps, name, stations, period)
        await ctx.messenger.send(
            ctx.event.room_id,
            render_digest(ctx.deps, ctx.lang, found, on_demand=True),
            reply_to=ctx.event.event_id,
        )

    @commands.command(
        "stats",
        usage="[7d|30d|…]",
        roles=STAFF,
        help_en="Case counts by category and status over a window (default 30 days).",
        help_zh="某时间段内（默认 30 天）按类别和状态统计的案件数。",
    )
    async def stats(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) > 1:
            raise UsageError()
        window = parse_duration_ms(parsed.args[0]) if parsed.args else 30 * 86_400_000
        if window is None:
            raise UsageError(key="usage.bad_duration", value=parsed.args[0])
        stations = [
            s.id
            for s in ctx.deps.config.stations
            if ctx.sender in s.officers or ctx.sender in s.supervisors
        ]
        since = ctx.now_ms - window
        marks = ",".join("?" for _ in stations)
        cur = await ctx.deps.conn.execute(
            f"SELECT category, status, COUNT(*) FROM cases WHERE station_id IN ({marks})"
            " AND created_at >= ? GROUP BY 1, 2",
            (*stations, since),
        )
        table: dict[str, dict[str, int]] = {}
        for category, status, count in await cur.fetchall():
            table.setdefault(category, {})[status] = int(count)
        rows = [
            {
                "category": category_label(ctx.lang, cat),
                "total": sum(v.values()),
                "open": sum(
                    n for s, n in v.items() if s in ("new", "acknowledged", "investigating")
                ),
                "solved": v.get("solved", 0),
                "referred": v.get("referred", 0),
            }
            for cat, v in sorted(table.items(), key=lambda kv: -sum(kv[1].values()))
        ]
        await ctx.reply(
            "digest.stats",
            rows=rows,
            days=round(window / 86_400_000, 1),
            total=sum(r["total"] for r in rows),
        )

    @commands.command(
        "retention",
        roles=STAFF,
        help_en="The retention policy: when closed cases are anonymised, and the last run.",
        help_zh="数据保留策略：已结案件何时匿名化，以及上次执行情况。",
    )
    async def retention(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if parsed.args:
            raise UsageError()
        cur = await ctx.deps.conn.execute(
            "SELECT fired_at, detail FROM job_runs WHERE job = 'retention'"
            " ORDER BY fired_at DESC LIMIT 1"
        )
        row = await cur.fetchone()
        last = json.loads(row[1]) if row and row[1] else {}
        policy = ctx.deps.config.retention
        await ctx.reply(
            "digest.retention",
            days=policy.closed_case_days,
            at=policy.run_at,
            dry_run=policy.dry_run,
            last=last.get("at", ""),
            count=last.get("count", 0),
            last_dry=last.get("dry_run", False),
        )
