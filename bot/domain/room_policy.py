"""What a managed room's settings must be, and what to change when they drift (pure).

Only the bot changes room settings (``state_default`` 100); the station's officers
hold 50, enough to invite, kick and redact; everyone else holds 0, so residents
cannot invite anyone — the homeserver itself refuses. Reconciliation reads the
room's state and writes only what differs, so it is safe to run at every start.

In room versions with MSC4289 (v12, Synapse's default) the creator's power is
unlimited and must not be listed in ``users``; in older versions the bot is
listed at 100.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OFFICER_LEVEL = 50
BOT_LEVEL = 100
SETTINGS_LEVEL = 100

# Settings only the bot may change (Synapse's defaults let moderators change some).
_PROTECTED_EVENTS = (
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.power_levels",
    "m.room.encryption",
    "m.room.pinned_events",
    "m.room.server_acl",
    "m.room.tombstone",
)
_LEGACY_VERSIONS = frozenset(str(v) for v in range(1, 12))


@dataclass(frozen=True)
class Policy:
    """What one kind of managed room must look like.

    * neighbourhood rooms: join by knock ("Ask to join"), the station's officers at 50;
    * officers' rooms: invite only, the station's officers at 50;
    * digest rooms: invite only, supervisors at 50 and the only ones who may post;
      officers added read-only stay at 0; only the bot invites.
    """

    join_rule: str = "knock"
    staff: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    events_default: int = 0
    invite: int = OFFICER_LEVEL

    def required_state(self) -> dict[str, dict[str, Any]]:
        """Room-level settings that must hold (power levels and encryption are apart)."""
        return {
            "m.room.join_rules": {"join_rule": self.join_rule},
            "m.room.guest_access": {"guest_access": "forbidden"},
            "m.room.history_visibility": {"history_visibility": "shared"},
        }

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.staff, *self.readers]))


REQUIRED_STATE = Policy().required_state()
ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}


def creator_is_unlimited(room_version: str) -> bool:
    return room_version not in _LEGACY_VERSIONS


def power_levels(
    *,
    bot: str,
    officers: Iterable[str],
    creators: Iterable[str] = (),
    events_default: int = 0,
    invite: int = OFFICER_LEVEL,
) -> dict[str, Any]:
    """The power levels a managed room should have (creators are left out of ``users``)."""
    skip = set(creators)
    users = {user: OFFICER_LEVEL for user in sorted(set(officers)) if user not in skip}
    if bot not in skip:
        users[bot] = BOT_LEVEL
    return {
        "users": users,
        "users_default": 0,
        "events": {event: SETTINGS_LEVEL for event in _PROTECTED_EVENTS},
        "events_default": events_default,
        "state_default": SETTINGS_LEVEL,
        "invite": invite,
        "kick": OFFICER_LEVEL,
        "ban": OFFICER_LEVEL,
        "redact": OFFICER_LEVEL,
        "notifications": {"room": OFFICER_LEVEL},
    }


@dataclass(frozen=True)
class StateFix:
    """One state event to write, and why (for the log and the audit trail)."""

    event_type: str
    content: dict[str, Any]
    changes: tuple[str, ...]
    state_key: str = ""


@dataclass(frozen=True)
class RoomState:
    """The parts of a room's state reconciliation looks at."""

    room_version: str
    creators: frozenset[str]
    contents: Mapping[str, Mapping[str, Any]]  # event type → content (state_key "")
    memberships: Mapping[str, str]  # user id → membership

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> RoomState:
        contents: dict[str, Mapping[str, Any]] = {}
        memberships: dict[str, str] = {}
        creators: set[str] = set()
        version = "1"
        for ev in events:
            etype, key = ev.get("type"), ev.get("state_key")
            content = ev.get("content") if isinstance(ev.get("content"), Mapping) else {}
            assert isinstance(content, Mapping)
            if etype == "m.room.member" and isinstance(key, str):
                memberships[key] = str(content.get("membership", "leave"))
            elif isinstance(etype, str) and key == "":
                contents[etype] = content
                if etype == "m.room.create":
                    version = str(content.get("room_version", "1"))
                    sender = ev.get("sender")
                    if isinstance(sender, str):
                        creators.add(sender)
                    extra = content.get("additional_creators")
                    if isinstance(extra, list):
                        creators.update(u for u in extra if isinstance(u, str))
        return cls(version, frozenset(creators), contents, memberships)

    @property
    def unlimited_creators(self) -> frozenset[str]:
        return self.creators if creator_is_unlimited(self.room_version) else frozenset()


def power_level_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Human-readable differences, e.g. ``@x:hs 50 → 0`` or ``invite 0 → 50``."""
    changes: list[str] = []
    cur_users = _int_map(current.get("users"))
    for user in sorted(set(cur_users) | set(desired["users"])):
        old, new = cur_users.get(user, 0), desired["users"].get(user, 0)
        if old != new:
            changes.append(f"{user} {old} → {new}")
    for key in (
        "users_default",
        "events_default",
        "state_default",
        "invite",
        "kick",
        "ban",
        "redact",
    ):
        old_value = _as_int(current.get(key), _SPEC_DEFAULTS.get(key, 0))
        if old_value != desired[key]:
            changes.append(f"{key} {old_value} → {desired[key]}")
    cur_events = _int_map(current.get("events"))
    for event, level in desired["events"].items():
        if cur_events.get(event) != level:
            changes.append(f"events.{event} {cur_events.get(event, '-')} → {level}")
    for event in sorted(set(cur_events) - set(desired["events"])):
        changes.append(f"events.{event} {cur_events[event]} → -")
    cur_room = _int_map(current.get("notifications")).get("room", 50)
    if cur_room != desired["notifications"]["room"]:
        changes.append(f"notifications.room {cur_room} → {desired['notifications']['room']}")
    return changes


_SPEC_DEFAULTS = {"state_default": 50, "invite": 0, "kick": 50, "ban": 50, "redact": 50}


def fixes(
    state: RoomState,
    *,
    bot: str,
    officers: Iterable[str],
    encrypted: bool,
    policy: Policy | None = None,
) -> list[StateFix]:
    """Every state event to write so the room matches policy (empty when it already does)."""
    policy = policy or Policy(staff=tuple(officers))
    result: list[StateFix] = []
    for event_type, wanted in policy.required_state().items():
        current = dict(state.contents.get(event_type, {}))
        if any(current.get(key) != value for key, value in wanted.items()):
            result.append(StateFix(event_type, {**current, **wanted}, (f"{event_type} reset",)))
    desired = power_levels(
        bot=bot,
        officers=policy.staff,
        creators=state.unlimited_creators,
        events_default=policy.events_default,
        invite=policy.invite,
    )
    changes = power_level_changes(state.contents.get("m.room.power_levels", {}), desired)
    if changes:
        result.append(StateFix("m.room.power_levels", desired, tuple(changes)))
    if encrypted and "m.room.encryption" not in state.contents:
        result.append(StateFix("m.room.encryption", dict(ENCRYPTION), ("encryption enabled",)))
    return result


def officers_to_invite(state: RoomState, officers: Iterable[str]) -> list[str]:
    return sorted(
        user for user in set(officers) if state.memberships.get(user) not in ("join", "invite")
    )


def _as_int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _int_map(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _as_int(v, 0) for k, v in value.items()}
