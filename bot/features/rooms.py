"""Neighbourhoods and their rooms: creating them, listing them, keeping their settings right.

* ``!neighbourhood add|set``, ``!neighbourhoods``, ``!room create``, ``!rooms``;
* room creation is queued in the outbox; the room is recorded only once the
  homeserver has created it (hook ``room.created``), so no row ever points at
  a room that does not exist;
* each station gets an officers' room at startup if it has none;
* reconciliation: at startup, and whenever someone other than the bot changes
  a managed room's settings, the room's state is read and whatever drifted
  from policy (join rule, guest access, history, power levels, officers,
  encryption) is written back — only what differs, and logged and audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from bot.commands import ParsedCommand, UsageError
from bot.config import District, Station
from bot.delivery import Outcome
from bot.domain import room_policy
from bot.domain.org import (
    SLUG,
    ManagedRoom,
    alias_localpart,
    officers_alias_localpart,
    room_name,
)
from bot.domain.render import Language
from bot.domain.roles import OFFICERS, STAFF
from bot.features import federation
from bot.features.context import CommandContext, Deps, EventContext
from bot.features.ports import RoomStateReader
from bot.features.registry import Features
from bot.features.scope import (
    audience_label,
    neighbourhood_or_explain,
    officer_station,
    options,
    require_officer_of,
    visible_stations,
)
from bot.store import org, outbox
from bot.store.reconcile import queue_reconcile, take_reconcile_queue

log = logging.getLogger(__name__)

SETTINGS_EVENTS = frozenset(
    {
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.guest_access",
        "m.room.history_visibility",
        "m.room.encryption",
    }
)


def create_body(
    deps: Deps,
    *,
    name: str,
    topic: str,
    alias: str,
    policy: room_policy.Policy,
    encrypted: bool,
) -> dict[str, Any]:
    """The ``/createRoom`` request of a managed room: policy applied from the first event."""
    initial_state = [
        {"type": event_type, "state_key": "", "content": content}
        for event_type, content in policy.required_state().items()
    ]
    if encrypted:
        initial_state.append(
            {"type": "m.room.encryption", "state_key": "", "content": room_policy.ENCRYPTION}
        )
    power = room_policy.power_levels(
        bot=deps.bot_id,
        officers=policy.staff,
        creators=[deps.bot_id],
        events_default=policy.events_default,
        invite=policy.invite,
    )
    return {
        "preset": "private_chat",
        "visibility": "private",
        "name": name,
        "topic": topic,
        "room_alias_name": alias,
        "invite": [user for user in policy.members if user != deps.bot_id],
        "initial_state": initial_state,
        "power_level_content_override": power,
    }


def policy_for(deps: Deps, room: ManagedRoom) -> room_policy.Policy:
    """The policy of a managed room, from config: who holds power, who may post, join rule."""
    config = deps.config
    station = config.station(room.station_id)
    if room.kind == "digest":
        if room.district is not None:
            district = config.district(room.district)
            staff = list(district.supervisors) if district else []
            readers: list[str] = []
        else:
            staff = list(station.supervisors) if station else []
            readers = (
                list(station.officers) if station and config.digests.officers_read_only else []
            )
        return room_policy.Policy(
            join_rule="invite",
            staff=tuple(staff),
            readers=tuple(readers),
            events_default=room_policy.OFFICER_LEVEL,
            invite=room_policy.SETTINGS_LEVEL,
        )
    officers = tuple(station.officers) if station else ()
    if room.kind == "neighbourhood":
        return room_policy.Policy(join_rule="knock", staff=officers)
    return room_policy.Policy(join_rule="invite", staff=officers)


async def _queue_room(deps: Deps, key: str, room: ManagedRoom, topic: str) -> None:
    alias = (room.alias or "").lstrip("#").split(":")[0]
    body = create_body(
        deps,
        name=room.name,
        topic=topic,
        alias=alias,
        policy=policy_for(deps, room),
        encrypted=room.encrypted,
    )
    await deps.actions.create_room(
        key,
        body,
        on_done="room.created",
        args={
            "kind": room.kind,
            "station_id": room.station_id,
            "district": room.district,
            "alias": room.alias,
            "name": room.name,
            "language": room.language,
            "encrypted": room.encrypted,
            "requested_by": deps.bot_id,
        },
    )
    log.info("queued the %s room %s", room.kind, room.name)


async def queue_officers_room(deps: Deps, station: Station) -> None:
    """Create the station's officers' room unless it exists or is being created."""
    key = f"officers/{station.id}"
    if await org.officers_room(deps.conn, station.id) or await deps.actions.creating(key):
        return
    lang = deps.config.language
    alias = officers_alias_localpart(station.id)
    room = ManagedRoom(
        room_id="",
        kind="officers",
        station_id=station.id,
        neighbourhood_id=None,
        audience=None,
        alias=f"#{alias}:{deps.server_name}",
        name=deps.render("rooms.officers_name", lang, station=station.name).body,
        language=lang,
        encrypted=deps.config.rooms.encrypted,
    )
    topic = deps.render("rooms.officers_topic", lang, station=station.name).body
    await _queue_room(deps, key, room, topic)


async def queue_digest_rooms(deps: Deps) -> None:
    """A digest room per station (its supervisors) and per district, unless there is one."""
    lang = deps.config.language
    encrypted = deps.config.rooms.encrypted
    for station in deps.config.stations:
        key = f"digest/station/{station.id}"
        if await org.digest_room(deps.conn, station_id=station.id) or await deps.actions.creating(
            key
        ):
            continue
        room = ManagedRoom(
            room_id="",
            kind="digest",
            station_id=station.id,
            neighbourhood_id=None,
            audience=None,
            alias=f"#nw-{station.id}-digest:{deps.server_name}",
            name=deps.render("digest.room_name", lang, scope=station.name).body,
            language=lang,
            encrypted=encrypted,
        )
        topic = deps.render("digest.room_topic", lang, scope=station.name).body
        await _queue_room(deps, key, room, topic)
    for district_id in deps.config.district_ids():
        key = f"digest/district/{district_id}"
        if await org.digest_room(deps.conn, district=district_id) or await deps.actions.creating(
            key
        ):
            continue
        district = deps.config.district(district_id)
        if district is not None and district.room is not None:
            await join_district_room(deps, district)
            continue
        scope = district.name if district else district_id
        room = ManagedRoom(
            room_id="",
            kind="digest",
            station_id=None,
            neighbourhood_id=None,
            audience=None,
            alias=f"#nw-district-{district_id}-digest:{deps.server_name}",
            name=deps.render("digest.room_name", lang, scope=scope).body,
            language=lang,
            encrypted=encrypted,
            district=district_id,
        )
        topic = deps.render("digest.room_topic", lang, scope=scope).body
        await _queue_room(deps, key, room, topic)


def room_server(room: str) -> str | None:
    """The server part of a room alias or of an old-style room id (v12 ids have none)."""
    _, sep, server = room.partition(":")
    return server if sep and server else None


async def join_district_room(deps: Deps, district: District) -> None:
    """Join the district's own digest room (on the district's server) unless under way."""
    assert district.room is not None
    if await outbox.lane_pending(deps.conn, district.room):
        return
    servers = [room_server(district.room), *(room_server(s) for s in district.supervisors)]
    via = list(dict.fromkeys(server for server in servers if server))
    await deps.actions.join(
        district.room, via, on_done="district.joined", args={"district": district.id}
    )
    log.info("joining the district room %s of %s", district.room, district.name)


async def district_joined(deps: Deps, args: dict[str, Any], outcome: Outcome) -> None:
    """Hook: the bot joined (or could not join) a district's room on another server."""
    district = deps.config.district(str(args.get("district")))
    if district is None or district.room is None:
        return
    if not outcome.ok or outcome.value is None:
        log.warning(
            "could not join the district room %s (%s); invite the bot there, or it retries"
            " at the next start",
            district.room,
            outcome.error,
        )
        await deps.audit.record(
            deps.bot_id,
            "district.join_failed",
            target=district.room,
            detail={"district": district.id, "error": outcome.error},
        )
        return
    if await org.digest_room(deps.conn, district=district.id) is not None:
        return
    lang = deps.config.language
    room = ManagedRoom(
        room_id=outcome.value,
        kind="digest",
        station_id=None,
        neighbourhood_id=None,
        audience=None,
        alias=district.room if district.room.startswith("#") else None,
        name=district.name,
        language=lang,
        encrypted=False,
        district=district.id,
        external=True,
    )
    if await org.room(deps.conn, room.room_id) is None:
        await org.add_room(deps.conn, room, deps.bot_id)
    await deps.audit.record(
        deps.bot_id, "district.joined", target=district.room, room_id=room.room_id
    )
    stations = [s.name for s in deps.config.stations_in(district.id)]
    await deps.messenger.send(
        room.room_id,
        deps.render("digest.section_intro", lang, district=district.name, stations=stations),
        tag={"kind": "intro"},
    )


