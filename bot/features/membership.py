"""Who is in a managed room, and enforcing that only verified people are.

* a join by someone who is neither verified for that room nor staff of its
  station is undone (kick with a reason, audit row, officers told);
* an invite by anyone but the bot or an officer of the station is revoked;
  an officer's invite from Element's own UI lets the person in as
  ``unverified`` and asks the officer (by DM) to complete the record;
* ``!members`` lists a room (phones and units for officers only, never in a
  group room), ``!remove`` ends a membership; leaving marks the record left;
* an invitation (or removal) the homeserver finally gives up on — the person's server
  never answered — is reported to whoever asked for it.
"""

from __future__ import annotations

from typing import Any

from bot.commands import ParsedCommand, UsageError
from bot.delivery import Outcome
from bot.domain.org import ManagedRoom
from bot.domain.roles import MEMBERS_AND_STAFF, OFFICERS, Role
from bot.features.context import CommandContext, Deps, EventContext
from bot.features.onboarding import handle_knock, notify_officers, user_arg, welcome
from bot.features.registry import Features
from bot.features.rooms import policy_for
from bot.features.scope import (
    audience_label,
    find_room,
    options,
    require_officer_of,
    room_or_explain,
)
from bot.store import direct, org


def _is_staff(ctx: EventContext, room: ManagedRoom, user: str) -> bool:
    """Belongs in the room by office: its policy's members, or the station's staff."""
    if user in policy_for(ctx.deps, room).members:
        return True
    if room.kind == "digest":
        return False
    station = ctx.deps.config.station(room.station_id)
    return station is not None and (user in station.officers or user in station.supervisors)


def _is_officer(ctx: EventContext, room: ManagedRoom, user: str) -> bool:
    station = ctx.deps.config.station(room.station_id)
    return station is not None and user in station.officers


async def on_member(ctx: EventContext) -> None:
    event, deps = ctx.event, ctx.deps
    target = event.state_key or ""
    membership = event.membership
    if target == deps.bot_id:
        return
    if ctx.room is None:
        if membership in ("leave", "ban") and await direct.user_of(deps.conn, event.room_id) == (
            target
        ):
            # They left our direct chat: the next DM opens a fresh one.
            await direct.forget_room(deps.conn, event.room_id)
            await deps.actions.leave(event.room_id)
        return
    room = ctx.room
    if room.external or room.kind == "taskforce":
        return  # someone else's room; task forces enforce their own member list
    if membership == "knock":
        if room.kind == "neighbourhood":
            await handle_knock(ctx)
        return
    if membership == "invite":
        await _invited(ctx, room, target)
    elif membership == "join" and ctx.event.prev_content.get("membership") != "join":
        await _joined(ctx, room, target)
    elif membership in ("leave", "ban"):
        await _left(ctx, room, target)


async def _invited(ctx: EventContext, room: ManagedRoom, invitee: str) -> None:
    deps, inviter = ctx.deps, ctx.sender
    if inviter == deps.bot_id or _is_staff(ctx, room, invitee):
        return
    if _is_officer(ctx, room, inviter) and room.kind == "neighbourhood":
        member = await org.member(deps.conn, room.room_id, invitee)
        if member is None or not member.active:
            await org.save_member(
                deps.conn,
                room_id=room.room_id,
                user_id=invitee,
                status="unverified",
                via="officer_invite",
                invited_by=inviter,
            )
            await deps.audit.record(
                inviter, "member.invited_unverified", target=invitee, room_id=room.room_id
            )
            await deps.messenger.send_dm(
                inviter,
                deps.render(
                    "membership.complete_enrolment",
                    user=invitee,
                    room=room.name,
                    ref=await _ref(ctx, room),
                ),
            )
        return
    await deps.actions.kick(room.room_id, invitee, deps.render("membership.invite_revoked").body)
    await deps.audit.record(inviter, "member.invite_revoked", target=invitee, room_id=room.room_id)
    await notify_officers(
        deps,
        room.station_id,
        "membership.invite_revoked_notice",
        inviter=inviter,
        user=invitee,
        room=room.name,
    )


async def _joined(ctx: EventContext, room: ManagedRoom, user: str) -> None:
    deps = ctx.deps
    if _is_staff(ctx, room, user):
        return
    member = await org.member(deps.conn, room.room_id, user)
    if room.kind == "neighbourhood" and member is not None and member.active:
        await org.set_joined(deps.conn, room.room_id, user, ctx.now_ms)
        await deps.audit.record(
            user, "member.joined", room_id=room.room_id, detail={"status": member.status}
        )
        if member.verified:
            await welcome(deps, room, user)
        return
    await deps.actions.kick(room.room_id, user, deps.render("membership.not_verified").body)
    await deps.audit.record(
        deps.bot_id, "member.removed_unverified", target=user, room_id=room.room_id
    )
    await notify_officers(
        deps, room.station_id, "membership.removed_notice", user=user, room=room.name
    )


async def _left(ctx: EventContext, room: ManagedRoom, user: str) -> None:
    deps = ctx.deps
    member = await org.member(deps.conn, room.room_id, user)
    for request in await org.open_requests(deps.conn, user, room_ids=[room.room_id]):
        if request.source == "knock" and ctx.sender == user:
            await org.update_request(deps.conn, request.id, status="cancelled")
    if member is None or not member.active:
        return
    kicked = ctx.sender != user
    await org.set_member_status(deps.conn, room.room_id, user, "removed" if kicked else "left")
    await org.set_joined(deps.conn, room.room_id, user, None)
    await deps.audit.record(
        ctx.sender, "member.removed" if kicked else "member.left", target=user, room_id=room.room_id
    )


