"""Residents report by writing what they saw; the bot turns reports into cases.

* In a neighbourhood room, a verified member's message is analysed: a confident
  tip becomes a case with a threaded acknowledgement; an uncertain one gets a
  question ("shall I log this?", answered yes/no or 👍); anything else, silence.
* An emergency gets the right hotline at once, the case is urgent and the
  station's officers are mentioned in the officers' room.
* A DM from a verified member is a private case; ``!tip anonymous …`` (or
  ``!anonymous on`` in the DM) hides the reporter behind a pseudonym.
* Replies to a tip or to the bot's acknowledgement add notes and evidence to
  the case; photos sent around a tip are attached to it. A reply counts only in
  the room of the message it points at, and only the reporter answers the
  question about their own message.
* An edit of a logged tip is kept as its edit history; the reporter deleting
  it withdraws it (``on_redaction``): the police keep the text.
* ``!tip`` logs any message (or the one it replies to); ``!log call|visit``
  records reports that came by phone or in person; ``!case ask`` relays a
  question to the reporter and their answer back.
"""

from __future__ import annotations

from bot.commands import ParsedCommand, UsageError
from bot.domain import cases as rules
from bot.domain.matrix_model import RoomEvent
from bot.domain.org import ManagedRoom
from bot.domain.roles import MEMBERS_AND_STAFF, OFFICERS, Role
from bot.domain.tips import CATEGORIES, TipAnalysis, analyse
from bot.features.casework import category_label, open_case
from bot.features.context import CommandContext, EventContext
from bot.features.onboarding import notify_officers
from bot.features.registry import Features
from bot.features.scope import officer_station, options
from bot.store import cases, intake, kv, org

CONFIDENT = 0.7
UNCERTAIN = 0.4
QUESTION_WINDOW_MS = 24 * 3_600_000
RELAY_WINDOW_MS = 7 * 86_400_000
MEDIA_TYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})
ANONYMOUS_PREF = "anonymous-dm:"


def relation_target(event: RoomEvent) -> str | None:
    """The event this one answers: the reply target, else the thread root."""
    if event.in_reply_to:
        return event.in_reply_to
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        return root if isinstance(root, str) else None
    return None


def _is_staff(ctx: EventContext) -> bool:
    return Role.OFFICER in ctx.roles or Role.SUPERVISOR in ctx.roles


async def reporter_home(ctx: EventContext) -> ManagedRoom | None:
    """For a DM tip: the neighbourhood room the reporter is a verified member of."""
    for member in await org.memberships(ctx.deps.conn, ctx.sender):
        if member.verified:
            room = await org.room(ctx.deps.conn, member.room_id)
            if room is not None and room.kind == "neighbourhood":
                return room
    return None


async def acknowledge(ctx: EventContext, case: rules.Case, analysis: TipAnalysis | None) -> None:
    deps = ctx.deps
    station = deps.config.station(case.station_id)
    who = case.assignee or (station.name if station else "")
    message = ctx.render(
        "intake.ack",
        number=case.number,
        category=category_label(ctx.lang, case.category),
        location=case.location or "",
        assignee=case.assignee or "",
        station=who,
        emergency=case.urgent,
        hotlines=list(analysis.hotlines) if analysis else [],
        anonymous=case.anonymous,
        excerpt=rules.excerpt(case.text, 120) if len(ctx.event.body) > 2000 else "",
        truncated=case.text_truncated,
    )
    thread = None if ctx.in_dm or case.event_id is None else case.event_id
    row = await deps.messenger.send(
        ctx.event.room_id,
        message,
        reply_to=ctx.event.event_id,
        mentions=[ctx.sender],
        tag={"kind": "case.ack", "case": case.number},
        thread_root=thread,
    )
    await cases.remember_message(deps.conn, cases.row_ref(row), case.id, "ack")