async def room_created(deps: Deps, args: dict[str, Any], outcome: Outcome) -> None:
    """Hook: the homeserver created (or refused) a room; record it and finish setting it up."""
    requested_by = str(args["requested_by"])
    reply_room = args.get("reply_room")
    lang: Language = args.get("language", deps.config.language)
    if not outcome.ok or outcome.value is None:
        await deps.audit.record(
            requested_by,
            "room.create_failed",
            target=str(args.get("alias")),
            detail={"error": outcome.error},
        )
        if isinstance(reply_room, str):
            await deps.messenger.send(
                reply_room,
                deps.render("rooms.create_failed", name=args["name"], error=outcome.error or ""),
                reply_to=args.get("reply_to"),
                mentions=[requested_by],
            )
        return
    room = ManagedRoom(
        room_id=outcome.value,
        kind=args["kind"],
        station_id=args.get("station_id"),
        neighbourhood_id=args.get("neighbourhood_id"),
        audience=args.get("audience"),
        alias=args.get("alias"),
        name=str(args["name"]),
        language=lang,
        encrypted=bool(args.get("encrypted")),
        district=args.get("district"),
    )
    if await org.room(deps.conn, room.room_id) is None:
        await org.add_room(deps.conn, room, requested_by)
    await deps.audit.record(
        requested_by,
        "room.created",
        target=room.alias,
        room_id=room.room_id,
        detail={"kind": room.kind, "audience": room.audience},
    )
    if room.kind == "neighbourhood":
        rules = await deps.messenger.send(
            room.room_id, deps.render("rooms.rules", lang), tag={"kind": "rules"}
        )
        await org.set_rules_row(deps.conn, room.room_id, rules)
        await deps.actions.pin(room.room_id, [rules])
    else:
        intro = "digest.room_intro" if room.kind == "digest" else "rooms.officers_intro"
        await deps.messenger.send(room.room_id, deps.render(intro, lang), tag={"kind": "intro"})
    if isinstance(reply_room, str):
        await deps.messenger.send(
            reply_room,
            deps.render("rooms.created", name=room.name, alias=room.alias or room.room_id),
            reply_to=args.get("reply_to"),
            mentions=[requested_by],
        )


