"""Which timeline events reach the pipeline: not the bot's own, not those before it joined."""

from __future__ import annotations

from typing import Any

from bot.matrix.gateway import events_to_handle

BOT = "@bot:hs"


def msg(event_id: str, sender: str = "@li:hs", body: str = "hi") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "sender": sender,
        "type": "m.room.message",
        "origin_server_ts": 5,
        "content": {"msgtype": "m.text", "body": body},
    }


def member(event_id: str, user: str, membership: str, prev: str | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": event_id,
        "sender": user,
        "type": "m.room.member",
        "state_key": user,
        "origin_server_ts": 5,
        "content": {"membership": membership},
    }
    if prev:
        ev["unsigned"] = {"prev_content": {"membership": prev}}
    return ev


def ids(raw: list[dict[str, Any]]) -> list[str]:
    return [ev.event_id for ev in events_to_handle("!r:hs", raw, BOT)]


def test_events_before_the_bot_joined_are_not_handled() -> None:
    raw = [msg("$old"), member("$join", BOT, "join", prev="invite"), msg("$new")]
    assert ids(raw) == ["$new"]


def test_the_bots_own_messages_are_skipped() -> None:
    assert ids([msg("$a"), msg("$mine", sender=BOT), msg("$b")]) == ["$a", "$b"]


def test_a_profile_change_of_the_bot_is_not_a_new_join() -> None:
    raw = [msg("$a"), member("$rename", BOT, "join", prev="join"), msg("$b")]
    assert ids(raw) == ["$a", "$b"]


def test_malformed_events_are_dropped_not_fatal() -> None:
    raw: list[dict[str, Any]] = [{"type": "m.room.message"}, {"event_id": 3}, msg("$ok")]
    assert ids(raw) == ["$ok"]


def test_a_redaction_names_its_target_in_the_content_in_every_room_version() -> None:
    old_style = {
        "event_id": "$r1",
        "sender": "@li:hs",
        "type": "m.room.redaction",
        "redacts": "$tip",
        "content": {"reason": "oops"},
    }
    v11 = {**old_style, "event_id": "$r2", "content": {"redacts": "$tip2"}}
    events = events_to_handle("!r:hs", [old_style, v11], BOT)
    assert [ev.content.get("redacts") for ev in events] == ["$tip", "$tip2"]