async def log_tip(
    ctx: EventContext,
    body: str,
    *,
    event_id: str,
    reporter: str,
    analysis: TipAnalysis | None = None,
    anonymous: bool = False,
) -> rules.Case | None:
    """Open a case for ``body`` (from ``ctx.room`` or the reporter's DM) and acknowledge it."""
    analysis = analysis or analyse(body, ctx.lang)
    if await cases.logged(ctx.deps.conn, event_id):
        await ctx.reply("intake.already_logged")
        return None
    room = ctx.room if ctx.room is not None and ctx.room.kind == "neighbourhood" else None
    home = room or await reporter_home(ctx)
    if home is None or home.station_id is None:
        station = ctx.deps.config.stations_of(ctx.sender)
        if not station:
            await ctx.reply("intake.no_station")
            return None
        station_id = station[0].id
    else:
        station_id = home.station_id
    case = await open_case(
        ctx.deps,
        station_id=station_id,
        source="room" if room else "dm",
        body=body,
        analysis=analysis,
        created_by=ctx.sender,
        reporter=reporter,
        anonymous=anonymous,
        room=room,
        neighbourhood_id=home.neighbourhood_id if home else None,
        dm_room=None if room else ctx.event.room_id,
        event_id=event_id,
    )
    await acknowledge(ctx, case, analysis)
    return case


async def add_to_case(ctx: EventContext, case: rules.Case) -> None:
    """A reply to a tip or to the bot's acknowledgement: a note or evidence, not a new case."""
    deps, event = ctx.deps, ctx.event
    if event.msgtype in MEDIA_TYPES:
        await cases.attach(
            deps.conn, case.id, dict(event.content), event.event_id, ctx.sender, ctx.now_ms
        )
        await cases.add_event(
            deps.conn, case.id, ctx.sender, "evidence", None, None, event.msgtype, ctx.now_ms
        )
    else:
        note, _ = rules.clip(event.body, 4000)
        await cases.add_event(deps.conn, case.id, ctx.sender, "note", None, None, note, ctx.now_ms)
    await cases.remember_message(deps.conn, event.event_id, case.id, "note")
    await deps.audit.record(ctx.sender, "case.note", target=case.number, room_id=event.room_id)
    await deps.messenger.react(event.room_id, event.event_id, "✅")


async def answer_question(ctx: EventContext, tip_event: str, yes: bool) -> None:
    deps = ctx.deps
    if not yes:
        await intake.close_question(deps.conn, tip_event, "declined")
        await ctx.reply("intake.not_logged")
        return
    original = await intake.message(deps.conn, tip_event)
    await intake.close_question(deps.conn, tip_event, "logged")
    if original is None:
        await ctx.reply("intake.forgotten")
        return
    base = EventContext(
        deps=deps,
        event=_as_event(original),
        roles=ctx.roles,
        lang=ctx.lang,
        room=ctx.room,
        dm_with=ctx.dm_with,
    )
    await log_tip(base, original.body, event_id=original.event_id, reporter=original.sender)


def _as_event(message: intake.RecentMessage) -> RoomEvent:
    return RoomEvent(
        message.event_id,
        message.room_id,
        message.sender,
        "m.room.message",
        message.content,
        message.at,
    )


async def relay_answer(ctx: EventContext) -> bool:
    """In the reporter's DM: the answer to an officer's ``!case ask`` goes back to them."""
    deps = ctx.deps
    open_relay = await intake.open_relay(deps.conn, ctx.sender, ctx.now_ms - RELAY_WINDOW_MS)
    if open_relay is None:
        return False
    relay_id, case_id, asked_by, reply_room = open_relay
    case = await cases.by_id(deps.conn, case_id)
    if case is None:
        return False
    pseudonym = await cases.pseudonym(deps.conn, case.station_id, ctx.sender)
    answer, _ = rules.clip(ctx.event.body, 4000)
    await intake.answered(deps.conn, relay_id, ctx.now_ms)
    await cases.add_event(deps.conn, case.id, ctx.sender, "answer", None, None, answer, ctx.now_ms)
    await deps.messenger.send(
        reply_room,
        deps.render(
            "intake.relayed_answer",
            number=case.number,
            answer=answer,
            who=deps.render("case.anonymous_reporter", number=pseudonym).body
            if case.anonymous
            else (case.reporter or ""),
        ),
        mentions=[asked_by],
        tag={"kind": "case.answer", "case": case.number},
    )
    await ctx.reply("intake.answer_passed", number=case.number)
    return True


