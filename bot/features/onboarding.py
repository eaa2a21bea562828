"""Verified onboarding, three ways, all ending in a member record.

* in person: ``!enrol @user <room> name="…" role=… [unit=…] [phone=…]``;
* QR code and join codes: ``!qr <room>`` (a PNG of the room's matrix.to link, sent
  to the officer by DM), ``!code <room>``; a knock whose reason holds a valid code,
  or a DM ``!join CODE``, starts a short DM form (name, unit) and then the bot
  invites them; a knock without a valid code goes to the officers' room for
  ``!approve`` / ``!deny``;
* an officer inviting from Element: the invitee is let in as ``unverified`` and
  the officer is asked (by DM) to complete the record with ``!enrol``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import segno

from bot.commands import ParsedCommand, UsageError
from bot.domain.org import (
    JoinCode,
    JoinRequest,
    ManagedRoom,
    find_code,
    matrix_to,
    new_code,
    normalise_code,
    parse_duration_ms,
)
from bot.domain.render import Language
from bot.domain.roles import ALL_ROLES, OFFICERS, Role
from bot.features.context import CommandContext, Deps, EventContext
from bot.features.registry import Features
from bot.features.scope import (
    audience_label,
    options,
    require_officer_of,
    room_or_explain,
)
from bot.store import org

MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
PHONE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")
MAX_NAME = 100
MAX_UNIT = 200
HOUR_MS = 3_600_000
SKIP_WORDS = frozenset({"-", "skip", "none", "no", "无", "跳过", "没有"})
CANCEL_WORDS = frozenset({"cancel", "stop", "取消"})


def user_arg(value: str) -> str:
    if not MXID.match(value):
        raise UsageError(key="usage.bad_user", value=value)
    return value


async def room_lang(deps: Deps, room: ManagedRoom) -> Language:
    if room.neighbourhood_id is None:
        return room.language
    nbh = await org.neighbourhood_by_id(deps.conn, room.neighbourhood_id)
    return nbh.language if nbh else room.language


async def notify_officers(
    deps: Deps, station_id: str | None, key: str, *, mentions: Sequence[str] = (), **params: Any
) -> None:
    """Post to the station's officers' room (approvals, enforcement, identity changes)."""
    room = await org.officers_room(deps.conn, station_id) if station_id else None
    if room is None:
        station = deps.config.station(station_id)
        for officer in station.officers if station else []:
            await deps.messenger.send_dm(officer, deps.render(key, **params))
        return
    await deps.messenger.send(
        room.room_id, deps.render(key, room.language, **params), mentions=mentions
    )


async def _dm(deps: Deps, user: str, key: str, lang: Language, **params: Any) -> None:
    await deps.messenger.send_dm(user, deps.render(key, lang, **params), tag={"kind": key})


async def verify_and_invite(
    deps: Deps,
    room: ManagedRoom,
    user: str,
    *,
    name: str,
    unit: str | None,
    via: str,
    verified_by: str,
    role: str | None = None,
    phone: str | None = None,
) -> None:
    """The end of every onboarding path: a verified record, then the invitation."""
    previous = await org.member(deps.conn, room.room_id, user)
    member = await org.save_member(
        deps.conn,
        room_id=room.room_id,
        user_id=user,
        status="verified",
        via=via,
        name=name,
        role=role or room.audience,
        unit=unit,
        phone=phone,
        verified_by=verified_by,
    )
    await deps.audit.record(
        verified_by,
        "member.verified",
        target=user,
        room_id=room.room_id,
        detail={"via": via, "role": member.role},
    )
    for request in await org.open_requests(deps.conn, user, room_ids=[room.room_id]):
        await org.update_request(deps.conn, request.id, status="done", decided_by=verified_by)
    if previous is not None and previous.joined_at is not None:
        await welcome(deps, room, member.user_id)
    else:
        await deps.actions.invite(room.room_id, user)


async def welcome(deps: Deps, room: ManagedRoom, user: str) -> None:
    member = await org.member(deps.conn, room.room_id, user)
    if member is None or not member.verified or room.kind != "neighbourhood":
        return
    nbh = await org.neighbourhood_by_id(deps.conn, room.neighbourhood_id or 0)
    if nbh is None or not nbh.welcome or not deps.config.onboarding.welcome:
        return
    lang = nbh.language
    await deps.messenger.send(
        room.room_id,
        deps.render(
            "onboarding.welcome",
            lang,
            user=user,
            name=member.name or user,
            role=audience_label(lang, member.role or ""),
            officer=member.verified_by or "",
        ),
        mentions=[user],
        tag={"kind": "welcome"},
    )


async def start_form(deps: Deps, request: JoinRequest, room: ManagedRoom, key: str) -> None:
    await org.update_request(deps.conn, request.id, status="form", step="name")
    await _dm(deps, request.user_id, key, await room_lang(deps, room), room=room.name)


async def _throttled(deps: Deps, user: str) -> bool:
    since = deps.now_ms - HOUR_MS
    limit = deps.config.onboarding.bad_codes_per_hour
    return await org.throttle_count(deps.conn, f"code:{user}", since) >= limit


async def check_code(deps: Deps, value: str, user: str) -> tuple[JoinCode | None, str | None]:
    """The usable code, or why not (``unknown``, ``expired``, ``used_up``, ``throttled``)."""
    if await _throttled(deps, user):
        return None, "throttled"
    normal = normalise_code(value)
    found = await org.code(deps.conn, normal) if normal else None
    problem = "unknown" if found is None else found.problem(deps.now_ms)
    if problem is not None:
        await org.throttle_hit(deps.conn, f"code:{user}", deps.now_ms)
        await deps.audit.record(user, "join.bad_code", detail={"code": value[:32], "why": problem})
        return None, problem
    return found, None


async def handle_knock(ctx: EventContext) -> None:
    room, user, deps = ctx.room, ctx.sender, ctx.deps
    assert room is not None
    reason = str(ctx.event.content.get("reason") or "")[:500]
    lang = await room_lang(deps, room)
    member = await org.member(deps.conn, room.room_id, user)
    if member is not None and member.verified:
        await deps.actions.invite(room.room_id, user)
        return
    for old in await org.open_requests(deps.conn, user, room_ids=[room.room_id]):
        await org.update_request(deps.conn, old.id, status="cancelled")
    typed = find_code(reason)
    code, problem = (await check_code(deps, typed, user)) if typed else (None, None)
    if code is not None and code.room_id == room.room_id:
        await org.use_code(deps.conn, code.code)
        request = await org.add_request(
            deps.conn,
            user_id=user,
            room_id=room.room_id,
            source="knock",
            status="form",
            code=code.code,
            reason=reason,
            approved_by=code.created_by,
        )
        await deps.audit.record(
            user, "join.knock_code", room_id=room.room_id, detail={"code": code.code}
        )
        await start_form(deps, request, room, "onboarding.form_start")
        return
    if code is not None:
        problem = "other_room"
    await org.add_request(
        deps.conn,
        user_id=user,
        room_id=room.room_id,
        source="knock",
        status="pending",
        code=typed,
        reason=reason,
    )
    await deps.audit.record(user, "join.knock", room_id=room.room_id, detail={"code": problem})
    if problem is not None:
        await _dm(deps, user, f"onboarding.code_{problem}", lang, code=typed or "")
    await _dm(deps, user, "onboarding.request_passed", lang, room=room.name)
    await notify_officers(
        deps,
        room.station_id,
        "onboarding.knock_notice",
        user=user,
        room=room.name,
        reason=reason,
        code_problem=problem or "",
    )


async def form_answer(ctx: EventContext) -> bool:
    """A DM answering the onboarding form (name, then unit); True when it was one."""
    if not ctx.in_dm:
        return False
    deps = ctx.deps
    requests = await org.open_requests(deps.conn, ctx.sender, statuses=("form",))
    if not requests:
        return False
    request = requests[-1]
    room = await org.room(deps.conn, request.room_id)
    if room is None:
        return False
    lang = await room_lang(deps, room)
    answer = " ".join(ctx.event.body.split())
    if answer.lower() in CANCEL_WORDS:
        await org.update_request(deps.conn, request.id, status="cancelled")
        await _dm(deps, ctx.sender, "onboarding.form_cancelled", lang, room=room.name)
        return True
    if request.step == "name":
        if not answer or len(answer) > MAX_NAME:
            await _dm(deps, ctx.sender, "onboarding.form_bad_name", lang, max=MAX_NAME)
            return True
        await org.update_request(deps.conn, request.id, step="unit", name=answer)
        await _dm(deps, ctx.sender, "onboarding.form_unit", lang, name=answer)
        return True
    unit = None if answer.lower() in SKIP_WORDS else answer[:MAX_UNIT]
    await org.update_request(deps.conn, request.id, status="done", step=None, unit=unit)
    await verify_and_invite(
        deps,
        room,
        ctx.sender,
        name=request.name or ctx.sender,
        unit=unit,
        via="code" if request.code and request.approved_by else "approval",
        verified_by=request.approved_by or deps.bot_id,
    )
    await _dm(deps, ctx.sender, "onboarding.form_done", lang, room=room.name)
    return True


def qr_png(link: str) -> tuple[bytes, int, int]:
    qr = segno.make(link, error="m")
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=10, border=4)
    width, height = qr.symbol_size(scale=10, border=4)
    return buffer.getvalue(), int(width), int(height)


def register(features: Features) -> None:
    commands = features.commands
    commands.alias("enroll", "enrol")

    @commands.command(
        "enrol",
        usage='@user:server <room> name="…" [role=<audience>] [unit="…"] [phone=…]',
        roles=OFFICERS,
        help_en="Enrol a person you verified in person, and invite them to the room.",
        help_zh="登记您当面核实过的人员，并邀请其入群。",
    )
    async def enrol(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (user, ref), opts = options(parsed.args, ("name", "role", "unit", "phone"), positional=2)
        user = user_arg(user)
        name = opts.get("name", "").strip()
        if not name or len(name) > MAX_NAME:
            raise UsageError(key="usage.name_required", max=MAX_NAME)
        phone = opts.get("phone")
        if phone is not None and not PHONE.match(phone):
            raise UsageError(key="usage.bad_phone", value=phone)
        room = await room_or_explain(ctx, ref)
        if room is None:
            return
        await require_officer_of(ctx, room.station_id, "enrol")
        role = opts.get("role", room.audience or "").lower()
        if role not in ctx.deps.config.rooms.audiences:
            raise UsageError(
                key="usage.bad_audience",
                value=role,
                audiences=", ".join(ctx.deps.config.rooms.audiences),
            )
        await verify_and_invite(
            ctx.deps,
            room,
            user,
            name=name,
            unit=opts.get("unit"),
            via="in_person",
            verified_by=ctx.sender,
            role=role,
            phone=phone,
        )
        await ctx.reply(
            "onboarding.enrolled", name=name, role=audience_label(ctx.lang, role), room=room.name
        )

    @commands.command(
        "qr",
        usage="<room>",
        roles=OFFICERS,
        help_en="Get (by direct message) a QR code residents scan to ask to join a room.",
        help_zh="（通过私信）获取居民扫码申请入群的二维码。",
    )
    async def qr(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref,), _ = options(parsed.args, (), positional=1)
        room = await room_or_explain(ctx, ref)
        if room is None:
            return
        await require_officer_of(ctx, room.station_id, "qr")
        link = matrix_to(room.alias or room.room_id)
        png, width, height = qr_png(link)
        caption = ctx.render("onboarding.qr_caption", room=room.name, link=link).body
        await ctx.messenger.send_image(
            None,
            png,
            filename=f"{(room.alias or 'room').lstrip('#').split(':')[0]}.png",
            mimetype="image/png",
            width=width,
            height=height,
            caption=caption,
            dm_user=ctx.sender,
            tag={"kind": "qr", "room": room.room_id},
        )
        await ctx.audit.record(ctx.sender, "room.qr", room_id=room.room_id)
        await ctx.reply("onboarding.qr_sent", room=room.name, link=link)

    @commands.command(
        "code",
        usage="<room> [uses=N] [expires=7d]",
        roles=OFFICERS,
        help_en="Make a short one-time join code for a room (sent to you by direct message).",
        help_zh="为群组生成一次性入群码（通过私信发送给您）。",
    )
    async def code(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref,), opts = options(parsed.args, ("uses", "expires"), positional=1)
        cfg = ctx.deps.config.onboarding
        uses_text = opts.get("uses", str(cfg.code_uses))
        if not uses_text.isdigit() or not 1 <= int(uses_text) <= 1000:
            raise UsageError(key="usage.bad_uses", value=uses_text)
        ttl = parse_duration_ms(opts.get("expires", cfg.code_expires))
        if ttl is None:
            raise UsageError(key="usage.bad_duration", value=opts.get("expires", ""))
        room = await room_or_explain(ctx, ref)
        if room is None:
            return
        await require_officer_of(ctx, room.station_id, "code")
        value = new_code()
        expires_at = ctx.now_ms + ttl
        await org.add_code(
            ctx.deps.conn,
            code=value,
            room_id=room.room_id,
            created_by=ctx.sender,
            expires_at=expires_at,
            max_uses=int(uses_text),
        )
        await ctx.audit.record(
            ctx.sender,
            "code.create",
            room_id=room.room_id,
            detail={"uses": int(uses_text), "expires_at": expires_at},
        )
        message = ctx.render(
            "onboarding.code_made",
            code=value,
            room=room.name,
            uses=int(uses_text),
            hours=round(ttl / HOUR_MS),
            alias=room.alias or room.room_id,
            bot=ctx.deps.bot_id,
        )
        if ctx.in_dm or (ctx.room is not None and ctx.room.kind == "officers"):
            await ctx.messenger.send(ctx.event.room_id, message, reply_to=ctx.event.event_id)
        else:
            await ctx.messenger.send_dm(ctx.sender, message)
            await ctx.reply("onboarding.code_by_dm")

    @commands.command(
        "join",
        usage="<code>",
        roles=ALL_ROLES,
        help_en="Join a neighbourhood room with the code an officer gave you (send it by DM).",
        help_zh="使用民警给您的入群码加入小区群组（请私信发送）。",
    )
    async def join(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) not in (1, 2):
            raise UsageError()
        if not ctx.in_dm:
            await ctx.reply("onboarding.join_in_dm", bot=ctx.deps.bot_id)
            return
        typed = "".join(parsed.args)
        found, problem = await check_code(ctx.deps, typed, ctx.sender)
        if found is None:
            await ctx.reply(f"onboarding.code_{problem}", code=typed)
            return
        room = await org.room(ctx.deps.conn, found.room_id)
        assert room is not None
        member = await org.member(ctx.deps.conn, room.room_id, ctx.sender)
        if member is not None and member.verified:
            await ctx.deps.actions.invite(room.room_id, ctx.sender)
            await ctx.reply("onboarding.already_member", room=room.name)
            return
        for old in await org.open_requests(ctx.deps.conn, ctx.sender):
            await org.update_request(ctx.deps.conn, old.id, status="cancelled")
        await org.use_code(ctx.deps.conn, found.code)
        request = await org.add_request(
            ctx.deps.conn,
            user_id=ctx.sender,
            room_id=room.room_id,
            source="dm",
            status="form",
            code=found.code,
            approved_by=found.created_by,
        )
        await ctx.audit.record(
            ctx.sender, "join.code", room_id=room.room_id, detail={"code": found.code}
        )
        await start_form(ctx.deps, request, room, "onboarding.form_start")

    @commands.command(
        "approve",
        usage='@user:server [room] [name="…"] [unit="…"]',
        roles=OFFICERS,
        help_en="Let in someone who asked to join; without name= they get a short form first.",
        help_zh="批准入群申请；如未提供 name=，申请人需先填写简短表格。",
    )
    async def approve(ctx: CommandContext, parsed: ParsedCommand) -> None:
        plain, opts = options(parsed.args, ("name", "unit"))
        if len(plain) not in (1, 2):
            raise UsageError()
        user = user_arg(plain[0])
        request = await _pending_request(ctx, user, plain[1] if len(plain) == 2 else None)
        if request is None:
            return
        room = await org.room(ctx.deps.conn, request.room_id)
        assert room is not None
        await require_officer_of(ctx, room.station_id, "approve")
        await ctx.audit.record(ctx.sender, "join.approve", target=user, room_id=room.room_id)
        name = opts.get("name", "").strip()
        if name:
            await org.update_request(
                ctx.deps.conn,
                request.id,
                status="done",
                approved_by=ctx.sender,
                decided_by=ctx.sender,
            )
            await verify_and_invite(
                ctx.deps,
                room,
                user,
                name=name[:MAX_NAME],
                unit=opts.get("unit"),
                via="approval",
                verified_by=ctx.sender,
            )
            await _dm(
                ctx.deps,
                user,
                "onboarding.approved_in",
                await room_lang(ctx.deps, room),
                room=room.name,
            )
            await ctx.reply("onboarding.approved_invited", user=user, room=room.name)
            return
        await org.update_request(
            ctx.deps.conn,
            request.id,
            approved_by=ctx.sender,
            decided_by=ctx.sender,
            step="name",
            status="form",
        )
        await start_form(ctx.deps, request, room, "onboarding.approved_form")
        await ctx.reply("onboarding.approved_waiting", user=user, room=room.name)

    @commands.command(
        "deny",
        usage="@user:server [room] [reason…]",
        roles=OFFICERS,
        help_en="Turn down a request to join; the person is told (with your reason, if any).",
        help_zh="拒绝入群申请；申请人会收到通知（如有理由会一并告知）。",
    )
    async def deny(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if not parsed.args:
            raise UsageError()
        user = user_arg(parsed.args[0])
        rest = parsed.args[1:]
        room_ref = rest[0] if rest and ("/" in rest[0] or rest[0][:1] in "#!") else None
        reason = " ".join(rest[1:] if room_ref else rest).strip()[:500]
        request = await _pending_request(ctx, user, room_ref)
        if request is None:
            return
        room = await org.room(ctx.deps.conn, request.room_id)
        assert room is not None
        await require_officer_of(ctx, room.station_id, "deny")
        await org.update_request(
            ctx.deps.conn, request.id, status="denied", decided_by=ctx.sender, note=reason or None
        )
        await ctx.audit.record(
            ctx.sender, "join.deny", target=user, room_id=room.room_id, detail={"reason": reason}
        )
        if request.source == "knock":
            await ctx.deps.actions.kick(room.room_id, user, reason or "request declined")
        await _dm(
            ctx.deps,
            user,
            "onboarding.denied",
            await room_lang(ctx.deps, room),
            room=room.name,
            reason=reason,
        )
        await ctx.reply("onboarding.denied_done", user=user, room=room.name)

    async def _pending_request(
        ctx: CommandContext, user: str, room_ref: str | None
    ) -> JoinRequest | None:
        stations = [s.id for s in ctx.deps.config.stations_of(ctx.sender)]
        rooms = await org.rooms(ctx.deps.conn, station_ids=stations, kind="neighbourhood")
        room_ids = [r.room_id for r in rooms]
        if room_ref is not None:
            room = await room_or_explain(ctx, room_ref)
            if room is None:
                return None
            room_ids = [room.room_id]
        pending = await org.open_requests(ctx.deps.conn, user, ("pending",), room_ids)
        if not pending:
            await ctx.reply("onboarding.no_request", user=user)
            return None
        if len(pending) > 1:
            names = [r.name for r in rooms if r.room_id in {p.room_id for p in pending}]
            await ctx.reply("onboarding.which_request", user=user, rooms=names)
            return None
        return pending[0]

    async def stranger_hint(ctx: EventContext) -> bool:
        """A DM from someone not yet verified anywhere: tell them how joining works."""
        if not ctx.in_dm or ctx.roles != frozenset({Role.ANYONE}):
            return False
        await ctx.reply("onboarding.stranger_hint", bot=ctx.deps.bot_id)
        return True

    async def throttle_strangers(ctx: EventContext) -> str | None:
        """Strangers' DMs are answered at most N times an hour; the rest is not answered."""
        if not ctx.in_dm or ctx.roles != frozenset({Role.ANYONE}) or ctx.event.is_state:
            return None
        key = f"dm:{ctx.sender}"
        since = ctx.now_ms - HOUR_MS
        if await org.throttle_count(ctx.deps.conn, key, since) >= (
            ctx.deps.config.onboarding.stranger_messages_per_hour
        ):
            return "ignored:throttled"
        await org.throttle_hit(ctx.deps.conn, key, ctx.now_ms)
        return None

    features.gates.append(throttle_strangers)
    features.on_message.append(form_answer)
    features.on_message.append(stranger_hint)
