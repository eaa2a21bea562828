"""Wording: both languages complete, HTML always escaped."""

from __future__ import annotations

import jinja2
from jinja2 import meta

from bot.domain import render
from bot.domain.content import BOT_NAMESPACE, notice_content
from bot.domain.render import LANGUAGES


def test_both_languages_define_the_same_keys() -> None:
    assert render.keys("en") == render.keys("zh")


def test_user_supplied_values_are_escaped_in_html_but_kept_in_plain_text() -> None:
    msg = render.render(
        "en", "command.unknown", prefix="!", verb="<img src=x onerror=1>", suggestion=None
    )
    assert msg.html is not None
    assert "<img" not in msg.html and "&lt;img src=x onerror=1&gt;" in msg.html
    assert "<img src=x onerror=1>" in msg.body


def test_chinese_wording() -> None:
    assert "毫秒" in render.render("zh", "ping.pong", latency_ms=12).body


def test_reply_content_carries_relation_mentions_and_bot_tag() -> None:
    msg = render.render("en", "ping.pong", latency_ms=5)
    content = notice_content(msg, reply_to="$e", mentions=["@a:x", "@a:x"], tag={"kind": "k"})
    assert content["msgtype"] == "m.notice"
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$e"}}
    assert content["m.mentions"] == {"user_ids": ["@a:x"]}
    assert content[BOT_NAMESPACE] == {"kind": "k", "in_reply_to": "$e"}


def test_no_wording_relies_on_jinja_globals() -> None:
    """The render environments drop Jinja's globals (a faster render); no template may use
    one, or it would fail only when that message is first sent."""
    jinja_globals = {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
    env = jinja2.Environment()
    env.globals.clear()  # else the parser counts them as declared
    for lang in LANGUAGES:
        for key, entry in render._catalogue(lang).items():
            for source in entry.values():
                used = meta.find_undeclared_variables(env.parse(source))
                assert not used & jinja_globals, f"{lang}:{key} uses {used & jinja_globals}"