async def on_message(ctx: EventContext) -> bool:
    deps, event = ctx.deps, ctx.event
    room = ctx.room
    if ctx.in_dm:
        if Role.RESIDENT not in ctx.roles or _is_staff(ctx):
            return False
        if await relay_answer(ctx):
            return True
    elif room is None or room.kind != "neighbourhood" or _is_staff(ctx):
        return False
    else:
        member = await org.member(deps.conn, room.room_id, ctx.sender)
        if member is None or not member.active:
            return False
    if event.is_edit:
        await _edited(ctx)
        return True
    await intake.remember(
        deps.conn, event.event_id, event.room_id, ctx.sender, dict(event.content), ctx.now_ms
    )
    answer = rules.yes_or_no(event.body)
    target = relation_target(event)
    if target is not None:
        if answer is not None:
            pending = await intake.question_for(
                deps.conn, target, room_id=event.room_id, reporter=ctx.sender
            )
            if pending is not None:
                await answer_question(ctx, pending, answer)
                return True
        found = await cases.case_of_event(deps.conn, target)
        # A reply names its target by id only: a case from another room (another
        # neighbourhood, someone else's direct chat) is not this conversation's.
        if found is not None and found[0].room_id == event.room_id:
            await add_to_case(ctx, found[0])
            return True
    if answer is not None:
        asked = await intake.open_question(
            deps.conn, event.room_id, ctx.sender, ctx.now_ms - QUESTION_WINDOW_MS
        )
        if asked is not None:
            await answer_question(ctx, asked, answer)
            return True
    if event.msgtype in MEDIA_TYPES:
        return await _attach_to_recent(ctx)
    analysis = analyse(event.body, ctx.lang)
    anonymous = ctx.in_dm and await kv.get(deps.conn, ANONYMOUS_PREF + ctx.sender) == "on"
    if ctx.in_dm and analysis.confidence >= UNCERTAIN:
        # A direct message to the police is a report unless it is plainly chatter.
        await log_tip(
            ctx,
            event.body,
            event_id=event.event_id,
            reporter=ctx.sender,
            analysis=analysis,
            anonymous=anonymous,
        )
        return True
    if analysis.confidence >= CONFIDENT:
        await log_tip(
            ctx,
            event.body,
            event_id=event.event_id,
            reporter=ctx.sender,
            analysis=analysis,
            anonymous=anonymous,
        )
        return True
    if analysis.confidence >= UNCERTAIN:
        row = await deps.messenger.send(
            event.room_id,
            ctx.render("intake.ask"),
            reply_to=event.event_id,
            mentions=[ctx.sender],
            tag={"kind": "intake.ask"},
            thread_root=None if ctx.in_dm else event.event_id,
        )
        await intake.ask(deps.conn, event.event_id, event.room_id, ctx.sender, row, ctx.now_ms)
        return True
    if ctx.in_dm:
        await ctx.reply("intake.dm_hint")
        return True
    return False


async def _edited(ctx: EventContext) -> None:
    """An edit of a logged tip is kept as its edit history; the case text stays as reported."""
    relates = ctx.event.content.get("m.relates_to")
    target = relates.get("event_id") if isinstance(relates, dict) else None
    if not isinstance(target, str):
        return
    case = await cases.by_event(ctx.deps.conn, target)
    if case is None or case.reporter != ctx.sender or case.room_id != ctx.event.room_id:
        return
    new = ctx.event.content.get("m.new_content")
    body = new.get("body") if isinstance(new, dict) else None
    if isinstance(body, str):
        text, _ = rules.clip(body, 4000)
        await cases.add_event(
            ctx.deps.conn, case.id, ctx.sender, "edited", None, None, text, ctx.now_ms
        )


