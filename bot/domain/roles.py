"""Who may do what: roles come from config (officers, supervisors) and, later, the members table."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ANYONE = "anyone"
    RESIDENT = "resident"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"


ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.OFFICER, Role.SUPERVISOR})


def roles_of(user_id: str, officers: set[str], supervisors: set[str]) -> frozenset[Role]:
    """Roles from configuration; everyone has ``ANYONE``."""
    roles = {Role.ANYONE}
    if user_id in officers:
        roles.add(Role.OFFICER)
    if user_id in supervisors:
        roles.add(Role.SUPERVISOR)
    return frozenset(roles)