async def reconcile_room(
    deps: Deps, room: ManagedRoom, state_events: list[dict[str, Any]]
) -> list[str]:
    """Queue what brings ``room`` back to policy; returns the changes (empty: nothing drifted)."""
    policy = policy_for(deps, room)
    state = room_policy.RoomState.from_events(state_events)
    await federation.remember_state(deps.conn, room.room_id, state_events)
    # Encryption is never switched off; it is switched on when config asks for it.
    fixes = room_policy.fixes(
        state,
        bot=deps.bot_id,
        officers=policy.staff,
        encrypted=deps.config.rooms.encrypted,
        policy=policy,
    )
    changes: list[str] = []
    for fix in fixes:
        await deps.actions.put_state(room.room_id, fix.event_type, fix.content, fix.state_key)
        changes.extend(fix.changes)
        if fix.event_type == "m.room.encryption":
            await org.set_encrypted(deps.conn, room.room_id)
    for member in room_policy.officers_to_invite(state, policy.members):
        await deps.actions.invite(room.room_id, member)
        changes.append(f"invite {member}")
    if changes:
        log.info("reconciled %s (%s): %s", room.name, room.room_id, "; ".join(changes))
        await deps.audit.record(
            deps.bot_id, "room.reconciled", room_id=room.room_id, detail={"changes": changes}
        )
    return changes


Transaction = Callable[[], AbstractAsyncContextManager[Deps]]


async def ensure_station_rooms(transaction: Transaction) -> None:
    async with transaction() as deps:
        for station in deps.config.stations:
            await queue_officers_room(deps, station)
        await queue_digest_rooms(deps)


async def reconcile_all(transaction: Transaction, reader: RoomStateReader) -> int:
    """Startup: every managed room is read and corrected. Returns how many needed changes."""
    async with transaction() as deps:
        rooms = await org.rooms(deps.conn)
    changed = 0
    for room in rooms:
        changed += await _reconcile_one(transaction, reader, room)
    return changed


