"""Which rooms the bot agrees to be in.

The bot joins direct chats from anyone (that is how people ask to join with a
code) and group rooms only when an officer or supervisor invites it; any other
invitation is declined, so nobody can pull the bot into rooms it does not serve.
"""

from __future__ import annotations

import logging

from bot.domain.matrix_model import Invite
from bot.features.context import Deps
from bot.features.rooms import join_district_room
from bot.store import direct, org, outbox

log = logging.getLogger(__name__)


async def decide(deps: Deps, invite: Invite) -> str:
    """Queue the join (or the refusal) once; returns what was decided, for the log."""
    if await outbox.lane_pending(deps.conn, invite.room_id):
        return "pending"
    staff = deps.config.officers() | deps.config.supervisors()
    inviter = invite.inviter or ""
    if invite.is_direct and inviter:
        # The newest direct chat a person opened with the bot is the one it answers in.
        await direct.remember(deps.conn, inviter, invite.room_id)
        await deps.actions.join(invite.room_id, via=[inviter.split(":", 1)[1]])
        return "join:direct"
    if inviter in staff:
        await deps.actions.join(invite.room_id, via=[inviter.split(":", 1)[1]])
        return "join:staff"
    for district in deps.config.districts:
        if district.room is not None and inviter in district.supervisors:
            # The district's own digest room (on its server): join the configured room.
            if await org.digest_room(deps.conn, district=district.id) is None:
                await join_district_room(deps, district)
                return "join:district"
    await deps.actions.leave(invite.room_id)
    await deps.audit.record(inviter or "unknown", "invite.declined", room_id=invite.room_id)
    log.info("declined an invitation to %s from %s", invite.room_id, inviter or "?")
    return "declined"
