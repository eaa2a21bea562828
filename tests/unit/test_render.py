"""Wording: both languages complete, HTML always escaped."""

from __future__ import annotations

from bot.domain import render
from bot.domain.content import BOT_NAMESPACE, notice_content


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
