"""Pure rules of the organisation: codes, durations, room policy and its reconciliation."""

from __future__ import annotations

from typing import Any

from bot.domain import room_policy
from bot.domain.org import (
    CODE_ALPHABET,
    find_code,
    new_code,
    normalise_code,
    parse_duration_ms,
    split_room_ref,
)

BOT = "@bot:hs"
WANG = "@wang:hs"
ZHOU = "@zhou:other.hs"


def test_codes_avoid_ambiguous_characters_and_normalise() -> None:
    for _ in range(200):
        code = new_code()
        assert len(code) == 9 and code[4] == "-"
        assert not set(code.replace("-", "")) & set("0O1IL")
        assert set(code.replace("-", "")) <= set(CODE_ALPHABET)
    assert normalise_code(" abcd efgh ") == "ABCD-EFGH"
    assert normalise_code("ABCDEFGH") == "ABCD-EFGH"
    assert normalise_code("ABCD-EFG0") is None
    assert normalise_code("hello") is None


def test_a_code_is_found_inside_a_knock_reason() -> None:
    assert find_code("Hi, my code is QRST-WXYZ, I live in building 5") == "QRST-WXYZ"
    assert find_code("请让我加入，入群码 abcd-efgh") == "ABCD-EFGH"
    assert find_code("I live in building 5, unit 2201") is None
    # A word before the code must not swallow half of it ("TEXT TFRX" looks like a code too).
    assert find_code("text TFRX-7YMZ") == "TFRX-7YMZ"
    assert find_code("code TFRX7YMZ") == "TFRX-7YMZ"


def test_durations() -> None:
    assert parse_duration_ms("30m") == 30 * 60_000
    assert parse_duration_ms("12h") == 12 * 3_600_000
    assert parse_duration_ms("7d") == 7 * 86_400_000
    assert parse_duration_ms("2w") == 14 * 86_400_000
    assert parse_duration_ms("3天") == 3 * 86_400_000
    for bad in ("soon", "0d", "-1d", "7", "d7", ""):
        assert parse_duration_ms(bad) is None, bad


def test_room_references() -> None:
    assert split_room_ref("HQXC/Guards") == ("hqxc", "guards")
    assert split_room_ref("#nw-hqxc-guards:hs") is None
    assert split_room_ref("hqxc") is None


def state(**contents: Any) -> room_policy.RoomState:
    """Keyword ``m_room_join_rules`` stands for the state event ``m.room.join_rules``."""
    events: list[dict[str, Any]] = [
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": BOT,
            "content": {"room_version": contents.pop("version", "12")},
        },
    ]
    members = contents.pop("members", {})
    for key, content in contents.items():
        event_type = "m.room." + key.removeprefix("m_room_")
        events.append({"type": event_type, "state_key": "", "content": content})
    for user, membership in members.items():
        events.append(
            {"type": "m.room.member", "state_key": user, "content": {"membership": membership}}
        )
    return room_policy.RoomState.from_events(events)


def good_state(officers: list[str], version: str = "12") -> dict[str, Any]:
    creators = [BOT] if version == "12" else []
    return {
        "version": version,
        "m_room_join_rules": {"join_rule": "knock"},
        "m_room_guest_access": {"guest_access": "forbidden"},
        "m_room_history_visibility": {"history_visibility": "shared"},
        "m_room_power_levels": room_policy.power_levels(
            bot=BOT, officers=officers, creators=creators
        ),
        "members": {o: "join" for o in officers},
    }


def test_a_room_that_follows_policy_needs_nothing() -> None:
    assert (
        room_policy.fixes(state(**good_state([WANG])), bot=BOT, officers=[WANG], encrypted=False)
        == []
    )
    assert (
        room_policy.fixes(
            state(**good_state([WANG], "10")), bot=BOT, officers=[WANG], encrypted=False
        )
        == []
    )


def test_the_creator_is_listed_only_in_legacy_room_versions() -> None:
    assert BOT not in room_policy.power_levels(bot=BOT, officers=[WANG], creators=[BOT])["users"]
    assert room_policy.power_levels(bot=BOT, officers=[WANG])["users"][BOT] == 100


def test_drift_is_corrected_and_described() -> None:
    drifted = good_state([WANG])
    drifted["m_room_join_rules"] = {"join_rule": "public"}
    levels = dict(drifted["m_room_power_levels"])
    levels["users"] = {WANG: 50, "@resident:hs": 50}
    levels["invite"] = 0
    drifted["m_room_power_levels"] = levels
    fixes = room_policy.fixes(state(**drifted), bot=BOT, officers=[WANG, ZHOU], encrypted=True)
    by_type = {fix.event_type: fix for fix in fixes}
    assert by_type["m.room.join_rules"].content == {"join_rule": "knock"}
    power = by_type["m.room.power_levels"]
    assert power.content["users"] == {WANG: 50, ZHOU: 50}
    assert "@resident:hs 50 → 0" in power.changes and f"{ZHOU} 0 → 50" in power.changes
    assert "invite 0 → 50" in power.changes
    assert by_type["m.room.encryption"].content["algorithm"] == "m.megolm.v1.aes-sha2"
    assert room_policy.officers_to_invite(state(**drifted), [WANG, ZHOU]) == [ZHOU]


def test_encryption_is_never_switched_off() -> None:
    encrypted = good_state([WANG])
    encrypted["m_room_encryption"] = {"algorithm": "m.megolm.v1.aes-sha2"}
    assert room_policy.fixes(state(**encrypted), bot=BOT, officers=[WANG], encrypted=False) == []


def test_case_references_in_every_form() -> None:
    from bot.domain.cases import CaseRef, parse_case_ref

    assert parse_case_ref("HQ-2026-0042") == CaseRef("HQ", 2026, 42)
    assert parse_case_ref("hq-2026-42") == CaseRef("HQ", 2026, 42)
    assert parse_case_ref("2026-0042") == CaseRef(None, 2026, 42)
    assert parse_case_ref("#42") == CaseRef(None, None, 42)
    assert parse_case_ref("ST3F-2026-0007") == CaseRef("ST3F", 2026, 7)
    assert parse_case_ref("forty-two") is None
