"""Anything a member can type (or a client can put in an event) is survived: fuzzing with
hypothesis, with bounded example counts so the whole file runs in CI in well under a minute.

Targets: the command parser, the tip extractor, every wording in both languages, and the
whole pipeline handling arbitrary events (Unicode, control characters, RTL marks, 64 KB
bodies, malformed ``formatted_body``, bogus ``m.relates_to``, non-string bodies).

Properties: no exception escapes (and no handler fails inside the pipeline — it would
catch the error and apologise, which is a failure too); the work per message is bounded
(input is clipped before it is analysed, one event causes at most 20 writes, and each
stays within Matrix's 64 KiB event limit; wall-clock time is measured, not asserted — see
hypothesis' statistics and the summary ``pytest -s`` prints); and markup from the input
never reaches a ``formatted_body`` unescaped: every tag in what the bot sends is one its
own templates contain, and none has attributes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from unittest import mock

import jinja2
import jinja2.meta
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.app import build_features
from bot.commands import MAX_COMMAND_CHARS, QUOTE_PAIRS, CommandSyntaxError, parse, tokenize
from bot.domain import render
from bot.domain.matrix_model import RoomEvent
from bot.domain.tips import CATEGORIES, TipAnalysis, analyse, extractor
from bot.store import outbox
from tests.support.town import DM, LI, OFFICERS_ROOM, OUTSIDER, ROOM, WU, ZHANG, Town, seeded_town
from tests.support.units import OFFICER, OTHER_OFFICER, SUPERVISOR, message

REGISTRY = build_features().commands
VERBS = sorted({spec.verb for spec in REGISTRY.all()})
MAX_EVENT_BYTES = 65_536
VERB = re.compile(r"[a-z][a-z0-9_-]{0,31}")

MARKUP = (
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '"><b onmouseover=alert(1)>',
    "</code></p><h1>pwned</h1>",
    "<!-- comment --><![CDATA[x]]>",
    "<iframe src=//evil.example>",
    "<mx-reply><blockquote>forged</blockquote></mx-reply>",
    "&lt;already escaped&gt; &amp;",
    "{{ 7 * 7 }}{% raw %}",
)
ODD = (
    "\u202e",  # right-to-left override
    "\u202d\u2066\u2067\u2068\u2069\u200f\u200e",  # other bidi controls
    "\u200b\u200c\u200d\ufeff",  # zero-width characters
    "\x00\x01\x07\x1b[31m\x7f",  # control characters, an ANSI escape
    "\ud7ff\U0010ffff\U0001f525",  # edges of Unicode, an emoji
    "e\u0301\u0301\u0301\u0301",  # stacked combining marks
    "！！！　",  # full-width punctuation, ideographic space
    "\r\n\t\v\f\u2028\u2029",  # line and paragraph separators
)
TIP_WORDS = (
    "firecrackers",
    "building 5",
    "22nd floor",
    "smoke",
    "fire",
    "someone is trying door handles",
    "stolen",
    "drugs",
    "right now",
    "!",
    "5号楼",
    "22楼",
    "有人",
    "偷",
    "着火了",
    "沪A12345",
    "13800138000",
    "电表箱",
    "爆竹",
    "救命",
)

hostile = st.one_of(
    st.text(),
    st.sampled_from(MARKUP + ODD),
    st.builds(
        lambda a, b, c: a + b + c,
        st.text(max_size=30),
        st.sampled_from(MARKUP + ODD),
        st.text(max_size=30),
    ),
)
"""Arbitrary text, markup meant to break out of the HTML, and characters that confuse."""


@st.composite
def huge(draw: st.DrawFn) -> str:
    """Up to 64 KB of a repeated unit (a big paste, a flood of quotes or markup)."""
    unit = draw(st.sampled_from(("x ", '"', "「", "<b>", "偷", "\u202e", "a" * 7 + " ", *MARKUP)))
    size = draw(st.integers(min_value=4_000, max_value=65_536))
    return (unit * (size // len(unit) + 1))[:size]


commandish = st.builds(
    lambda prefix, verb, args: f"{prefix}{verb} {args}",
    st.sampled_from(("!", "！", " !", "!!")),
    st.sampled_from(VERBS).map(lambda v: v.upper() if len(v) % 2 else v),
    st.one_of(hostile, huge()),
)
tipish = st.lists(st.one_of(st.sampled_from(TIP_WORDS), hostile), max_size=25).map(" ".join)
REAL_TIPS = (
    "16 firecrackers hidden in the electricity box on the 22nd floor of building 5",
    "Thick smoke is pouring out of flat 1203 in building 3 right now, I can smell burning!",
    "A man is trying door handles on floor 6 of building 2",
    "5号楼22楼的电表箱里藏了16个爆竹，有人一直往里放，太危险了",
    "有人在3号楼地下室聚众赌博，每天晚上都有人望风",
)
COMMANDS = (
    "!tip {}",
    "!tip anonymous {}",
    "!case note {case} {}",
    "!case {case}",
    '!case solve {case} "{}"',
    '!log call "{}" reporter="{}" neighbourhood=hqxc',
    '!alert hqxc "{}"',
    '!enrol @new:example.org hqxc/residents name="{}" unit="{}"',
    "!deny @knocker:example.org hqxc/residents {}",
    "!help {}",
    "!cases {}",
    "!{}",
    "!members {}",
    '!wanted "{}" "{}" to=hqxc',
    "!join {}",
)
reports = st.builds(
    lambda tip, extra, at_end: f"{tip} {extra}" if at_end else f"{extra} {tip}",
    st.sampled_from(REAL_TIPS),
    hostile,
    st.booleans(),
)
commands = st.builds(
    lambda template, value: template.replace("{case}", "HQ-2026-0001").replace("{}", value),
    st.sampled_from(COMMANDS),
    hostile,
)
any_text = st.one_of(reports, commands, commandish, tipish, hostile, huge())


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each drawn about as often as its weight says."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
"""Any JSON value (what a client may put where the bot expects something else)."""


# --- the command parser -----------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(text=any_text)
def test_the_parser_reads_any_text_as_a_command_or_not_without_failing(text: str) -> None:
    try:
        parsed = parse(text)
    except CommandSyntaxError as err:
        assert err.quote in QUOTE_PAIRS and VERB.fullmatch(err.verb)
        return
    if parsed is None:
        return
    assert VERB.fullmatch(parsed.verb)
    assert len(parsed.raw_args) <= MAX_COMMAND_CHARS
    assert len(parsed.args) <= MAX_COMMAND_CHARS // 2 + 1
    spec, rest = REGISTRY.resolve(parsed)
    assert spec is None or rest.verb == spec.verb


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(min_size=1).filter(lambda w: not _special(w)), max_size=20))
def test_plain_words_split_back_into_the_same_words(words: list[str]) -> None:
    assert tokenize(" ".join(words)) == words


def _special(word: str) -> bool:
    return any(ch.isspace() or ch in QUOTE_PAIRS for ch in word)


# --- the tip extractor ------------------------------------------------------------------


@contextmanager
def watched_extractor() -> Iterator[list[tuple[int, BaseException | None]]]:
    """Record what the extractor's inner step gets and whether it raised: ``analyse``
    swallows errors (a tip must never crash intake), which would hide a real bug."""
    seen: list[tuple[int, BaseException | None]] = []
    inner: Callable[[str], TipAnalysis] = extractor._analyse

    def watch(text: str) -> TipAnalysis:
        try:
            result = inner(text)
        except Exception as err:
            seen.append((len(text), err))
            raise
        seen.append((len(text), None))
        return result

    with mock.patch.object(extractor, "_analyse", watch):
        yield seen


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(tipish, any_text), lang=st.sampled_from(("zh", "en", None)))
def test_the_extractor_analyses_any_text_within_its_limit(text: str, lang: str | None) -> None:
    with watched_extractor() as seen:
        started = time.perf_counter()
        result = analyse(text, lang)
        event(_bucket("analyse", time.perf_counter() - started))
    assert [err for _, err in seen if err is not None] == []
    assert seen or not text.strip(), "the extractor's inner step was not watched"
    assert all(size <= extractor.MAX_CHARS for size, _ in seen)
    assert 0.0 <= result.confidence <= 1.0
    assert result.is_tip == (result.confidence >= 0.5)
    if result.is_tip:
        assert result.category in CATEGORIES
    if result.location is not None:
        assert result.location in text
    for identifier in result.identifiers:
        assert identifier in text


# --- every wording, in both languages ---------------------------------------------------


class Hostile(str):
    """A user-supplied value that fits wherever a template puts one: as text, as an item
    of a list, as a record with any field, as a number in arithmetic or comparisons."""

    def __getattr__(self, name: str) -> Hostile:
        if name.startswith("_"):  # never pretend to have __html__ (that would mark it safe)
            raise AttributeError(name)
        return Hostile(self)

    def __getitem__(self, key: Any) -> Hostile:
        return Hostile(self)

    def __iter__(self) -> Iterator[Hostile]:
        return iter((Hostile(self), Hostile(self)))

    def __sub__(self, other: Any) -> int:
        return 0

    __rsub__ = __floordiv__ = __truediv__ = __sub__

    def __round__(self, digits: int | None = None) -> int:
        return 0

    def __gt__(self, other: Any) -> bool:
        return isinstance(other, str) and str(self) > other

    __lt__ = __ge__ = __le__ = __gt__


def _wordings() -> dict[tuple[str, str], dict[str, str]]:
    found: dict[tuple[str, str], dict[str, str]] = {}
    for lang in render.LANGUAGES:
        path = resources.files("bot.domain").joinpath("locales", f"{lang}.yaml")
        for key, entry in yaml.safe_load(path.read_text("utf-8")).items():
            found[(lang, key)] = {"text": entry} if isinstance(entry, str) else dict(entry)
    return found


WORDINGS = _wordings()
_ENV = jinja2.Environment()


def variables(entry: Mapping[str, str]) -> set[str]:
    names: set[str] = set()
    for source in entry.values():
        names |= jinja2.meta.find_undeclared_variables(_ENV.parse(source))
    return names


VARIABLES = {key: variables(entry) for key, entry in WORDINGS.items()}


class Tags(HTMLParser):
    """The tags, attributes and comments in an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.other: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.extend(attrs)

    def handle_endtag(self, tag: str) -> None:
        self.tags.add(tag)

    def handle_comment(self, data: str) -> None:
        self.other.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.other.append(decl)

    def unknown_decl(self, data: str) -> None:
        self.other.append(data)

    def handle_pi(self, data: str) -> None:
        self.other.append(data)


