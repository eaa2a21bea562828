"""Task forces: officers of several stations — on any homeserver — working linked cases.

* ``!taskforce create "<name>" case=N @officer:other.server …`` creates an invite-only room
  (end-to-end encrypted when ``rooms.encrypted``), invites the officers named (and the one
  asking), posts a summary of the case — never who reported it — and links it;
* ``!taskforce add @officer``, ``!taskforce link N``, ``!taskforce close`` (in the task
  force's room, or with ``TF-n`` anywhere), ``!taskforces`` lists the open ones;
* later status changes of a linked case are posted in the room (see ``casework``);
* only its members (and this station's officers and supervisors) may be in the room: anyone
  else who is invited has the invitation withdrawn, anyone else who gets in is removed, and
  the room is told why. Commands that change a task force are for the officers of the
  station that runs it (officers on other servers run their own bots).
"""

from __future__ import annotations

import re
from typing import Any

from bot.commands import ParsedCommand, UsageError
from bot.delivery import Outcome
from bot.domain import cases as rules
from bot.domain import room_policy
from bot.domain.cases import Case
from bot.domain.org import ManagedRoom
from bot.domain.render import Language, Message
from bot.domain.roles import OFFICERS, STAFF
from bot.features.cases import find_case
from bot.features.casework import category_label, status_label
from bot.features.context import CommandContext, Deps, EventContext
from bot.features.onboarding import user_arg
from bot.features.registry import Features
from bot.features.rooms import create_body
from bot.features.scope import options, visible_stations
from bot.store import cases, org, taskforces
from bot.store.taskforces import TaskForce

NAME_LIMIT = 80


def case_summary(deps: Deps, case: Case, lang: Language) -> Message:
    """A case as a task force sees it: what, where, how far — never who reported it."""
    return deps.render(
        "taskforce.case_summary",
        lang,
        number=case.number,
        category=category_label(lang, case.category),
        status=status_label(lang, case.status),
        urgent=case.urgent,
        location=case.location or "",
        private=case.private,
        text=rules.excerpt(case.text, 300),
    )


async def _resolve(ctx: CommandContext, ref: str | None) -> TaskForce | None:
    """The task force named ``TF-n``, or the one whose room the command was sent in."""
    conn = ctx.deps.conn
    found: TaskForce | None = None
    if ref is not None:
        number = taskforces.parse_number(ref)
        if number is None:
            raise UsageError(key="taskforce.bad_ref", value=ref)
        found = await taskforces.by_id(conn, number)
    elif ctx.room is not None and ctx.room.kind == "taskforce":
        found = await taskforces.by_room(conn, ctx.room.room_id)
    else:
        raise UsageError(key="taskforce.which")
    stations = {s.id for s in visible_stations(ctx)}
    if found is None or found.station_id not in stations:
        await ctx.reply("taskforce.unknown", ref=ref or "")
        return None
    return found


async def _changeable(ctx: CommandContext, ref: str | None) -> TaskForce | None:
    found = await _resolve(ctx, ref)
    if found is None:
        return None
    station = ctx.deps.config.station(found.station_id)
    if station is None or ctx.sender not in station.officers:
        await ctx.audit.record(ctx.sender, "scope.refused", target=found.number)
        await ctx.reply("taskforce.not_yours", number=found.number)
        return None
    if not found.open:
        await ctx.reply("taskforce.closed_already", number=found.number)
        return None
    return found


_TF_REF = re.compile(r"^TF-?\d{1,9}$", re.IGNORECASE)


async def _argument_and_task_force(
    ctx: CommandContext, parsed: ParsedCommand
) -> tuple[str, TaskForce] | None:
    """``<one argument> [TF-n]``: the argument and an open task force (with its room) the
    sender may change; None when that was refused (already answered)."""
    rest, ref = _split_ref(list(parsed.args))
    if len(rest) != 1:
        raise UsageError()
    found = await _changeable(ctx, ref)
    if found is None or found.room_id is None:
        return None
    return rest[0], found


def _split_ref(args: list[str]) -> tuple[list[str], str | None]:
    """Take a ``TF-n`` out of the arguments, wherever it is."""
    rest = [a for a in args if not _TF_REF.match(a)]
    refs = [a for a in args if _TF_REF.match(a)]
    if len(refs) > 1:
        raise UsageError()
    return rest, (refs[0] if refs else None)