async def on_redaction(ctx: EventContext) -> None:
    """A reporter deleting their own tip withdraws it; the case keeps the text for the police.

    Deleting a message in Matrix removes it for everyone, but a report the police have
    logged is a record: the case keeps the text as received and its history gains
    "withdrawn" by the reporter, which ``!case N`` shows; the station's officers are told
    (case number only). The group room is not told — announcing it would tie the person
    who deleted a message to the case — and the bot's acknowledgement stays.

    Only the author's own deletion counts: a moderator removing a message is moderation,
    and the case is unchanged. Deleting a message the bot has not logged withdraws it
    too: an open "shall I log this?" is closed (a later "yes" logs nothing) and the bot
    forgets the message, so ``!tip`` in reply to it cannot log it either.
    """
    deps, event = ctx.deps, ctx.event
    target = event.redacts
    if target is None:
        return
    case = await cases.by_event(deps.conn, target)
    if case is None:
        original = await intake.message(deps.conn, target)
        if original is None or original.sender != ctx.sender or original.room_id != event.room_id:
            return
        await intake.close_question(deps.conn, target, "declined")
        await intake.forget(deps.conn, target)
        return
    if case.reporter != ctx.sender or case.room_id != event.room_id:
        return
    if any(h.action == "withdrawn" for h in await cases.history(deps.conn, case.id)):
        return
    await cases.add_event(deps.conn, case.id, ctx.sender, "withdrawn", None, None, None, ctx.now_ms)
    await deps.audit.record(ctx.sender, "case.withdrawn", target=case.number, room_id=event.room_id)
    await notify_officers(
        deps,
        case.station_id,
        "intake.withdrawn_notice",
        mentions=[case.assignee] if case.assignee else [],
        number=case.number,
    )


async def _attach_to_recent(ctx: EventContext) -> bool:
    """A photo or file right after the reporter's tip belongs to that case."""
    deps, event = ctx.deps, ctx.event
    recent, _ = await cases.search(
        deps.conn,
        station_ids=[s.id for s in deps.config.stations],
        room_id=event.room_id,
        since=ctx.now_ms - 5 * 60_000,
        limit=5,
    )
    mine = [c for c in recent if c.reporter == ctx.sender]
    if not mine:
        return False  # kept in recent messages: attached if a tip follows within minutes
    await cases.attach(
        deps.conn, mine[0].id, dict(event.content), event.event_id, ctx.sender, ctx.now_ms
    )
    await cases.add_event(
        deps.conn, mine[0].id, ctx.sender, "evidence", None, None, event.msgtype, ctx.now_ms
    )
    await deps.messenger.react(event.room_id, event.event_id, "✅")
    return True


async def on_reaction(ctx: EventContext) -> None:
    """👍 on the bot's "shall I log this?" logs the tip (only from the reporter)."""
    relates = ctx.event.content.get("m.relates_to")
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
        return
    target, key = relates.get("event_id"), str(relates.get("key", ""))
    if not isinstance(target, str):
        return
    pending = await intake.question_for(ctx.deps.conn, target)
    if pending is None:
        return
    original = await intake.message(ctx.deps.conn, pending)
    if original is None or original.sender != ctx.sender:
        return
    answer = rules.yes_or_no(key.replace("\ufe0f", ""))
    if answer is not None:
        await answer_question(ctx, pending, answer)