OWN_TAGS = {
    key: Tags(entry["html"]).tags if "html" in entry else set() for key, entry in WORDINGS.items()
}
ALL_OWN_TAGS = set().union(*OWN_TAGS.values())


def assert_safe_html(html: str, allowed: set[str], where: str) -> None:
    found = Tags(html)
    assert found.tags <= allowed, f"{where}: tags {found.tags - allowed} in {html[:300]!r}"
    assert found.attributes == [], f"{where}: attributes {found.attributes} in {html[:300]!r}"
    assert found.other == [], f"{where}: {found.other} in {html[:300]!r}"


def render_everything(value: str) -> int:
    """Render every wording with ``value`` for each of its variables; checks each result."""
    count = 0
    for lang, key in WORDINGS:
        params = {name: Hostile(value) for name in VARIABLES[(lang, key)]}
        message = render.render(lang, key, **params)  # type: ignore[arg-type]
        if message.html is not None:
            assert_safe_html(message.html, OWN_TAGS[(lang, key)], f"{lang}:{key}")
        count += 1
    return count


def test_every_wording_escapes_every_kind_of_markup() -> None:
    for value in (*MARKUP, *ODD, "", "0", "-1"):
        assert render_everything(value) == len(WORDINGS)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(value=st.one_of(hostile, huge()))
