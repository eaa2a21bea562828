"""Shared case operations: opening a case, telling the officers, changing its status,
announcing outcomes to the group, and the pinned case board of each room.

Informant safety: the officers' room never shows who reported (``!case N`` does,
for officers, unless the tip was anonymous); a private (DM) or anonymous case is
never echoed to any group room — not its text, not its outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache
from zoneinfo import ZoneInfo

from bot.domain import cases as rules
from bot.domain.cases import Case
from bot.domain.org import ManagedRoom
from bot.domain.render import Language, UnknownMessageKey, text
from bot.domain.tips import TipAnalysis
from bot.features.context import Deps
from bot.store import cases, intake, org, taskforces
from bot.store.cases import NewCase, PlacedCase

DUPLICATE_WINDOW_MS = 24 * 3_600_000
MEDIA_WINDOW_MS = 5 * 60_000


@cache
def category_label(lang: Language, category: str) -> str:
    try:
        return text(lang, f"category.{category}")
    except UnknownMessageKey:
        return category


@cache
def status_label(lang: Language, status: str) -> str:
    return text(lang, f"status.{status}")


@cache
def authority_label(lang: Language, authority: str) -> str:
    try:
        return text(lang, f"authority.{authority}")
    except UnknownMessageKey:
        return authority


def local_now(deps: Deps) -> dt.datetime:
    return dt.datetime.fromtimestamp(deps.now_ms / 1000, ZoneInfo(deps.config.timezone))


def month_key(deps: Deps, at_ms: int | None = None) -> str:
    moment = dt.datetime.fromtimestamp(
        (at_ms if at_ms is not None else deps.now_ms) / 1000, ZoneInfo(deps.config.timezone)
    )
    return moment.strftime("%Y-%m")


async def open_case(
    deps: Deps,
    *,
    station_id: str,
    source: str,
    body: str,
    analysis: TipAnalysis | None,
    created_by: str,
    reporter: str | None = None,
    reporter_name: str | None = None,
    anonymous: bool = False,
    room: ManagedRoom | None = None,
    neighbourhood_id: int | None = None,
    dm_room: str | None = None,
    event_id: str | None = None,
    category: str | None = None,
    location: str | None = None,
) -> Case:
    """Record a case and everything that follows at once (attachments, duplicates, officers)."""
    stored, truncated = rules.clip(body)
    station = deps.config.station(station_id)
    nbh_id = room.neighbourhood_id if room else neighbourhood_id
    nbh = await org.neighbourhood_by_id(deps.conn, nbh_id) if nbh_id else None
    case = await cases.create(
        deps.conn,
        NewCase(
            station_id=station_id,
            year=local_now(deps).year,
            source=source,
            category=category or (analysis.category if analysis and analysis.category else "other"),
            text=stored,
            text_truncated=truncated,
            created_by=created_by,
            reporter=reporter,
            reporter_name=reporter_name,
            anonymous=anonymous,
            neighbourhood_id=nbh_id,
            room_id=room.room_id if room else dm_room,
            event_id=event_id,
            urgent=bool(analysis and analysis.emergency),
            location=location or (analysis.location if analysis else None),
            identifiers=analysis.identifiers if analysis else (),
            confidence=analysis.confidence if analysis else None,
            assignee=nbh.officer if nbh else None,
            prefix=station.case_prefix if station else None,
        ),
        deps.now_ms,
    )
    if event_id is not None:
        await cases.remember_message(deps.conn, event_id, case.id, "tip")
    await deps.audit.record(
        created_by,
        "case.created",
        target=case.number,
        room_id=case.room_id,
        detail={"source": source, "category": case.category, "urgent": case.urgent},
    )
    if reporter and case.room_id:
        since = deps.now_ms - MEDIA_WINDOW_MS
        for media in await intake.media_before(deps.conn, case.room_id, reporter, since):
            await cases.attach(
                deps.conn, case.id, media.content, media.event_id, reporter, deps.now_ms
            )
    duplicates = await possible_duplicates(deps, case)
    await notify_new_case(deps, case, duplicates)
    if room is not None and not case.private:
        await update_board(deps, room)
    return case


async def possible_duplicates(deps: Deps, case: Case) -> list[PlacedCase]:
    """Same neighbourhood, category and nearby place within a day: linked and flagged."""
    if case.neighbourhood_id is None or not case.location:
        return []
    similar = await cases.recent_similar(
        deps.conn,
        neighbourhood_id=case.neighbourhood_id,
        category=case.category,
        since=deps.now_ms - DUPLICATE_WINDOW_MS,
        exclude=case.id,
    )
    found = [c for c in similar if rules.same_place(c.location, case.location)]
    if found:
        await cases.link_all(
            deps.conn,
            case.id,
            [other.id for other in found],
            "possible_duplicate",
            deps.bot_id,
            deps.now_ms,
        )
    return found


def reporter_label(deps: Deps, case: Case, lang: Language, pseudonym: int | None) -> str:
    if case.anonymous:
        return text(lang, "case.anonymous_reporter", number=pseudonym or 0)
    return case.reporter_name or case.reporter or text(lang, "case.unknown_reporter")


async def officers_room_of(deps: Deps, station_id: str) -> ManagedRoom | None:
    return await org.officers_room(deps.conn, station_id)


async def notify_new_case(deps: Deps, case: Case, duplicates: Sequence[PlacedCase]) -> None:
    station = deps.config.station(case.station_id)
    room = await officers_room_of(deps, case.station_id)
    if station is None:
        return
    lang = room.language if room else deps.config.language
    mentions = list(station.officers) if case.urgent else ([case.assignee] if case.assignee else [])
    source_room = await org.room(deps.conn, case.room_id) if case.room_id else None
    message = deps.render(
        "case.private_notice" if case.private else "case.new_notice",
        lang,
        number=case.number,
        category=category_label(lang, case.category),
        location=case.location or "",
        room=source_room.name if source_room else "",
        urgent=case.urgent,
        excerpt=rules.excerpt(case.text, 300),
        duplicates=[d.number for d in duplicates],
        officers=mentions,
        seq=int(case.number.rsplit("-", 1)[1]),
    )
    if room is None:
        for officer in station.officers:
            await deps.messenger.send_dm(officer, message, tag=case_tag(case, "notice"))
        return
    row = await deps.messenger.send(
        room.room_id, message, mentions=mentions, tag=case_tag(case, "notice")
    )
    await cases.remember_message(deps.conn, cases.row_ref(row), case.id, "notice")


def case_tag(case: Case, kind: str) -> dict[str, object]:
    return {"kind": f"case.{kind}", "case": case.number}


async def change_status(
    deps: Deps,
    case: Case,
    new_status: str,
    actor: str,
    *,
    note: str | None = None,
    referred_to: str | None = None,
    duplicate_of: Case | None = None,
) -> Case:
    """Move a case (the caller has checked the transition); history, audit, announcements."""
    now = deps.now_ms
    fields: dict[str, object] = {"status": new_status}
    if new_status == "acknowledged":
        fields["acknowledged_at"] = now
    elif new_status == "investigating":
        fields["investigating_at"] = now
        if case.acknowledged_at is None:
            fields["acknowledged_at"] = now
    elif new_status in rules.CLOSED:
        fields["closed_at"] = now
        fields["outcome"] = note
        if case.acknowledged_at is None:
            fields["acknowledged_at"] = now
    if referred_to is not None:
        fields["referred_to"] = referred_to
    if duplicate_of is not None:
        fields["duplicate_of"] = duplicate_of.id
    await cases.update(deps.conn, case.id, now, **fields)
    await cases.add_event(
        deps.conn,
        case.id,
        actor,
        "status",
        case.status,
        new_status,
        note or referred_to or (duplicate_of.number if duplicate_of else None),
        now,
    )
    await deps.audit.record(
        actor,
        f"case.{new_status}",
        target=case.number,
        detail={"from": case.status, "note": note, "to": referred_to},
    )
    updated = await cases.by_id(deps.conn, case.id)
    assert updated is not None
    if new_status in rules.ANNOUNCED:
        await announce_outcome(deps, updated)
    await refresh_board(deps, updated)
    await tell_task_forces(deps, case, updated, actor)
    return updated


async def tell_task_forces(deps: Deps, before: Case, after: Case, actor: str) -> None:
    """Post a linked case's new status in each open task force's room (no reporter)."""
    for force in await taskforces.open_for_case(deps.conn, after.id):
        assert force.room_id is not None
        lang = await org.room_language(deps.conn, force.room_id, deps.config.language)
        await deps.messenger.send(
            force.room_id,
            deps.render(
                "taskforce.case_update",
                lang,
                number=after.number,
                old=status_label(lang, before.status),
                new=status_label(lang, after.status),
                actor=actor,
            ),
            tag={"kind": "taskforce.case_update", "case": after.number},
        )


async def reopen(deps: Deps, case: Case, actor: str, reason: str) -> Case:
    now = deps.now_ms
    await cases.update(
        deps.conn,
        case.id,
        now,
        status="investigating",
        reopened_at=now,
        closed_at=None,
        outcome=None,
    )
    await cases.add_event(
        deps.conn, case.id, actor, "reopened", case.status, "investigating", reason, now
    )
    await deps.audit.record(actor, "case.reopened", target=case.number, detail={"reason": reason})
    updated = await cases.by_id(deps.conn, case.id)
    assert updated is not None
    await refresh_board(deps, updated)
    return updated


async def announce_outcome(deps: Deps, case: Case) -> None:
    """The group sees what came of a report (no private details); a DM reporter is told by DM."""
    if case.private:
        if case.reporter:
            lang = deps.config.language
            await deps.messenger.send_dm(
                case.reporter,
                deps.render(
                    "case.outcome_private",
                    lang,
                    number=case.number,
                    status=case.status,
                    category=category_label(lang, case.category),
                    authority=authority_label(lang, case.referred_to or ""),
                ),
                tag=case_tag(case, "outcome"),
            )
        return
    room = await org.room(deps.conn, case.room_id) if case.room_id else None
    if room is None:
        return
    lang = room.language
    await deps.messenger.send(
        room.room_id,
        deps.render(
            "case.outcome_group",
            lang,
            number=case.number,
            status=case.status,
            category=category_label(lang, case.category),
            authority=authority_label(lang, case.referred_to or ""),
        ),
        reply_to=case.event_id,
        tag=case_tag(case, "outcome"),
    )


async def refresh_board(deps: Deps, case: Case) -> None:
    if case.private or case.room_id is None:
        return
    room = await org.room(deps.conn, case.room_id)
    if room is not None and room.kind == "neighbourhood":
        await update_board(deps, room)


async def update_board(deps: Deps, room: ManagedRoom) -> None:
    """The room's board must show a change: it is rendered once, when the unit of work
    (a /sync batch, a timer run) ends — not once per case of a batch of fifty."""
    await intake.board_due(deps.conn, room.room_id)


async def flush_boards(deps: Deps) -> None:
    """Render every board marked due in this unit of work (see ``update_board``)."""
    for room_id in await intake.take_boards_due(deps.conn):
        room = await org.room(deps.conn, room_id)
        if room is not None:
            await _render_board(deps, room)


async def _render_board(deps: Deps, room: ManagedRoom) -> None:
    """The room's pinned board of this month's cases: posted once a month, then edited."""
    month = month_key(deps)
    start = _month_start_ms(deps)
    public, _ = await cases.search(
        deps.conn,
        station_ids=[room.station_id or ""],
        room_id=room.room_id,
        since=start,
        limit=50,
    )
    lines = [
        {
            "number": c.number,
            "category": category_label(room.language, c.category),
            "status": status_label(room.language, c.status),
            "location": c.location or "",
            "urgent": c.urgent,
        }
        for c in public
        if not c.private
    ]
    message = deps.render("case.board", room.language, month=month, lines=lines)
    existing = await intake.board_row(deps.conn, room.room_id, month)
    if existing is not None:
        await deps.messenger.edit(room.room_id, existing, message, tag={"kind": "case.board"})
        return
    row = await deps.messenger.send(room.room_id, message, tag={"kind": "case.board"})
    await intake.set_board_row(deps.conn, room.room_id, month, row)
    pinned = [r for r in (await org.rules_row(deps.conn, room.room_id), row) if r is not None]
    await deps.actions.pin(room.room_id, pinned)


def _month_start_ms(deps: Deps) -> int:
    now = local_now(deps)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp() * 1000)