def register(features: Features) -> None:
    commands = features.commands
    features.on_message.append(on_message)
    features.on_reaction.append(on_reaction)
    features.on_redaction.append(on_redaction)

    @commands.command(
        "tip",
        usage="[anonymous] <what you saw>  (or reply !tip to a message)",
        roles=MEMBERS_AND_STAFF,
        help_en="Log a report as a case (or, as a reply, the message you reply to).",
        help_zh="将报告记录为案件（或回复某条消息以记录该消息）。",
    )
    async def tip(ctx: CommandContext, parsed: ParsedCommand) -> None:
        args = list(parsed.args)
        anonymous = bool(args) and args[0].lower() in ("anonymous", "anon", "匿名")
        body = (
            parsed.raw_args.split(None, 1)[1]
            if anonymous and len(args) > 1
            else ("" if anonymous else parsed.raw_args)
        )
        target = ctx.event.in_reply_to
        if not body.strip() and target:
            original = await intake.message(ctx.deps.conn, target)
            if original is None or original.room_id != ctx.event.room_id:
                await ctx.reply("intake.forgotten")
                return
            await log_tip(
                ctx,
                original.body,
                event_id=original.event_id,
                reporter=original.sender,
                anonymous=anonymous,
            )
            return
        if not body.strip():
            raise UsageError()
        if ctx.room is not None and ctx.room.kind != "neighbourhood" and not ctx.in_dm:
            await ctx.reply("intake.tip_where")
            return
        await log_tip(
            ctx, body, event_id=ctx.event.event_id, reporter=ctx.sender, anonymous=anonymous
        )

    @commands.command(
        "anonymous",
        usage="on|off",
        roles=MEMBERS_AND_STAFF,
        help_en="In a direct message: report anonymously (officers see a pseudonym) or not.",
        help_zh="在私信中：匿名举报（民警只看到化名）或取消匿名。",
    )
    async def anonymous(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (value,), _ = options(parsed.args, (), positional=1)
        if value.lower() not in ("on", "off"):
            raise UsageError(key="usage.on_off", option="anonymous", value=value)
        if not ctx.in_dm:
            await ctx.reply("onboarding.join_in_dm", bot=ctx.deps.bot_id)
            return
        await kv.put(ctx.deps.conn, ANONYMOUS_PREF + ctx.sender, value.lower())
        await ctx.audit.record(ctx.sender, "reporter.anonymous", detail={"value": value})
        await ctx.reply("intake.anonymous_set", on=value.lower() == "on")

    @commands.command(
        "log",
        usage='call|visit "<summary>" [category=…] [location="…"] [neighbourhood=<slug>] '
        '[reporter="…"]',
        roles=OFFICERS,
        help_en="Record a report that came by phone or in person as a case.",
        help_zh="将电话或上门反映的情况登记为案件。",
    )
    async def log_report(ctx: CommandContext, parsed: ParsedCommand) -> None:
        plain, opts = options(
            parsed.args, ("category", "location", "neighbourhood", "reporter", "station")
        )
        if len(plain) != 2 or plain[0].lower() not in ("call", "visit"):
            raise UsageError()
        channel, summary = plain[0].lower(), plain[1].strip()
        if not summary:
            raise UsageError()
        category = opts.get("category")
        if category is not None and category not in CATEGORIES:
            raise UsageError(
                key="usage.bad_category", value=category, categories=", ".join(CATEGORIES)
            )
        nbh_id = None
        station = officer_station(ctx, opts.get("station"))
        if "neighbourhood" in opts:
            nbh = await org.neighbourhood_by_slug(ctx.deps.conn, opts["neighbourhood"].lower())
            if nbh is None or nbh.station_id != station.id:
                known = await org.neighbourhoods(ctx.deps.conn, [station.id])
                await ctx.reply(
                    "org.unknown_neighbourhood",
                    slug=opts["neighbourhood"],
                    known=[n.slug for n in known],
                )
                return
            nbh_id = nbh.id
        analysis = analyse(summary)
        case = await open_case(
            ctx.deps,
            station_id=station.id,
            source=channel,
            body=summary,
            analysis=analysis,
            created_by=ctx.sender,
            reporter_name=opts.get("reporter"),
            neighbourhood_id=nbh_id,
            category=category,
            location=opts.get("location"),
        )
        await ctx.reply(
            "intake.logged_call",
            number=case.number,
            channel=channel,
            category=category_label(ctx.lang, case.category),
        )
