"""Whose devices get room keys (the policy), pinned identities, ``!trust``, and messages the
bot could not read.

* ``cross-signed`` (default): only devices cross-signed by their owner — the rule Element
  applies to the bot, applied back; ``tofu``: every device of the identity first seen;
  ``all``: every device.
* An identity (master key) is pinned the first time the bot sees it. If it later changes,
  keys are withheld from the new identity, the officers are told once, it is audited, and
  ``!trust @user`` (an officer) pins the new one.
* An event the bot cannot decrypt is kept and retried as keys arrive; after
  ``e2ee.undecryptable_timeout`` the sender is asked, privately, to send it again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from bot.commands import ParsedCommand, UsageError
from bot.domain.crosssigning import UserKeys, device_cross_signed
from bot.domain.org import parse_duration_ms
from bot.domain.roles import OFFICERS
from bot.features.context import CommandContext, Deps
from bot.features.onboarding import notify_officers, user_arg
from bot.features.registry import Features
from bot.store import e2ee, org

Transaction = Callable[[], AbstractAsyncContextManager[Deps]]


class PinnedTrust:
    """The ``DeviceTrust`` the gateway asks before sharing a room key."""

    def __init__(self, transaction: Transaction, policy: str) -> None:
        self._transaction = transaction
        self._policy = policy

    async def generation(self) -> int:
        async with self._transaction() as deps:
            return await e2ee.generation(deps.conn)

    async def allowed_devices(self, keys: UserKeys) -> set[str]:
        if self._policy == "all":
            return set(keys.devices)
        master = keys.master_key
        async with self._transaction() as deps:
            pinned = await e2ee.identity(deps.conn, keys.user_id)
            if master is not None and pinned is None:
                await e2ee.pin(deps.conn, keys.user_id, master, deps.now_ms)
                await deps.audit.record(
                    deps.bot_id, "identity.pinned", target=keys.user_id, detail={"master": master}
                )
            elif master is not None and pinned is not None and pinned.master_key != master:
                if await e2ee.mark_changed(deps.conn, keys.user_id, master, deps.now_ms):
                    await identity_changed(deps, keys.user_id, pinned.master_key, master)
                return set()  # withheld until an officer runs !trust
        if self._policy == "tofu":
            return set(keys.devices)
        return {
            device_id
            for device_id, device in keys.devices.items()
            if device_cross_signed(keys.user_id, keys.master, keys.self_signing, device)
        }


async def identity_changed(deps: Deps, user: str, old: str, new: str) -> None:
    await deps.audit.record(
        deps.bot_id, "identity.changed", target=user, detail={"old": old, "new": new}
    )
    stations = {
        room.station_id
        for member in await org.memberships(deps.conn, user)
        if (room := await org.room(deps.conn, member.room_id)) is not None
    } or {s.id for s in deps.config.stations}
    for station_id in stations:
        await notify_officers(deps, station_id, "trust.identity_changed", user=user)


async def give_up_unreadable(deps: Deps) -> int:
    """Ask the senders of long-unreadable messages to send them again (once)."""
    timeout = parse_duration_ms(deps.config.e2ee.undecryptable_timeout) or 600_000
    asked = 0
    for event_id, room_id, sender in await e2ee.overdue(deps.conn, deps.now_ms - timeout):
        await e2ee.give_up(deps.conn, event_id, deps.now_ms)
        await deps.audit.record(
            deps.bot_id,
            "e2ee.unreadable",
            target=sender,
            room_id=room_id,
            detail={"event_id": event_id},
        )
        await deps.messenger.send_dm(sender, deps.render("trust.resend", room=room_id))
        asked += 1
    return asked


def register(features: Features) -> None:
    @features.commands.command(
        "trust",
        usage="@user:server",
        roles=OFFICERS,
        help_en="Trust someone's new encryption identity (after they reset it) so they get "
        "messages again.",
        help_zh="信任某人的新加密身份（其重置后），使其重新收到消息。",
    )
    async def trust(ctx: CommandContext, parsed: ParsedCommand) -> None:
        (user,), _ = _one(parsed.args)
        user = user_arg(user)
        pinned = await e2ee.identity(ctx.deps.conn, user)
        if pinned is None or pinned.changed_to is None:
            await ctx.reply("trust.nothing_to_trust", user=user)
            return
        await e2ee.pin(ctx.deps.conn, user, pinned.changed_to, ctx.now_ms)
        await ctx.audit.record(
            ctx.sender,
            "identity.trusted",
            target=user,
            detail={"old": pinned.master_key, "new": pinned.changed_to},
        )
        await ctx.reply("trust.trusted", user=user)


def _one(args: list[str]) -> tuple[list[str], dict[str, str]]:
    if len(args) != 1:
        raise UsageError()
    return args, {}