async def _ref(ctx: EventContext, room: ManagedRoom) -> str:
    if room.neighbourhood_id is None:
        return room.alias or room.room_id
    nbh = await org.neighbourhood_by_id(ctx.deps.conn, room.neighbourhood_id)
    return f"{nbh.slug}/{room.audience}" if nbh else room.room_id


async def membership_done(deps: Deps, args: dict[str, Any], outcome: Outcome) -> None:
    """Hook: an invitation or removal was finally given up (the other server never answered,
    or it was refused): whoever asked is told, and it is audited."""
    if outcome.ok:
        return
    room_id, user = str(args.get("room_id", "")), str(args.get("user", ""))
    actor = args.get("actor")
    room = await org.room(deps.conn, room_id)
    name = room.name if room else room_id
    key = "membership.invite_failed" if args.get("kind") == "invite" else "membership.kick_failed"
    await deps.audit.record(
        deps.bot_id,
        f"{args.get('kind')}.failed",
        target=user,
        room_id=room_id,
        detail={"error": outcome.error, "asked_by": actor},
    )
    staff = deps.config.officers() | deps.config.supervisors()
    error = outcome.error or ""
    if isinstance(actor, str) and actor in staff:
        await deps.messenger.send_dm(actor, deps.render(key, user=user, room=name, error=error))
    else:
        station = room.station_id if room else None
        await notify_officers(deps, station, key, user=user, room=name, error=error)


def register(features: Features) -> None:
    commands = features.commands
    features.on_member.append(on_member)
    features.hooks["membership.done"] = membership_done

    @commands.command(
        "members",
        usage="[room]",
        roles=MEMBERS_AND_STAFF,
        help_en="List a room's members (officers also see units, phones and pending requests).",
        help_zh="列出群组成员（民警还可看到住址单元、电话和待处理申请）。",
    )
    async def members(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) > 1:
            raise UsageError()
        room = await find_room(ctx, parsed.args[0] if parsed.args else None)
        is_staff = room is not None and _is_staff(ctx, room, ctx.sender)
        own = room is not None and (await org.member(ctx.deps.conn, room.room_id, ctx.sender))
        if room is None or room.kind != "neighbourhood" or not (is_staff or own):
            unknown = room is None or room.kind != "neighbourhood"
            if unknown and (Role.OFFICER in ctx.roles or Role.SUPERVISOR in ctx.roles):
                await room_or_explain(ctx, parsed.args[0] if parsed.args else "")
            else:
                await ctx.reply("membership.not_your_room")
            return
        details = _is_officer(ctx, room, ctx.sender)
        rows = []
        for member in await org.members(ctx.deps.conn, room.room_id):
            rows.append(
                {
                    "user": member.user_id,
                    "name": member.name or "—",
                    "role": audience_label(ctx.lang, member.role or ""),
                    "unit": (member.unit or "") if details else "",
                    "phone": (member.phone or "") if details else "",
                    "status": member.status,
                    "verified_by": member.verified_by or "",
                    "since": member.verified_at or member.created_at,
                }
            )
        pending = await org.pending_requests(ctx.deps.conn, [room.room_id]) if details else []
        message = ctx.render(
            "membership.list",
            room=room.name,
            rows=rows,
            details=details,
            pending=[p.user_id for p in pending],
        )
        if details and not ctx.in_dm and not (ctx.room and ctx.room.kind == "officers"):
            # Phones and units never go to a group room.
            await ctx.messenger.send_dm(ctx.sender, message)
            await ctx.reply("membership.list_by_dm", room=room.name)
            return
        await ctx.messenger.send(ctx.event.room_id, message, reply_to=ctx.event.event_id)

    @commands.command(
        "remove",
        usage="@user:server [room|all] [reason…]",
        roles=OFFICERS,
        help_en="Remove someone from a room (or all your station's rooms) and end the membership.",
        help_zh="将某人移出群组（或本所所有群组）并终止其成员资格。",
    )
    async def remove(ctx: CommandContext, parsed: ParsedCommand) -> None:
        plain, _ = options(parsed.args, ())
        if not plain:
            raise UsageError()
        user = user_arg(plain[0])
        rest = plain[1:]
        scope = (
            rest[0]
            if rest and (rest[0] == "all" or "/" in rest[0] or rest[0][:1] in "#!")
            else None
        )
        reason = " ".join(rest[1:] if scope else rest).strip()[:300]
        if scope == "all":
            stations = {s.id for s in ctx.deps.config.stations_of(ctx.sender)}
            targets = []
            for member in await org.memberships(ctx.deps.conn, user):
                found = await org.room(ctx.deps.conn, member.room_id)
                if found is not None and found.station_id in stations:
                    targets.append(found)
        else:
            found = await room_or_explain(ctx, scope)
            if found is None:
                return
            await require_officer_of(ctx, found.station_id, "remove")
            targets = [found]
        removed = []
        for room in targets:
            current = await org.member(ctx.deps.conn, room.room_id, user)
            if current is None or not current.active:
                continue
            await org.set_member_status(ctx.deps.conn, room.room_id, user, "removed")
            await ctx.deps.actions.kick(room.room_id, user, reason or "membership ended")
            await ctx.audit.record(
                ctx.sender,
                "member.remove",
                target=user,
                room_id=room.room_id,
                detail={"reason": reason},
            )
            removed.append(room.name)
        if not removed:
            await ctx.reply("membership.not_a_member", user=user)
            return
        await ctx.reply("membership.removed", user=user, rooms=removed)
