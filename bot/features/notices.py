"""Alerts and wanted-person notices: bulletins to the right rooms, sightings to the officer only.

* ``!alert <scope> "<text>"`` posts a notice card (with a photo when it replies to
  one) to every room of the scope; ``!alert withdraw`` posts a withdrawal there.
* ``!wanted "<name>" "<details>"`` takes a photo the officer sent (or sends next):
  its metadata is stripped before it is re-posted, with a card, to every target
  room (default: the station's guards rooms). Found, withdrawn or expired, the
  rooms are told and the photos are redacted.
* Sightings — a reply to a notice in a room, or a DM naming it ("saw W-12 …") —
  go to the officer (DM and officers' room) and are never echoed to a group:
  the member is thanked by DM.
* Fan-out goes through the outbox: rate limits honoured, order kept per room, a
  restart neither skips a room nor posts twice.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from bot.commands import ParsedCommand, UsageError
from bot.delivery import Outcome
from bot.domain import cases as case_rules
from bot.domain.org import ManagedRoom, parse_duration_ms, split_room_ref
from bot.domain.roles import OFFICERS, STAFF, Role
from bot.domain.tips import locate
from bot.features.cases import find_case
from bot.features.context import CommandContext, Deps, EventContext
from bot.features.registry import Features
from bot.features.scope import officer_station, options, visible_stations
from bot.store import intake, notices, org, outbox
from bot.store.notices import Notice

LEVELS = ("alert", "advisory", "community")
PHOTO_WINDOW_MS = 10 * 60_000
NOTICE_REF = re.compile(r"(?<![A-Za-z0-9])([AW])\s*-?\s*(\d{1,6})(?!\d)", re.IGNORECASE)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


class ScopeError(Exception):
    def __init__(self, valid: list[str]) -> None:
        super().__init__("unknown scope")
        self.valid = valid


async def resolve_scope(deps: Deps, station_id: str, scope: str) -> list[ManagedRoom]:
    """A comma-separated list of: ``station`` | an audience | a neighbourhood slug |
    ``slug/audience`` → the union of their rooms (in the station)."""
    chosen: dict[str, ManagedRoom] = {}
    for part in (p for p in scope.split(",") if p.strip()):
        for room in await _resolve_one(deps, station_id, part):
            chosen.setdefault(room.room_id, room)
    if not chosen and not scope.strip():
        raise ScopeError(await _valid_scopes(deps, station_id))
    return list(chosen.values())


async def _resolve_one(deps: Deps, station_id: str, scope: str) -> list[ManagedRoom]:
    conn = deps.conn
    rooms = await org.rooms(conn, station_ids=[station_id], kind="neighbourhood")
    wanted = scope.strip().lower()
    if wanted in ("station", "all"):
        return rooms
    if wanted in deps.config.rooms.audiences:
        return [room for room in rooms if room.audience == wanted]
    parts = split_room_ref(wanted)
    nbh = await org.neighbourhood_by_slug(conn, parts[0] if parts else wanted)
    if nbh is not None and nbh.station_id == station_id:
        chosen = [room for room in rooms if room.neighbourhood_id == nbh.id]
        if parts:
            chosen = [room for room in chosen if room.audience == parts[1]]
        if chosen:
            return chosen
    raise ScopeError(await _valid_scopes(deps, station_id))


async def _valid_scopes(deps: Deps, station_id: str) -> list[str]:
    conn = deps.conn
    rooms = await org.rooms(conn, station_ids=[station_id], kind="neighbourhood")
    slugs = sorted({n.slug for n in await org.neighbourhoods(conn, [station_id])})
    refs = []
    for room in rooms:
        owner = await org.neighbourhood_by_id(conn, room.neighbourhood_id or 0)
        if owner is not None:
            refs.append(f"{owner.slug}/{room.audience}")
    return ["station", *deps.config.rooms.audiences, *slugs, *sorted(refs)]


def photo_of(content: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any] | None, str | None]:
    """The source of a photo message for re-hosting, or why it cannot be used."""
    msgtype = content.get("msgtype")
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    assert isinstance(info, dict)
    mimetype = str(info.get("mimetype", ""))
    if msgtype not in ("m.image", "m.file") or (
        msgtype == "m.file" and mimetype not in IMAGE_TYPES
    ):
        return None, "not_image"
    if mimetype and mimetype not in IMAGE_TYPES:
        return None, "not_image"
    size = info.get("size")
    if isinstance(size, int) and size > max_bytes:
        return None, "too_big"
    source: dict[str, Any] = {"max_bytes": max_bytes}
    if isinstance(content.get("url"), str):
        source["source"] = content["url"]
    elif isinstance(content.get("file"), dict) and isinstance(content["file"].get("url"), str):
        source["source"] = content["file"]["url"]
        source["file"] = content["file"]
    else:
        return None, "not_image"
    return source, None


async def post_notice(
    deps: Deps, notice: Notice, rooms: Sequence[ManagedRoom], photo: dict[str, Any] | None
) -> None:
    """Queue photo + card for every room (one re-hosted, metadata-free copy of the photo)."""
    rehost = None
    if photo is not None:
        plain = any(not room.encrypted for room in rooms)
        secret = any(room.encrypted for room in rooms)
        rehost = await outbox.enqueue(
            deps.conn,
            None,
            None,
            {**photo, "plain": plain, "encrypted": secret},
            kind="rehost",
            lane=f"media:{notice.number}",
            on_done="notice.photo",
            on_done_args={"number": notice.number, "officer": notice.officer},
        )
        await notices.set_photo(deps.conn, notice.id, rehost)
    station = deps.config.station(notice.station_id)
    for room in rooms:
        photo_row = None
        tag = {"kind": notice.kind, "id": notice.number}
        if rehost is not None:
            photo_row = await outbox.enqueue(
                deps.conn,
                room.room_id,
                "m.room.message",
                {
                    "msgtype": "m.image",
                    "body": deps.render(
                        "notices.photo_caption", room.language, number=notice.number
                    ).body,
                    "url": outbox.ref(rehost, "url"),
                    "file": outbox.ref(rehost, "file"),
                    "info": {
                        "mimetype": outbox.ref(rehost, "mimetype"),
                        "w": outbox.ref(rehost, "w"),
                        "h": outbox.ref(rehost, "h"),
                        "size": outbox.ref(rehost, "size"),
                    },
                    "m.mentions": {},
                    "org.neighborwatch": tag,
                },
            )
        card = deps.render(
            "notices.card",
            room.language,
            kind=notice.kind,
            number=notice.number,
            level=notice.level or "",
            title=notice.title or "",
            text=notice.text,
            station=station.name if station else notice.station_id,
            officer=notice.officer,
            expires=_date(deps, notice.expires_at),
        )
        card_row = await deps.messenger.send(room.room_id, card, tag=tag)
        await notices.add_post(deps.conn, notice.id, room.room_id, card_row, photo_row)


def _date(deps: Deps, ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(deps.config.timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


async def close_notice(deps: Deps, notice: Notice, status: str, by: str, note: str | None) -> int:
    """Tell every room, redact the photos (wanted), record it. Returns the rooms told."""
    await notices.close(deps.conn, notice.id, status, by, note, deps.now_ms)
    await deps.audit.record(
        by, f"{notice.kind}.{status}", target=notice.number, detail={"note": note}
    )
    redact = notice.kind == "wanted" and deps.config.notices.redact_on_close
    posts = await notices.posts(deps.conn, notice.id)
    for post in posts:
        lang = await org.room_language(deps.conn, post.room_id, deps.config.language)
        await deps.messenger.send(
            post.room_id,
            deps.render(
                "notices.closed",
                lang,
                kind=notice.kind,
                number=notice.number,
                status=status,
                title=notice.title or "",
            ),
            reply_to=outbox.ref(post.card_row),
            tag={"kind": f"{notice.kind}.{status}", "id": notice.number},
        )
        if redact and post.photo_row is not None:
            await outbox.enqueue(
                deps.conn,
                post.room_id,
                None,
                {"reason": f"{notice.number} {status}"},
                kind="redact",
                target=outbox.ref(post.photo_row),
            )
    return len(posts)


async def tick(deps: Deps) -> None:
    """Expire what is due and remind officers before wanted notices expire (once)."""
    for notice in await notices.expired(deps.conn, deps.now_ms):
        await close_notice(deps, notice, "expired", deps.bot_id, None)
        await deps.messenger.send_dm(
            notice.officer,
            deps.render("notices.expired_officer", number=notice.number, title=notice.title or ""),
        )
    before = parse_duration_ms(deps.config.notices.remind_before) or 0
    for notice in await notices.due_reminders(deps.conn, deps.now_ms, before):
        days = max(0, round((notice.expires_at - deps.now_ms) / 86_400_000))
        await deps.messenger.send_dm(
            notice.officer,
            deps.render(
                "notices.reminder", number=notice.number, title=notice.title or "", days=days
            ),
        )
        await notices.mark_reminded(deps.conn, notice.id, deps.now_ms)
        await deps.audit.record(deps.bot_id, "wanted.reminded", target=notice.number)


async def record_sighting(ctx: EventContext, notice: Notice | None, typed: str | None) -> None:
    deps, event = ctx.deps, ctx.event
    content = dict(event.content)
    attachment = content if event.msgtype in ("m.image", "m.file", "m.video") else None
    text, _ = case_rules.clip(event.body, 2000)
    location = locate(text) if text else None
    late = notice is None or not notice.active
    if notice is not None:
        added = await notices.add_sighting(
            deps.conn,
            notice_id=notice.id,
            reporter=ctx.sender,
            room_id=event.room_id,
            event_id=event.event_id,
            text=text,
            location=location,
            attachment=attachment,
            late=late,
            now=ctx.now_ms,
        )
        if not added:
            return
    await deps.audit.record(
        ctx.sender,
        "sighting",
        target=notice.number if notice else typed,
        room_id=event.room_id,
        detail={"late": late},
    )
    officer = notice.officer if notice else None
    station_id = notice.station_id if notice else None
    message = deps.render(
        "notices.sighting_notice",
        number=notice.number if notice else (typed or "?"),
        title=notice.title if notice and notice.title else "",
        reporter=ctx.sender,
        text=text,
        location=location or "",
        late=late,
        photo=attachment is not None,
        unknown=notice is None,
    )
    if officer is not None:
        await deps.messenger.send_dm(officer, message, tag={"kind": "sighting"})
    stations = [station_id] if station_id else [m.station_id for m in await _rooms_of(ctx)]
    for sid in dict.fromkeys(s for s in stations if s):
        room = await org.officers_room(deps.conn, sid)
        if room is not None:
            await deps.messenger.send(
                room.room_id,
                message,
                mentions=[officer] if officer else [],
                tag={"kind": "sighting"},
            )
    thanks = deps.render(
        "notices.sighting_thanks",
        ctx.lang,
        officer=officer or "",
        number=notice.number if notice else (typed or ""),
    )
    if ctx.in_dm:  # answer where they wrote
        await deps.messenger.send(event.room_id, thanks, reply_to=event.event_id)
    else:  # never in the group: by direct message
        await deps.messenger.send_dm(ctx.sender, thanks)


async def _rooms_of(ctx: EventContext) -> list[ManagedRoom]:
    found = []
    for member in await org.memberships(ctx.deps.conn, ctx.sender):
        room = await org.room(ctx.deps.conn, member.room_id)
        if room is not None:
            found.append(room)
    return found


async def _replied_photo(ctx: CommandContext) -> tuple[dict[str, Any] | None, bool]:
    """(the photo the command replies to or None, whether it was refused and answered)."""
    target = ctx.event.in_reply_to
    if target is None:
        return None, False
    original = await intake.message(ctx.deps.conn, target)
    if original is None:
        await ctx.reply("notices.photo_unknown")
        return None, True
    max_bytes = int(ctx.deps.config.notices.max_photo_mb * 1_000_000)
    photo, problem = photo_of(original.content, max_bytes)
    if problem is not None:
        await ctx.reply(f"notices.photo_{problem}", mb=ctx.deps.config.notices.max_photo_mb)
        return None, True
    return photo, False


async def _rooms_or_explain(
    ctx: CommandContext, station_id: str, scope: str
) -> list[ManagedRoom] | None:
    try:
        rooms = await resolve_scope(ctx.deps, station_id, scope)
    except ScopeError as err:
        await ctx.reply("notices.unknown_scope", scope=scope, valid=err.valid)
        return None
    if not rooms:
        await ctx.reply("notices.no_rooms", scope=scope)
        return None
    return rooms


async def _own_notice(ctx: CommandContext, ref: str, kind: str) -> Notice | None:
    match = NOTICE_REF.fullmatch(ref.strip())
    notice = (
        await notices.by_number(ctx.deps.conn, f"{match.group(1)}-{match.group(2)}")
        if match
        else None
    )
    stations = {s.id for s in ctx.deps.config.stations_of(ctx.sender)}
    if notice is None or notice.kind != kind or notice.station_id not in stations:
        await ctx.reply("notices.unknown", ref=ref)
        return None
    return notice


async def _close_command(
    ctx: CommandContext, parsed: ParsedCommand, kind: str, status: str
) -> None:
    if not parsed.args:
        raise UsageError()
    notice = await _own_notice(ctx, parsed.args[0], kind)
    if notice is None:
        return
    if not notice.active:
        await ctx.reply("notices.not_active", number=notice.number, status=notice.status)
        return
    note = " ".join(parsed.args[1:]).strip() or None
    rooms = await close_notice(ctx.deps, notice, status, ctx.sender, note)
    await ctx.reply("notices.closed_done", number=notice.number, status=status, rooms=rooms)


async def _show(ctx: CommandContext, ref: str) -> None:
    notice = await _own_notice(ctx, ref, "wanted")
    if notice is None:
        return
    seen = await notices.sightings(ctx.deps.conn, notice.id)
    posts = await notices.posts(ctx.deps.conn, notice.id)
    message = ctx.render(
        "notices.detail",
        number=notice.number,
        title=notice.title or "",
        text=notice.text,
        status=notice.status,
        scope=notice.scope,
        rooms=len(posts),
        expires=_date(ctx.deps, notice.expires_at),
        sightings=[
            {
                "reporter": s.reporter,
                "text": case_rules.excerpt(s.text, 200),
                "location": s.location or "",
                "late": s.late,
                "at": _date(ctx.deps, s.at),
                "photo": s.attachment is not None,
            }
            for s in seen
        ],
    )
    if ctx.in_dm or (ctx.room is not None and ctx.room.kind == "officers"):
        await ctx.messenger.send(ctx.event.room_id, message, reply_to=ctx.event.event_id)
    else:
        await ctx.messenger.send_dm(ctx.sender, message)
        await ctx.reply("notices.sent_by_dm", number=notice.number)


async def _publish_wanted(ctx: EventContext, args: dict[str, Any], photo: dict[str, Any]) -> None:
    deps = ctx.deps
    rooms = await resolve_scope(deps, args["station"], args["scope"])
    notice = await notices.create(
        deps.conn,
        kind="wanted",
        station_id=args["station"],
        officer=ctx.sender,
        title=args["title"],
        text=args["details"],
        scope=args["scope"],
        expires_at=ctx.now_ms + int(args["ttl"]),
        now=ctx.now_ms,
        case_id=args["case_id"],
    )
    await post_notice(deps, notice, rooms, photo)
    await deps.audit.record(
        ctx.sender,
        "wanted.post",
        target=notice.number,
        detail={"scope": args["scope"], "rooms": len(rooms)},
    )
    await deps.messenger.send(
        args["reply_room"],
        deps.render("notices.posted", number=notice.number, rooms=len(rooms)),
        mentions=[ctx.sender],
    )


async def photo_processed(deps: Deps, args: dict[str, Any], outcome: Outcome) -> None:
    """Hook: the photo could not be fetched or cleaned: the officer must know (cards went out)."""
    if outcome.ok:
        return
    await deps.audit.record(
        deps.bot_id,
        "notice.photo_failed",
        target=str(args["number"]),
        detail={"error": outcome.error},
    )
    await deps.messenger.send_dm(
        str(args["officer"]),
        deps.render("notices.photo_failed", number=args["number"], error=outcome.error or ""),
    )


def register(features: Features) -> None:
    commands = features.commands
    features.hooks["notice.photo"] = photo_processed

    @commands.command(
        "alert",
        usage='<scope> "<text>" [level=alert|advisory|community] [expires=3d]',
        roles=OFFICERS,
        help_en="Post an alert card (with the photo you reply to, if any) to a room, a "
        "neighbourhood, an audience (e.g. guards) or the whole station.",
        help_zh="向某群、某小区、某类成员（如保安）或全所发布警情提示（可附所回复的照片）。",
    )
    async def alert(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (scope, text), opts = options(parsed.args, ("level", "expires", "station"), positional=2)
        level = opts.get("level", "alert").lower()
        if level not in LEVELS:
            raise UsageError(key="usage.bad_level", value=level, levels=", ".join(LEVELS))
        ttl = _duration(opts.get("expires"), ctx.deps.config.notices.alert_expires)
        station = officer_station(ctx, opts.get("station"))
        rooms = await _rooms_or_explain(ctx, station.id, scope)
        if rooms is None:
            return
        photo, refused = await _replied_photo(ctx)
        if refused:
            return
        notice = await notices.create(
            ctx.deps.conn,
            kind="alert",
            station_id=station.id,
            officer=ctx.sender,
            text=text.strip(),
            scope=scope,
            expires_at=ctx.now_ms + ttl,
            now=ctx.now_ms,
            level=level,
        )
        await post_notice(ctx.deps, notice, rooms, photo)
        await ctx.audit.record(
            ctx.sender,
            "alert.post",
            target=notice.number,
            detail={"scope": scope, "rooms": len(rooms), "level": level},
        )
        await ctx.reply("notices.posted", number=notice.number, rooms=len(rooms))

    @commands.command(
        "alert withdraw",
        usage='<A-n> ["reason"]',
        roles=OFFICERS,
        help_en="Withdraw an alert: every room that got it is told.",
        help_zh="撤回警情提示：所有收到的群都会收到通知。",
    )
    async def alert_withdraw(ctx: CommandContext, parsed: ParsedCommand) -> None:
        await _close_command(ctx, parsed, "alert", "withdrawn")

    @commands.command(
        "alerts",
        roles=STAFF,
        help_en="Active alerts and wanted notices of your station(s), with sighting counts.",
        help_zh="本所当前有效的警情提示和通缉协查通报，以及线索数量。",
    )
    async def list_notices(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if parsed.args:
            raise UsageError()
        found = await notices.active(ctx.deps.conn, [s.id for s in visible_stations(ctx)])
        counts = await notices.sighting_counts(ctx.deps.conn, [n.id for n in found])
        items = [
            {
                "number": n.number,
                "kind": n.kind,
                "title": n.title or case_rules.excerpt(n.text, 60),
                "scope": n.scope,
                "level": n.level or "",
                "expires": _date(ctx.deps, n.expires_at),
                "sightings": counts.get(n.id, 0),
            }
            for n in found
        ]
        await ctx.reply("notices.list", items=items)

    @commands.command(
        "wanted",
        usage='"<name or description>" "<details>" [case=N] [to=<scope>] [expires=30d]  '
        "(reply to a photo, or send one next)   ·   !wanted W-n",
        roles=OFFICERS,
        help_en="Post a wanted-person notice with a photo (metadata removed) to the guards "
        "rooms (or to=…); or show one with its sightings.",
        help_zh="发布带照片（已去除元数据）的协查通报，默认发到保安群（或 to=…）；"
        "或查看某通报及线索。",
    )
    async def wanted(ctx: CommandContext, parsed: ParsedCommand) -> None:
        plain, opts = options(parsed.args, ("case", "to", "expires", "station"))
        if len(plain) == 1 and NOTICE_REF.fullmatch(plain[0]):
            await _show(ctx, plain[0])
            return
        if len(plain) != 2:
            raise UsageError()
        title, details = plain[0].strip(), plain[1].strip()
        if not title or not details:
            raise UsageError()
        ttl = _duration(opts.get("expires"), ctx.deps.config.notices.wanted_expires)
        station = officer_station(ctx, opts.get("station"))
        scope = opts.get("to", ctx.deps.config.notices.wanted_scope)
        rooms = await _rooms_or_explain(ctx, station.id, scope)
        if rooms is None:
            return
        case_id = None
        if "case" in opts:
            case = await find_case(ctx, opts["case"])
            if case is None:
                return
            case_id = case.id
        args = {
            "title": title,
            "details": details,
            "scope": scope,
            "ttl": ttl,
            "station": station.id,
            "case_id": case_id,
            "reply_room": ctx.event.room_id,
        }
        photo, refused = await _replied_photo(ctx)
        if refused:
            return
        if photo is None:
            await notices.wait_for_photo(ctx.deps.conn, ctx.sender, args, ctx.now_ms)
            await ctx.reply("notices.send_photo", minutes=PHOTO_WINDOW_MS // 60_000)
            return
        await _publish_wanted(ctx, args, photo)

    for verb, status, usage in (
        ("found", "found", '<W-n> ["note"]'),
        ("withdraw", "withdrawn", '<W-n> ["reason"]'),
    ):

        async def close_wanted(
            ctx: CommandContext, parsed: ParsedCommand, status: str = status
        ) -> None:
            await _close_command(ctx, parsed, "wanted", status)

        commands.command(
            f"wanted {verb}",
            usage=usage,
            roles=OFFICERS,
            help_en=f"Close a wanted notice as {status}: the rooms are told, photos removed.",
            help_zh="结束协查通报：通知所有群并撤下照片。",
        )(close_wanted)

    @commands.command(
        "wanted extend",
        usage="<W-n> <duration, e.g. 14d>",
        roles=OFFICERS,
        help_en="Keep a wanted notice active for longer (from now).",
        help_zh="延长协查通报的有效期（从现在起算）。",
    )
    async def extend(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref, duration), _ = options(parsed.args, (), positional=2)
        ttl = parse_duration_ms(duration)
        if ttl is None:
            raise UsageError(key="usage.bad_duration", value=duration)
        notice = await _own_notice(ctx, ref, "wanted")
        if notice is None:
            return
        if not notice.active:
            await ctx.reply("notices.not_active", number=notice.number, status=notice.status)
            return
        await notices.extend(ctx.deps.conn, notice.id, ctx.now_ms + ttl)
        await ctx.audit.record(
            ctx.sender, "wanted.extend", target=notice.number, detail={"by": duration}
        )
        await ctx.reply(
            "notices.extended", number=notice.number, until=_date(ctx.deps, ctx.now_ms + ttl)
        )

    async def on_message(ctx: EventContext) -> bool:
        """Photos officers send (for !wanted), and sightings from members."""
        deps, event = ctx.deps, ctx.event
        is_officer = Role.OFFICER in ctx.roles
        if is_officer and ctx.in_dm and event.msgtype in ("m.image", "m.file"):
            await intake.remember(
                deps.conn,
                event.event_id,
                event.room_id,
                ctx.sender,
                dict(event.content),
                ctx.now_ms,
            )
            pending = await notices.take_pending_photo(
                deps.conn, ctx.sender, ctx.now_ms - PHOTO_WINDOW_MS
            )
            if pending is None:
                return True
            photo, problem = photo_of(
                dict(event.content), int(deps.config.notices.max_photo_mb * 1_000_000)
            )
            if problem is not None:
                await notices.wait_for_photo(deps.conn, ctx.sender, pending, ctx.now_ms)
                await ctx.reply(f"notices.photo_{problem}", mb=deps.config.notices.max_photo_mb)
                return True
            assert photo is not None
            try:
                await _publish_wanted(ctx, pending, photo)
            except ScopeError:
                await ctx.reply("notices.unknown_scope", scope=pending["scope"], valid=[])
            return True
        if Role.RESIDENT not in ctx.roles or is_officer:
            return False
        target = event.in_reply_to or _thread_root(event)
        if target is not None and ctx.room is not None:
            notice = await notices.notice_of_event(deps.conn, target)
            if notice is not None:
                await record_sighting(ctx, notice, notice.number)
                return True
        if ctx.in_dm:
            match = NOTICE_REF.search(event.body)
            if match and match.group(1).upper() == "W":
                number = f"W-{int(match.group(2))}"
                await record_sighting(ctx, await notices.by_number(deps.conn, number), number)
                return True
        return False

    features.on_message.insert(0, on_message)


def _duration(value: str | None, default: str) -> int:
    ttl = parse_duration_ms(value or default)
    if ttl is None:
        raise UsageError(key="usage.bad_duration", value=value or "")
    return ttl


def _thread_root(event: Any) -> str | None:
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        return root if isinstance(root, str) else None
    return None