async def taskforce_created(deps: Deps, args: dict[str, Any], outcome: Outcome) -> None:
    """Hook: the task force's room exists (or could not be made)."""
    found = await taskforces.by_id(deps.conn, int(args["taskforce"]))
    requested_by, reply_room = str(args["requested_by"]), args.get("reply_room")
    lang: Language = args.get("language", deps.config.language)
    if found is None:
        return
    if not outcome.ok or outcome.value is None:
        await deps.audit.record(
            requested_by,
            "taskforce.create_failed",
            target=found.number,
            detail={"error": outcome.error},
        )
        if isinstance(reply_room, str):
            await deps.messenger.send(
                reply_room,
                deps.render(
                    "rooms.create_failed", lang, name=found.name, error=outcome.error or ""
                ),
                reply_to=args.get("reply_to"),
                mentions=[requested_by],
            )
        return
    room_id = outcome.value
    await taskforces.set_room(deps.conn, found.id, room_id)
    room = ManagedRoom(
        room_id=room_id,
        kind="taskforce",
        station_id=found.station_id,
        neighbourhood_id=None,
        audience=None,
        alias=None,
        name=str(args["name"]),
        language=lang,
        encrypted=bool(args.get("encrypted")),
    )
    if await org.room(deps.conn, room_id) is None:
        await org.add_room(deps.conn, room, requested_by)
    await deps.audit.record(requested_by, "taskforce.created", target=found.number, room_id=room_id)
    members = await taskforces.members(deps.conn, found.id)
    await deps.messenger.send(
        room_id,
        deps.render("taskforce.intro", lang, number=found.number, name=found.name, members=members),
        tag={"kind": "taskforce.intro", "id": found.number},
    )
    for case in await cases.of_taskforce(deps.conn, found.id):
        await deps.messenger.send(
            room_id, case_summary(deps, case, lang), tag={"kind": "taskforce.case"}
        )
    if isinstance(reply_room, str):
        await deps.messenger.send(
            reply_room,
            deps.render("taskforce.ready", lang, number=found.number, name=found.name),
            reply_to=args.get("reply_to"),
            mentions=[requested_by],
        )


async def on_member(ctx: EventContext) -> None:
    """Only members (and this station's staff) stay in a task force's room."""
    room = ctx.room
    if room is None or room.kind != "taskforce":
        return
    deps, target = ctx.deps, ctx.event.state_key or ""
    membership = ctx.event.membership
    if target == deps.bot_id or membership not in ("invite", "join", "knock"):
        return
    if membership == "join" and ctx.event.prev_content.get("membership") == "join":
        return  # a profile change
    found = await taskforces.by_room(deps.conn, room.room_id)
    if found is None:
        return
    station = deps.config.station(found.station_id)
    staff = set(station.officers) | set(station.supervisors) if station else set()
    if target in staff or target in await taskforces.members(deps.conn, found.id):
        return
    await deps.actions.kick(
        room.room_id, target, deps.render("taskforce.kick_reason", room.language).body
    )
    await deps.audit.record(
        ctx.sender,
        "taskforce.removed",
        target=target,
        room_id=room.room_id,
        detail={"membership": membership, "taskforce": found.number},
    )
    await deps.messenger.send(
        room.room_id,
        deps.render(
            "taskforce.removed", room.language, user=target, by=ctx.sender, membership=membership
        ),
    )