def test_every_wording_renders_any_value(value: str) -> None:
    render_everything(value)


def test_the_fuzzing_sees_a_forged_tag_when_there_is_one() -> None:
    """The HTML check itself: a raw tag from input would be caught."""
    try:
        assert_safe_html("<p>ok</p><img src=x>", {"p"}, "probe")
    except AssertionError as err:
        assert "img" in str(err)
    else:
        raise AssertionError("the check let an <img> through")


# --- the whole pipeline, arbitrary events -----------------------------------------------

SENDERS = (LI, LI, LI, WU, OUTSIDER, OFFICER, OFFICER, OTHER_OFFICER, SUPERVISOR)
MEMBERS = (LI, LI, ZHANG, OFFICER)
MSGTYPES = ("m.text", "m.text", "m.notice", "m.emote", "m.image", "m.file", "m.location", "x")
KINDS = ("m.room.message",) * 8 + ("m.reaction", "m.room.redaction", "x.y")


@st.composite
def relates_to(draw: st.DrawFn, targets: list[str]) -> Any:
    target = draw(weighted((st.sampled_from(targets), 3), (json_junk, 1)))
    shapes = st.sampled_from(
        (
            {"m.in_reply_to": {"event_id": target}},
            {"rel_type": "m.replace", "event_id": target},
            {"rel_type": "m.thread", "event_id": target, "m.in_reply_to": {"event_id": target}},
            {"rel_type": "m.annotation", "event_id": target, "key": "👍"},
            {"rel_type": "m.annotation", "event_id": target, "key": target},
            {"m.in_reply_to": target},
            {"rel_type": ["m.replace"], "event_id": {"nested": [target]}},
            {"m.in_reply_to": {"event_id": {"event_id": target}}},
        )
    )
    return draw(weighted((shapes, 3), (json_junk, 1)))


