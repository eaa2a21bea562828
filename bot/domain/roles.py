"""Who may do what.

``ANYONE`` includes strangers (people who are not verified anywhere); ``RESIDENT``
is anyone verified as a member of at least one neighbourhood room; officers and
supervisors come from config. Which station's rooms an officer may act on is
checked by each command (least privilege).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ANYONE = "anyone"
    RESIDENT = "resident"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"


ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.OFFICER, Role.SUPERVISOR})
OFFICERS = frozenset({Role.OFFICER})
SUPERVISORS = frozenset({Role.SUPERVISOR})
MEMBERS_AND_STAFF = frozenset({Role.RESIDENT, Role.OFFICER, Role.SUPERVISOR})


def roles_of(user_id: str, officers: set[str], supervisors: set[str]) -> frozenset[Role]:
    """Roles from configuration; everyone has ``ANYONE``."""
    roles = {Role.ANYONE}
    if user_id in officers:
        roles.add(Role.OFFICER)
    if user_id in supervisors:
        roles.add(Role.SUPERVISOR)
    return frozenset(roles)