def register(features: Features) -> None:
    commands = features.commands
    features.on_member.append(on_member)
    features.hooks["taskforce.created"] = taskforce_created

    @commands.command(
        "taskforce create",
        usage='"<name>" case=<number> @officer:server …',
        roles=OFFICERS,
        help_en="Open a task force room with officers of other stations (any server) on a case.",
        help_zh="与其他派出所（任意服务器）的民警就某案件建立专案组群。",
    )
    async def create(ctx: CommandContext, parsed: ParsedCommand) -> None:
        plain, opts = options(parsed.args, ("case",))
        if not plain or "case" not in opts:
            raise UsageError()
        name, invited = plain[0].strip(), [user_arg(u) for u in plain[1:]]
        if not name or len(name) > NAME_LIMIT or name.startswith("@"):
            raise UsageError(key="taskforce.bad_name", limit=NAME_LIMIT)
        case = await find_case(ctx, opts["case"])
        if case is None:
            return
        station = ctx.deps.config.station(case.station_id)
        if station is None or ctx.sender not in station.officers:
            await ctx.audit.record(ctx.sender, "scope.refused", target=case.number)
            await ctx.reply("cases.read_only", number=case.number)
            return
        deps = ctx.deps
        found = await taskforces.create(
            deps.conn, name=name, station_id=station.id, created_by=ctx.sender, now=ctx.now_ms
        )
        members = list(dict.fromkeys([ctx.sender, *invited]))
        for member in members:
            await taskforces.add_member(deps.conn, found.id, member, ctx.sender, ctx.now_ms)
        await taskforces.link_case(deps.conn, found.id, case.id, ctx.sender, ctx.now_ms)
        await cases.add_event(
            deps.conn, case.id, ctx.sender, "taskforce", None, found.number, None, ctx.now_ms
        )
        room_name = deps.render("taskforce.room_name", ctx.lang, number=found.number, name=name)
        body = create_body(
            deps,
            name=room_name.body,
            topic=deps.render("taskforce.topic", ctx.lang, station=station.name).body,
            alias="",
            policy=room_policy.Policy(join_rule="invite", staff=tuple(members)),
            encrypted=deps.config.rooms.encrypted,
        )
        body.pop("room_alias_name", None)  # task forces are found by invitation, not by name
        await deps.actions.create_room(
            f"taskforce/{found.id}",
            body,
            on_done="taskforce.created",
            args={
                "taskforce": found.id,
                "name": room_name.body,
                "language": ctx.lang,
                "encrypted": deps.config.rooms.encrypted,
                "requested_by": ctx.sender,
                "reply_room": ctx.event.room_id,
                "reply_to": ctx.event.event_id,
            },
        )
        await ctx.audit.record(
            ctx.sender,
            "taskforce.create",
            target=found.number,
            detail={"case": case.number, "members": members},
        )
        await ctx.reply("taskforce.creating", number=found.number, name=name, count=len(members))

    @commands.command(
        "taskforce add",
        usage="@officer:server [TF-n]",
        roles=OFFICERS,
        help_en="Invite another officer (any server) into a task force.",
        help_zh="邀请其他民警（任意服务器）加入专案组。",
    )
    async def add(ctx: CommandContext, parsed: ParsedCommand) -> None:
        picked = await _argument_and_task_force(ctx, parsed)
        if picked is None:
            return
        user, found = user_arg(picked[0]), picked[1]
        assert found.room_id is not None
        if not await taskforces.add_member(ctx.deps.conn, found.id, user, ctx.sender, ctx.now_ms):
            await ctx.reply("taskforce.member_already", user=user, number=found.number)
            return
        await ctx.deps.actions.invite(found.room_id, user)
        await ctx.audit.record(
            ctx.sender, "taskforce.member_added", target=user, room_id=found.room_id
        )
        await ctx.reply("taskforce.added", user=user, number=found.number)

    @commands.command(
        "taskforce link",
        usage="<case number> [TF-n]",
        roles=OFFICERS,
        help_en="Link another case to a task force (its summary is posted there).",
        help_zh="将另一案件关联到专案组（并在群内发布案件摘要）。",
    )
    async def link(ctx: CommandContext, parsed: ParsedCommand) -> None:
        picked = await _argument_and_task_force(ctx, parsed)
        if picked is None:
            return
        found = picked[1]
        assert found.room_id is not None
        case = await find_case(ctx, picked[0])
        if case is None:
            return
        deps = ctx.deps
        if not await taskforces.link_case(deps.conn, found.id, case.id, ctx.sender, ctx.now_ms):
            await ctx.reply("taskforce.linked_already", number=case.number, tf=found.number)
            return
        await cases.add_event(
            deps.conn, case.id, ctx.sender, "taskforce", None, found.number, None, ctx.now_ms
        )
        lang = await org.room_language(deps.conn, found.room_id, ctx.lang)
        await deps.messenger.send(
            found.room_id, case_summary(deps, case, lang), tag={"kind": "taskforce.case"}
        )
        await ctx.audit.record(
            ctx.sender, "taskforce.case_linked", target=case.number, room_id=found.room_id
        )
        if ctx.event.room_id != found.room_id:
            await ctx.reply("taskforce.linked", number=case.number, tf=found.number)

    @commands.command(
        "taskforce close",
        usage='[TF-n] ["note"]',
        roles=OFFICERS,
        help_en="Close a task force: its room stays, updates stop.",
        help_zh="结束专案组：群保留，不再推送案件更新。",
    )
    async def close(ctx: CommandContext, parsed: ParsedCommand) -> None:
        rest, ref = _split_ref(list(parsed.args))
        found = await _changeable(ctx, ref)
        if found is None:
            return
        note = " ".join(rest)[:300]
        await taskforces.close(ctx.deps.conn, found.id, ctx.sender, ctx.now_ms)
        await ctx.audit.record(
            ctx.sender, "taskforce.closed", target=found.number, detail={"note": note}
        )
        if found.room_id is not None:
            lang = await org.room_language(ctx.deps.conn, found.room_id, ctx.lang)
            await ctx.deps.messenger.send(
                found.room_id,
                ctx.deps.render(
                    "taskforce.closed",
                    lang,
                    number=found.number,
                    by=ctx.sender,
                    note=note,
                ),
            )
        if ctx.event.room_id != found.room_id:
            await ctx.reply("taskforce.closed_ok", number=found.number)

    @commands.command(
        "taskforces",
        roles=STAFF,
        help_en="The open task forces of your station(s), with their cases and members.",
        help_zh="本所正在进行的专案组及其案件和成员。",
    )
    async def listing(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if parsed.args:
            raise UsageError()
        conn = ctx.deps.conn
        items = []
        for found in await taskforces.of_stations(conn, [s.id for s in visible_stations(ctx)]):
            numbers = [case.number for case in await cases.of_taskforce(conn, found.id)]
            items.append(
                {
                    "number": found.number,
                    "name": found.name,
                    "cases": numbers,
                    "members": await taskforces.members(conn, found.id),
                }
            )
        await ctx.reply("taskforce.list", items=items)