@st.composite
def content(draw: st.DrawFn, targets: list[str], related: bool) -> dict[str, Any]:
    body: Any = draw(
        weighted(
            (reports, 3),
            (commands, 4),
            (commandish, 1),
            (tipish, 1),
            (hostile, 2),
            (huge(), 1),
            (json_junk, 1),
        )
    )
    msgtype = draw(weighted((st.just("m.text"), 6), (st.sampled_from(MSGTYPES), 2), (json_junk, 1)))
    found: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if draw(st.booleans()):
        found["format"] = draw(st.sampled_from(("org.matrix.custom.html",)) | json_junk)
        found["formatted_body"] = draw(
            st.sampled_from(MARKUP) | hostile | json_junk | st.just("<b><i>unclosed")
        )
    if related or draw(st.booleans()):
        found["m.relates_to"] = draw(relates_to(targets))
        found["redacts"] = draw(weighted((st.sampled_from(targets), 3), (json_junk, 1)))
    if draw(st.booleans()):
        new = st.fixed_dictionaries({"msgtype": st.just("m.text"), "body": any_text})
        found["m.new_content"] = draw(weighted((new, 1), (json_junk, 1)))
    if draw(st.booleans()):
        found["m.mentions"] = draw(json_junk)
    if found["msgtype"] in ("m.image", "m.file"):
        found["url"] = draw(st.just("mxc://example.org/x") | json_junk)
        found["info"] = draw(json_junk)
    return found


@st.composite
def scenarios(
    draw: st.DrawFn, known: list[str], senders: tuple[str, ...], related: bool
) -> list[RoomEvent]:
    """One to four events; each may point at a known event or at an earlier one of them."""
    count = draw(st.integers(1, 4))
    ids = [f"$fuzz{i}" for i in range(count)]
    events = []
    for event_id in ids:
        sender = draw(st.sampled_from(senders))
        room = draw(st.sampled_from((ROOM, ROOM, DM[sender], DM[sender], OFFICERS_ROOM, "!x:y")))
        events.append(
            RoomEvent(
                draw(st.sampled_from((event_id, event_id, event_id, *ids))),  # some replayed
                room,
                sender,
                draw(st.sampled_from(KINDS)),
                draw(content(known + ids, related)),
                origin_server_ts=draw(st.integers(-(2**63), 2**63 - 1)),
            )
        )
    return events


