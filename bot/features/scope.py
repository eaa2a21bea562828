"""Shared by the organisation features: finding rooms and neighbourhoods from what an officer
typed, parsing ``key=value`` options, and least-privilege checks of a station's officers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.commands import UsageError
from bot.config import Station
from bot.domain.org import ManagedRoom, Neighbourhood, split_room_ref
from bot.domain.render import Language, UnknownMessageKey, text
from bot.features.context import EventContext
from bot.store import org


class Refused(Exception):
    """The caller may not act on this (their station does not own it); already answered."""


def options(
    args: Sequence[str], allowed: Iterable[str], *, positional: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """Split ``a b key=value`` into positionals and options; unknown keys are usage errors."""
    allowed = set(allowed)
    plain: list[str] = []
    opts: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.isidentifier():
            if key.lower() not in allowed:
                known = ", ".join(f"{k}=" for k in sorted(allowed)) or "-"
                raise UsageError(key="usage.unknown_option", option=key, known=known)
            opts[key.lower()] = value
        else:
            plain.append(arg)
    if positional is not None and len(plain) != positional:
        raise UsageError()
    return plain, opts


def audience_label(lang: Language, audience: str) -> str:
    try:
        return text(lang, f"audience.{audience}")
    except UnknownMessageKey:
        return audience


async def find_room(ctx: EventContext, ref: str | None) -> ManagedRoom | None:
    """``slug/audience``, ``#alias``, ``!room_id``, or (no ref) the room the command came from."""
    conn = ctx.deps.conn
    if ref is None:
        return ctx.room
    if ref.startswith("!"):
        return await org.room(conn, ref)
    if ref.startswith("#"):
        return await org.room_by_alias(conn, ref)
    parts = split_room_ref(ref)
    if parts is None:
        return None
    nbh = await org.neighbourhood_by_slug(conn, parts[0])
    if nbh is None:
        return None
    return await org.room_for(conn, nbh.id, parts[1])


async def room_or_explain(ctx: EventContext, ref: str | None) -> ManagedRoom | None:
    """Like ``find_room``, but tells the caller what exists when nothing matches."""
    found = await find_room(ctx, ref)
    if found is not None and found.kind == "neighbourhood":
        return found
    stations = [s.id for s in visible_stations(ctx)]
    rooms = await org.rooms(ctx.deps.conn, station_ids=stations, kind="neighbourhood")
    refs = await room_refs(ctx, rooms)
    await ctx.reply("org.unknown_room", ref=ref or "", rooms=refs)
    return None


async def room_refs(ctx: EventContext, rooms: Iterable[ManagedRoom]) -> list[str]:
    refs = []
    for room in rooms:
        if room.neighbourhood_id is None:
            continue
        nbh = await org.neighbourhood_by_id(ctx.deps.conn, room.neighbourhood_id)
        if nbh is not None:
            refs.append(f"{nbh.slug}/{room.audience}")
    return refs


async def neighbourhood_or_explain(ctx: EventContext, slug: str) -> Neighbourhood | None:
    found = await org.neighbourhood_by_slug(ctx.deps.conn, slug.lower())
    if found is not None:
        return found
    known = await org.neighbourhoods(ctx.deps.conn, [s.id for s in visible_stations(ctx)])
    await ctx.reply("org.unknown_neighbourhood", slug=slug, known=[n.slug for n in known])
    return None


def visible_stations(ctx: EventContext) -> list[Station]:
    """Stations whose rooms the sender may see: where they are officer or supervisor."""
    config = ctx.deps.config
    return [s for s in config.stations if ctx.sender in s.officers or ctx.sender in s.supervisors]


async def require_officer_of(ctx: EventContext, station_id: str | None, what: str) -> None:
    """Refuse (answer + audit row) unless the sender is an officer of ``station_id``."""
    station = ctx.deps.config.station(station_id)
    if station is not None and ctx.sender in station.officers:
        return
    await ctx.audit.record(
        ctx.sender,
        "scope.refused",
        target=what,
        room_id=ctx.event.room_id,
        detail={"station": station_id, "event_id": ctx.event.event_id},
    )
    await ctx.reply("org.not_your_station", station=station.name if station else str(station_id))
    raise Refused(what)


async def require_staff_of(ctx: EventContext, station_id: str | None, what: str) -> bool:
    """True for an officer or supervisor of ``station_id``; no answer is given otherwise."""
    station = ctx.deps.config.station(station_id)
    return station is not None and (
        ctx.sender in station.officers or ctx.sender in station.supervisors
    )


def officer_station(ctx: EventContext, wanted: str | None) -> Station:
    """The station the officer acts for: the only one they have, or ``station=`` among them."""
    mine = ctx.deps.config.stations_of(ctx.sender)
    if wanted is not None:
        for station in mine:
            if station.id == wanted:
                return station
        raise UsageError(key="usage.not_your_station", station=wanted)
    if len(mine) == 1:
        return mine[0]
    raise UsageError(key="usage.which_station", ids=", ".join(s.id for s in mine))
