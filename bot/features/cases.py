"""The officers' case commands (supervisors read only): ``!cases``, ``!case N`` and
``!case ack|investigate|solve|refer|unfounded|duplicate|reopen|note|assign|category|link|ask|file``,
plus ✅ on a new-case notice to acknowledge it and the audited ``!case reporter``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.commands import ParsedCommand, UsageError
from bot.domain import cases as rules
from bot.domain.cases import Case, TransitionError
from bot.domain.content import attachment_content
from bot.domain.roles import OFFICERS, STAFF, SUPERVISORS, Role
from bot.domain.tips import CATEGORIES
from bot.features.casework import (
    authority_label,
    category_label,
    change_status,
    flush_boards,
    local_now,
    refresh_board,
    reopen,
    reporter_label,
    status_label,
)
from bot.features.context import CommandContext, EventContext
from bot.features.registry import Features
from bot.features.scope import neighbourhood_or_explain, options, visible_stations
from bot.store import cases, intake

PAGE = 10
FILTERS = {"open", "mine", "urgent", "all", "closed"}


async def find_case(ctx: EventContext, ref: str) -> Case | None:
    """A case the caller's stations own, by number; answers with a clear error if none."""
    parsed = rules.parse_case_ref(ref)
    if parsed is None:
        raise UsageError(key="usage.bad_case_ref", value=ref)
    stations = [s.id for s in visible_stations(ctx)]
    found: Case | None = None
    if parsed.prefix is not None:
        year = parsed.year or _year(ctx)
        candidate = await cases.by_number(
            ctx.deps.conn, rules.case_number(parsed.prefix, year, parsed.seq)
        )
        found = candidate if candidate and candidate.station_id in stations else None
    else:
        matches = await cases.by_seq(ctx.deps.conn, stations, parsed.year or _year(ctx), parsed.seq)
        found = matches[0] if len(matches) == 1 else None
        if len(matches) > 1:
            await ctx.reply("cases.ambiguous", ref=ref, numbers=[c.number for c in matches])
            return None
    if found is None:
        await ctx.reply("cases.unknown", ref=ref)
    return found


def _year(ctx: EventContext) -> int:
    return local_now(ctx.deps).year


def _require_officer_of_case(ctx: EventContext, case: Case) -> bool:
    station = ctx.deps.config.station(case.station_id)
    return station is not None and ctx.sender in station.officers


async def _officer_case(ctx: CommandContext, ref: str) -> Case | None:
    case = await find_case(ctx, ref)
    if case is None:
        return None
    if not _require_officer_of_case(ctx, case):
        await ctx.audit.record(ctx.sender, "scope.refused", target=case.number)
        await ctx.reply("cases.read_only", number=case.number)
        return None
    return case


async def _transition(
    ctx: CommandContext, case: Case, wanted: str, **kwargs: object
) -> Case | None:
    try:
        rules.check_transition(case.status, wanted)
    except TransitionError:
        key = "cases.closed_already" if case.closed else "cases.bad_transition"
        await ctx.reply(
            key,
            number=case.number,
            status=status_label(ctx.lang, case.status),
            wanted=status_label(ctx.lang, wanted) if wanted != "reopened" else wanted,
        )
        return None
    return await change_status(ctx.deps, case, wanted, ctx.sender, **kwargs)  # type: ignore[arg-type]


async def _case_pair(ctx: CommandContext, parsed: ParsedCommand) -> tuple[Case, Case] | None:
    """``<number> <other number>``: a case the officer may change and another case."""
    (ref, other_ref), _ = options(parsed.args, (), positional=2)
    case = await _officer_case(ctx, ref)
    other = await find_case(ctx, other_ref) if case else None
    if case is None or other is None:
        return None
    if other.id == case.id:
        raise UsageError(key="usage.same_case")
    return case, other