def check_sent(rows: list[outbox.OutboxRow], where: str) -> None:
    assert len(rows) <= 20, f"{where}: {len(rows)} writes for one event"
    for row in rows:
        size = len(json.dumps(row.content, ensure_ascii=False).encode())
        assert size <= MAX_EVENT_BYTES, f"{where}: a {size}-byte event"
        body = str(row.content.get("body", ""))
        assert "something went wrong" not in body, f"{where}: {body}"
        for content in (row.content, row.content.get("m.new_content")):
            if isinstance(content, Mapping) and "formatted_body" in content:
                assert_safe_html(str(content["formatted_body"]), ALL_OWN_TAGS, where)


SECONDS_PER_EVENT: list[float] = []
"""Measured, never asserted (machines differ); printed after each run (``pytest -s``)."""


async def handle_all(town: Town, events: list[RoomEvent]) -> None:
    for ev in events:
        started = time.perf_counter()
        await town.bot.handle(ev)
        SECONDS_PER_EVENT.append(time.perf_counter() - started)
        where = f"{ev.type} {dict(ev.content)!r:.300} from {ev.sender} in {ev.room_id}"
        assert await town.outcome(ev.event_id) != "error", f"{where}: a handler failed"
        check_sent(await town.drain(), where)


async def known_event_ids() -> list[str]:
    """What fuzzed relations may point at: the seeded tip, the bot's messages, nothing."""
    town = await seeded_town()
    async with town.db.transaction() as conn:
        cur = await conn.execute("SELECT event_id FROM outbox WHERE event_id IS NOT NULL")
        sent = [str(r[0]) for r in await cur.fetchall()]
    found = [c.event_id for c in await town.cases() if c.event_id]
    await town.db.close()
    return [*found, *sent[:10], "$nothing"]


def fuzz_pipeline(senders: tuple[str, ...], related: bool, examples: int) -> None:
    """Each example: a fresh copy of the town, a few events through the real pipeline."""
    with asyncio.Runner() as runner:
        known = runner.run(known_event_ids())

        async def run(events: list[RoomEvent]) -> None:
            town = await seeded_town()
            try:
                await handle_all(town, events)
            finally:
                await town.db.close()

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(events=scenarios(known, senders, related))
        def check(events: list[RoomEvent]) -> None:
            runner.run(run(events))

        SECONDS_PER_EVENT.clear()
        check()
        print(timing_summary(SECONDS_PER_EVENT))


def timing_summary(seconds: list[float]) -> str:
    ordered = sorted(seconds) or [0.0]

    def ms(quantile: float) -> float:
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000

    return (
        f"\npipeline fuzzing: {len(seconds)} events, median {ms(0.5):.2f} ms,"
        f" p99 {ms(0.99):.2f} ms, max {ordered[-1] * 1000:.2f} ms"
    )


def test_the_bot_survives_any_event() -> None:
    fuzz_pipeline(SENDERS, related=False, examples=150)


def test_replies_edits_reactions_and_redactions_pointing_anywhere_are_survived() -> None:
    fuzz_pipeline(MEMBERS, related=True, examples=150)


async def test_markup_in_any_command_or_report_is_escaped_in_everything_sent() -> None:
    """Every command and report shape with every kind of markup, deterministically."""
    town = await seeded_town()
    try:
        texts = [t.replace("{case}", town.case_number) for t in (*COMMANDS, "{} " + REAL_TIPS[0])]
        for markup in MARKUP:
            for text in texts:
                for sender, room in ((LI, ROOM), (OFFICER, DM[OFFICER])):
                    await handle_all(
                        town, [message(text.replace("{}", markup), sender, room_id=room)]
                    )
    finally:
        await town.db.close()


def _bucket(what: str, seconds: float) -> str:
    """A coarse label for hypothesis' statistics (``--hypothesis-show-statistics``)."""
    for limit in (0.001, 0.005, 0.02, 0.1, 0.5):
        if seconds < limit:
            return f"{what} < {limit * 1000:g} ms"
    return f"{what} ≥ 500 ms"