async def reconcile_requested(transaction: Transaction, reader: RoomStateReader) -> int:
    """The rooms whose settings someone changed since the last pass."""
    async with transaction() as deps:
        queued = await take_reconcile_queue(deps.conn)
        rooms = [r for r in [await org.room(deps.conn, room_id) for room_id in queued] if r]
    changed = 0
    for room in rooms:
        changed += await _reconcile_one(transaction, reader, room)
    return changed


async def _reconcile_one(
    transaction: Transaction, reader: RoomStateReader, room: ManagedRoom
) -> int:
    if room.external or room.kind == "taskforce":
        return 0  # not ours to correct (task forces keep their own member list)
    state = await reader.room_state(room.room_id)
    if state is None:
        async with transaction() as deps:
            await queue_reconcile(deps.conn, room.room_id, deps.now_ms)
        return 0
    async with transaction() as deps:
        return 1 if await reconcile_room(deps, room, state) else 0


def register(features: Features) -> None:
    commands = features.commands
    commands.alias("neighborhood", "neighbourhood")
    commands.alias("neighborhoods", "neighbourhoods")
    features.hooks["room.created"] = room_created
    features.hooks["district.joined"] = district_joined

    @commands.command(
        "neighbourhood add",
        usage='<slug> "<name>" [lang=zh|en] [station=<id>]',
        roles=OFFICERS,
        help_en="Add a neighbourhood (residential complex) to your station.",
        help_zh="为您的派出所添加一个小区（居民区）。",
    )
    async def neighbourhood_add(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (slug, name), opts = options(parsed.args, ("lang", "station"), positional=2)
        slug = slug.lower()
        if not SLUG.match(slug):
            raise UsageError(key="usage.bad_slug", slug=slug)
        lang = opts.get("lang", ctx.deps.config.language)
        if lang not in ("zh", "en"):
            raise UsageError(key="usage.bad_lang", value=lang)
        station = officer_station(ctx, opts.get("station"))
        existing = await org.neighbourhood_by_slug(ctx.deps.conn, slug)
        if existing is not None:
            await ctx.reply("rooms.nbh_exists", slug=slug, name=existing.name)
            return
        nbh = await org.add_neighbourhood(
            ctx.deps.conn,
            station_id=station.id,
            slug=slug,
            name=name.strip(),
            language=lang,
            created_by=ctx.sender,
        )
        await ctx.audit.record(
            ctx.sender,
            "neighbourhood.add",
            target=slug,
            detail={"name": nbh.name, "station": station.id, "lang": lang},
        )
        await ctx.reply(
            "rooms.nbh_added",
            slug=slug,
            name=nbh.name,
            station=station.name,
            audiences=", ".join(ctx.deps.config.rooms.audiences),
        )

    @commands.command(
        "neighbourhood set",
        usage='<slug> [lang=zh|en] [welcome=on|off] [name="…"] [officer=@user:server]',
        roles=OFFICERS,
        help_en="Change a neighbourhood's language, welcome messages, name or officer in charge.",
        help_zh="修改小区的语言、欢迎消息、名称或责任民警。",
    )
    async def neighbourhood_set(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (slug,), opts = options(parsed.args, ("lang", "welcome", "name", "officer"), positional=1)
        if not opts:
            raise UsageError()
        nbh = await neighbourhood_or_explain(ctx, slug)
        if nbh is None:
            return
        await require_officer_of(ctx, nbh.station_id, "neighbourhood set")
        lang = opts.get("lang")
        if lang is not None and lang not in ("zh", "en"):
            raise UsageError(key="usage.bad_lang", value=lang)
        welcome = opts.get("welcome")
        if welcome is not None and welcome not in ("on", "off"):
            raise UsageError(key="usage.on_off", option="welcome", value=welcome)
        await org.update_neighbourhood(
            ctx.deps.conn,
            nbh.id,
            language=lang,
            welcome=None if welcome is None else welcome == "on",
            name=opts.get("name"),
        )
        await ctx.audit.record(ctx.sender, "neighbourhood.set", target=nbh.slug, detail=opts)
        await ctx.reply("rooms.nbh_updated", slug=nbh.slug)

    @commands.command(
        "neighbourhoods",
        roles=STAFF,
        help_en="List the neighbourhoods of your station(s) and their rooms.",
        help_zh="列出您所在派出所的小区及其群组。",
    )
    async def neighbourhoods(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if parsed.args:
            raise UsageError()
        stations = visible_stations(ctx)
        items = []
        for nbh in await org.neighbourhoods(ctx.deps.conn, [s.id for s in stations]):
            rooms = await org.rooms(ctx.deps.conn, neighbourhood_id=nbh.id)
            items.append(
                {
                    "slug": nbh.slug,
                    "name": nbh.name,
                    "station": nbh.station_id,
                    "lang": nbh.language,
                    "audiences": [r.audience for r in rooms],
                }
            )
        await ctx.reply("rooms.nbh_list", items=items)

    @commands.command(
        "room create",
        usage="<neighbourhood> <audience>",
        roles=OFFICERS,
        help_en="Create the verified, invite-only room of a neighbourhood for one audience.",
        help_zh="为小区的某一类成员创建经核实、仅限邀请的群组。",
    )
    async def room_create(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (slug, audience), _ = options(parsed.args, (), positional=2)
        audience = audience.lower()
        audiences = ctx.deps.config.rooms.audiences
        if audience not in audiences:
            raise UsageError(
                key="usage.bad_audience", value=audience, audiences=", ".join(audiences)
            )
        nbh = await neighbourhood_or_explain(ctx, slug)
        if nbh is None:
            return
        await require_officer_of(ctx, nbh.station_id, "room create")
        existing = await org.room_for(ctx.deps.conn, nbh.id, audience)
        if existing is not None:
            await ctx.reply("rooms.room_exists", name=existing.name, alias=existing.alias or "")
            return
        key = f"{nbh.slug}/{audience}"
        if await ctx.deps.actions.creating(key):
            await ctx.reply("rooms.room_creating", ref=key)
            return
        station = ctx.deps.config.station(nbh.station_id)
        assert station is not None
        name = room_name(nbh.name, audience_label(nbh.language, audience))
        alias = alias_localpart(nbh.slug, audience)
        encrypted = ctx.deps.config.rooms.encrypted
        body = create_body(
            ctx.deps,
            name=name,
            topic=ctx.deps.render(
                "rooms.topic", nbh.language, name=nbh.name, station=station.name
            ).body,
            alias=alias,
            policy=room_policy.Policy(join_rule="knock", staff=tuple(station.officers)),
            encrypted=encrypted,
        )
        await ctx.deps.actions.create_room(
            key,
            body,
            on_done="room.created",
            args={
                "kind": "neighbourhood",
                "station_id": station.id,
                "neighbourhood_id": nbh.id,
                "audience": audience,
                "alias": f"#{alias}:{ctx.deps.server_name}",
                "name": name,
                "language": nbh.language,
                "encrypted": encrypted,
                "requested_by": ctx.sender,
                "reply_room": ctx.event.room_id,
                "reply_to": ctx.event.event_id,
            },
        )
        await ctx.audit.record(ctx.sender, "room.create", target=key)
        await ctx.reply("rooms.room_queued", name=name)

    @commands.command(
        "rooms",
        usage="[neighbourhood]",
        roles=STAFF,
        help_en="List managed rooms with their members and pending join requests.",
        help_zh="列出受管理的群组及其成员数和待处理的入群申请。",
    )
    async def rooms(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) > 1:
            raise UsageError()
        stations = [s.id for s in visible_stations(ctx)]
        nbh_id = None
        if parsed.args:
            nbh = await neighbourhood_or_explain(ctx, parsed.args[0])
            if nbh is None:
                return
            nbh_id = nbh.id
        items = []
        for room in await org.rooms(ctx.deps.conn, station_ids=stations, neighbourhood_id=nbh_id):
            members = await org.members(ctx.deps.conn, room.room_id)
            pending = await org.pending_requests(ctx.deps.conn, [room.room_id])
            items.append(
                {
                    "name": room.name,
                    "alias": room.alias or room.room_id,
                    "kind": room.kind,
                    "members": len(members),
                    "pending": len(pending),
                }
            )
        await ctx.reply("rooms.list", items=items)

    async def settings_changed(ctx: EventContext) -> None:
        """Someone other than the bot touched a managed room's settings: check it."""
        if ctx.room is None or ctx.room.external or ctx.sender == ctx.deps.bot_id:
            return
        if ctx.event.type in SETTINGS_EVENTS:
            await queue_reconcile(ctx.deps.conn, ctx.room.room_id, ctx.now_ms)
            await ctx.audit.record(
                ctx.sender,
                "room.settings_changed",
                room_id=ctx.room.room_id,
                detail={"type": ctx.event.type},
            )

    features.on_state.append(settings_changed)