def register(features: Features) -> None:
    features.before_commit.append(flush_boards)
    commands = features.commands

    @commands.command(
        "cases",
        usage="[open|mine|urgent|closed|all] [neighbourhood] [category] [page]",
        roles=STAFF,
        help_en="List cases (default: open ones), newest first.",
        help_zh="列出案件（默认：未结案件），最新的在前。",
    )
    async def list_cases(ctx: CommandContext, parsed: ParsedCommand) -> None:
        which, nbh_id, category, page = "open", None, None, 1
        for arg in parsed.args:
            low = arg.lower()
            if low in FILTERS:
                which = low
            elif low in CATEGORIES:
                category = low
            elif low.isdigit():
                page = max(1, int(low))
            else:
                nbh = await neighbourhood_or_explain(ctx, low)
                if nbh is None:
                    return
                nbh_id = nbh.id
        statuses: frozenset[str] | None = {
            "open": rules.OPEN,
            "mine": rules.OPEN,
            "urgent": rules.OPEN,
            "closed": rules.CLOSED,
            "all": None,
        }[which]
        found, total = await cases.search(
            ctx.deps.conn,
            station_ids=[s.id for s in visible_stations(ctx)],
            statuses=statuses,
            urgent=True if which == "urgent" else None,
            assignee=ctx.sender if which == "mine" else None,
            neighbourhood_id=nbh_id,
            category=category,
            limit=PAGE,
            offset=(page - 1) * PAGE,
        )
        items = [
            {
                "number": c.number,
                "category": category_label(ctx.lang, c.category),
                "status": status_label(ctx.lang, c.status),
                "urgent": c.urgent,
                "location": c.location or "",
                "excerpt": rules.excerpt(c.text, 60) if not c.private else "",
                "private": c.private,
            }
            for c in found
        ]
        pages = max(1, (total + PAGE - 1) // PAGE)
        await ctx.reply("cases.list", items=items, total=total, page=page, pages=pages, which=which)

    @commands.command(
        "case",
        usage="<number>",
        roles=STAFF,
        help_en="Show a case: details, history, links, attachments.",
        help_zh="查看案件：详情、处理记录、关联和附件。",
    )
    async def show(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref,), _ = options(parsed.args, (), positional=1)
        case = await find_case(ctx, ref)
        if case is None:
            return
        pseudonym = (
            await cases.pseudonym(ctx.deps.conn, case.station_id, case.reporter)
            if case.anonymous and case.reporter
            else None
        )
        history = await cases.history(ctx.deps.conn, case.id)
        reporter = reporter_label(ctx.deps, case, ctx.lang, pseudonym)
        message = ctx.render(
            "cases.detail",
            number=case.number,
            category=category_label(ctx.lang, case.category),
            status=status_label(ctx.lang, case.status),
            urgent=case.urgent,
            source=case.source,
            reporter=reporter,
            location=case.location or "",
            identifiers=list(case.identifiers),
            assignee=case.assignee or "",
            text=case.text,
            truncated=case.text_truncated,
            withdrawn=any(h.action == "withdrawn" for h in history),
            referred_to=authority_label(ctx.lang, case.referred_to or ""),
            outcome=case.outcome or "",
            history=[
                {
                    # An anonymous reporter stays a pseudonym in the history too.
                    "actor": reporter if case.anonymous and h.actor == case.reporter else h.actor,
                    "action": h.action,
                    "old": h.old or "",
                    "new": h.new or "",
                    "note": rules.excerpt(h.note or "", 200),
                }
                for h in history
            ],
            links=await cases.links(ctx.deps.conn, case.id),
            attachments=await cases.attachments(ctx.deps.conn, case.id),
        )
        await ctx.audit.record(ctx.sender, "case.viewed", target=case.number)
        in_group = not ctx.in_dm and not (ctx.room is not None and ctx.room.kind == "officers")
        if in_group or (case.private and not ctx.in_dm):
            # Reporter details and private reports never go to a group room.
            await ctx.messenger.send_dm(ctx.sender, message)
            await ctx.reply("cases.sent_by_dm", number=case.number)
            return
        await ctx.messenger.send(ctx.event.room_id, message, reply_to=ctx.event.event_id)

    def simple(
        status: str, needs_note: bool
    ) -> Callable[[CommandContext, ParsedCommand], Awaitable[None]]:
        async def handler(ctx: CommandContext, parsed: ParsedCommand) -> None:
            if not parsed.args or (needs_note and len(parsed.args) < 2):
                raise UsageError()
            case = await _officer_case(ctx, parsed.args[0])
            if case is None:
                return
            note = " ".join(parsed.args[1:]).strip() or None
            updated = await _transition(ctx, case, status, note=note)
            if updated is not None:
                await ctx.reply(
                    "cases.status_changed",
                    number=case.number,
                    status=status_label(ctx.lang, status),
                )

        return handler

    for verb, status, needs_note, usage, en, zh in (
        ("ack", "acknowledged", False, "<number>", "Acknowledge a new case.", "确认受理新案件。"),
        (
            "investigate",
            "investigating",
            False,
            "<number> [note]",
            "Mark a case as being investigated.",
            "将案件标记为调查中。",
        ),
        (
            "solve",
            "solved",
            True,
            '<number> "<note>"',
            "Close a case as solved; the group is told.",
            "案件办结；群内会收到通知。",
        ),
        (
            "unfounded",
            "unfounded",
            True,
            '<number> "<note>"',
            "Close a case as unfounded; the group is told.",
            "案件经核查不属实；群内会收到通知。",
        ),
    ):
        commands.command(f"case {verb}", usage=usage, roles=OFFICERS, help_en=en, help_zh=zh)(
            simple(status, needs_note)
        )

    @commands.command(
        "case refer",
        usage='<number> <authority> "<note>"',
        roles=OFFICERS,
        help_en="Close a case as referred to another authority (fire, urban_management, "
        "housing, market_regulation, …); the group is told.",
        help_zh="将案件移交其他部门（消防、城管、房管、市场监管等）；群内会收到通知。",
    )
    async def refer(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) < 2:
            raise UsageError(key="usage.need_authority", authorities=", ".join(rules.AUTHORITIES))
        case = await _officer_case(ctx, parsed.args[0])
        if case is None:
            return
        authority = parsed.args[1].strip()
        note = " ".join(parsed.args[2:]).strip() or None
        updated = await _transition(ctx, case, "referred", note=note, referred_to=authority)
        if updated is not None:
            await ctx.reply(
                "cases.referred", number=case.number, authority=authority_label(ctx.lang, authority)
            )

    @commands.command(
        "case duplicate",
        usage="<number> <of number>",
        roles=OFFICERS,
        help_en="Close a case as a duplicate of another.",
        help_zh="将案件作为另一案件的重复件结案。",
    )
    async def duplicate(ctx: CommandContext, parsed: ParsedCommand) -> None:
        pair = await _case_pair(ctx, parsed)
        if pair is None:
            return
        case, other = pair
        await cases.link(ctx.deps.conn, case.id, other.id, "link", ctx.sender, ctx.now_ms)
        updated = await _transition(ctx, case, "duplicate", duplicate_of=other)
        if updated is not None:
            await ctx.reply("cases.duplicate", number=case.number, other=other.number)

    @commands.command(
        "case reopen",
        usage='<number> "<reason>"',
        roles=OFFICERS,
        help_en="Reopen a closed case (it goes back to investigating).",
        help_zh="重新开启已结案件（恢复为调查中）。",
    )
    async def reopen_case(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) < 2:
            raise UsageError()
        case = await _officer_case(ctx, parsed.args[0])
        if case is None:
            return
        if not case.closed:
            await ctx.reply(
                "cases.not_closed", number=case.number, status=status_label(ctx.lang, case.status)
            )
            return
        await reopen(ctx.deps, case, ctx.sender, " ".join(parsed.args[1:]))
        await ctx.reply("cases.reopened", number=case.number)

    @commands.command(
        "case note",
        usage='<number> "<text>"',
        roles=OFFICERS,
        help_en="Add a note to a case's history.",
        help_zh="为案件添加备注。",
    )
    async def note(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) < 2:
            raise UsageError()
        case = await _officer_case(ctx, parsed.args[0])
        if case is None:
            return
        text, _ = rules.clip(" ".join(parsed.args[1:]), 4000)
        await cases.add_event(
            ctx.deps.conn, case.id, ctx.sender, "note", None, None, text, ctx.now_ms
        )
        await ctx.audit.record(ctx.sender, "case.note", target=case.number)
        await ctx.reply("cases.noted", number=case.number)

    @commands.command(
        "case assign",
        usage="<number> @officer:server",
        roles=OFFICERS,
        help_en="Assign a case to an officer of its station.",
        help_zh="将案件指派给本所民警。",
    )
    async def assign(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref, officer), _ = options(parsed.args, (), positional=2)
        case = await _officer_case(ctx, ref)
        if case is None:
            return
        station = ctx.deps.config.station(case.station_id)
        if station is None or officer not in station.officers:
            raise UsageError(key="usage.not_an_officer", value=officer)
        await cases.update(ctx.deps.conn, case.id, ctx.now_ms, assignee=officer)
        await cases.add_event(
            ctx.deps.conn, case.id, ctx.sender, "assigned", case.assignee, officer, None, ctx.now_ms
        )
        await ctx.audit.record(
            ctx.sender,
            "case.assign",
            target=case.number,
            detail={"from": case.assignee, "to": officer},
        )
        await ctx.reply("cases.assigned", number=case.number, officer=officer)

    @commands.command(
        "case category",
        usage="<number> <category>",
        roles=OFFICERS,
        help_en="Correct a case's category (kept as a labelled example).",
        help_zh="更正案件类别（作为标注样例保存）。",
    )
    async def recategorise(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref, category), _ = options(parsed.args, (), positional=2)
        category = category.lower()
        if category not in CATEGORIES:
            raise UsageError(
                key="usage.bad_category", value=category, categories=", ".join(CATEGORIES)
            )
        case = await _officer_case(ctx, ref)
        if case is None:
            return
        await cases.update(ctx.deps.conn, case.id, ctx.now_ms, category=category)
        await cases.add_event(
            ctx.deps.conn,
            case.id,
            ctx.sender,
            "category",
            case.category,
            category,
            None,
            ctx.now_ms,
        )
        await intake.correction(
            ctx.deps.conn, case.id, case.text, case.category, category, ctx.sender, ctx.now_ms
        )
        await ctx.audit.record(
            ctx.sender,
            "case.category",
            target=case.number,
            detail={"from": case.category, "to": category},
        )
        updated = await cases.by_id(ctx.deps.conn, case.id)
        assert updated is not None
        await refresh_board(ctx.deps, updated)
        await ctx.reply(
            "cases.recategorised", number=case.number, category=category_label(ctx.lang, category)
        )

    @commands.command(
        "case link",
        usage="<number> <other number>",
        roles=OFFICERS,
        help_en="Link two related cases.",
        help_zh="关联两个相关案件。",
    )
    async def link(ctx: CommandContext, parsed: ParsedCommand) -> None:
        pair = await _case_pair(ctx, parsed)
        if pair is None:
            return
        case, other = pair
        await cases.link(ctx.deps.conn, case.id, other.id, "link", ctx.sender, ctx.now_ms)
        await cases.add_event(
            ctx.deps.conn, case.id, ctx.sender, "linked", None, other.number, None, ctx.now_ms
        )
        await ctx.audit.record(
            ctx.sender, "case.link", target=case.number, detail={"other": other.number}
        )
        await ctx.reply("cases.linked", number=case.number, other=other.number)

    @commands.command(
        "case ask",
        usage='<number> "<question>"',
        roles=OFFICERS,
        help_en="Ask the reporter a question by DM (anonymous reporters too); the answer "
        "comes back here.",
        help_zh="通过私信向举报人提问（匿名举报人也可以）；回答会转回这里。",
    )
    async def ask(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) < 2:
            raise UsageError()
        case = await _officer_case(ctx, parsed.args[0])
        if case is None:
            return
        if case.reporter is None:
            await ctx.reply("cases.no_reporter", number=case.number)
            return
        question, _ = rules.clip(" ".join(parsed.args[1:]), 2000)
        await intake.add_relay(
            ctx.deps.conn, case.id, ctx.sender, ctx.event.room_id, question, ctx.now_ms
        )
        await cases.add_event(
            ctx.deps.conn, case.id, ctx.sender, "question", None, None, question, ctx.now_ms
        )
        await ctx.messenger.send_dm(
            case.reporter,
            ctx.deps.render("cases.question", number=case.number, question=question),
            tag={"kind": "case.question", "case": case.number},
        )
        await ctx.audit.record(ctx.sender, "case.ask", target=case.number)
        await ctx.reply("cases.asked", number=case.number)

    @commands.command(
        "case file",
        usage="<number> <attachment number>",
        roles=STAFF,
        help_en="Get a photo or file attached to a case, unchanged, by direct message.",
        help_zh="通过私信获取案件附件（照片或文件）原件。",
    )
    async def file(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref, which), _ = options(parsed.args, (), positional=2)
        case = await find_case(ctx, ref)
        if case is None:
            return
        found = await cases.attachments(ctx.deps.conn, case.id)
        index = int(which) if which.isdigit() else 0
        if not 1 <= index <= len(found):
            await ctx.reply("cases.no_attachment", number=case.number, count=len(found))
            return
        stored = found[index - 1]
        caption = ctx.deps.render(
            "cases.file_caption", number=case.number, index=index, body=stored["body"]
        ).body
        # Always to the asker's direct chat: a case's evidence never goes to a group room
        # (encrypted media keep their keys inside the encrypted direct chat).
        await ctx.messenger.send_media(
            ctx.sender,
            attachment_content(stored, caption, {"kind": "case.file", "case": case.number}),
        )
        await ctx.audit.record(
            ctx.sender, "case.file_sent", target=case.number, detail={"attachment": index}
        )
        await ctx.reply("cases.file_sent", number=case.number, index=index)

    @commands.command(
        "case reporter",
        usage="<number>",
        roles=SUPERVISORS,
        help_en="Reveal who reported an anonymous case (audited; by DM).",
        help_zh="查看匿名案件的真实举报人（留痕审计；通过私信发送）。",
    )
    async def reveal(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (ref,), _ = options(parsed.args, (), positional=1)
        case = await find_case(ctx, ref)
        if case is None:
            return
        await ctx.audit.record(
            ctx.sender, "case.reporter_revealed", target=case.number, room_id=ctx.event.room_id
        )
        await ctx.messenger.send_dm(
            ctx.sender,
            ctx.deps.render(
                "cases.reporter",
                number=case.number,
                reporter=case.reporter or case.reporter_name or "—",
            ),
        )
        await ctx.reply("cases.sent_by_dm", number=case.number)

    async def ack_reaction(ctx: EventContext) -> None:
        """An officer's ✅ on a new-case notice acknowledges the case."""
        relates = ctx.event.content.get("m.relates_to")
        if not isinstance(relates, dict) or Role.OFFICER not in ctx.roles:
            return
        key = str(relates.get("key", "")).replace("\ufe0f", "")
        target = relates.get("event_id")
        if key not in ("✅", "✔", "👍") or not isinstance(target, str):
            return
        found = await cases.case_of_event(ctx.deps.conn, target)
        if found is None or found[1] != "notice":
            return
        case = found[0]
        if not _require_officer_of_case(ctx, case) or case.status != "new":
            return
        await change_status(ctx.deps, case, "acknowledged", ctx.sender)

    features.on_reaction.append(ack_reaction)
