"""Which timeline events reach the pipeline: not the bot's own, not those before it joined."""

from __future__ import annotations

from typing import Any

from bot.domain.matrix_model import Invite, SyncBatch
from bot.matrix.gateway import events_to_handle, split_batch

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


def test_a_long_batch_is_handled_in_parts_and_only_the_last_moves_the_token() -> None:
    events = events_to_handle("!r:hs", [msg(f"$e{i}") for i in range(120)], BOT)
    invite = Invite("!new:hs", "@li:hs", False)
    parts = split_batch(SyncBatch("s2", events, [invite]), "s1", size=50)
    assert [len(p.events) for p in parts] == [50, 50, 20]
    assert [e for p in parts for e in p.events] == events
    assert [p.next_batch for p in parts] == ["s1", "s1", "s2"]  # a crash in between: replay
    assert [p.invites for p in parts] == [[], [], [invite]]
    short = SyncBatch("s2", events[:50])
    assert split_batch(short, "s1", size=50) == [short]
    assert split_batch(SyncBatch("s1", events), None, size=50)[0].events == events
