"""The flow of one event, exactly once: inbox check → decide → writes + outbox, one transaction.

A crash anywhere replays the batch from the last saved sync token; the inbox
skips what was already committed and the outbox resends with the same
transaction ids, so nothing is lost and nothing is answered twice. An event is
known by its id: the same id replayed is skipped, even after a restart. The
sender's ``origin_server_ts`` is only shown (``!ping``), never used to order,
window or date anything: an old event re-sent under a new id is a new message,
handled now, by the bot's clock.

Routing: membership events go to the ``on_member`` handlers, other state
events to ``on_state``, reactions and redactions to theirs; a message is a
command (the registry decides, and checks the sender's roles) or is offered to
the ``on_message`` handlers in turn. Messages in a managed neighbourhood room
from someone who is neither a member nor staff are not acted on (enforcement
removes them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.commands import CommandSyntaxError, ParsedCommand, UsageError, parse
from bot.config import Config
from bot.domain.matrix_model import Invite, RoomEvent
from bot.domain.roles import Role, roles_of
from bot.features.context import CommandContext, Deps, EventContext
from bot.features.ports import RuntimeInfo
from bot.features.registry import Features
from bot.features.scope import Refused
from bot.store import direct, e2ee, inbox, kv, org
from bot.store.adapters import OutboxMessenger, OutboxRoomActions, SqlAuditLog, TxStatusProbe
from bot.store.clock import now_ms
from bot.store.db import Connection, Database

log = logging.getLogger(__name__)

MESSAGE_TYPES = frozenset(
    {"m.text", "m.notice", "m.emote", "m.image", "m.file", "m.video", "m.audio", "m.location"}
)
TEXT_TYPES = frozenset({"m.text", "m.notice", "m.emote"})


class HandlerFailed(Exception):
    """A handler raised: its transaction was rolled back; the user gets an apology."""

    def __init__(self, verb: str) -> None:
        super().__init__(verb)
        self.verb = verb


def make_deps(
    conn: Connection,
    config: Config,
    now: int,
    source_event: str | None = None,
    actor: str | None = None,
) -> Deps:
    return Deps(
        conn=conn,
        config=config,
        messenger=OutboxMessenger(conn, source_event),
        actions=OutboxRoomActions(conn, source_event, actor),
        audit=SqlAuditLog(conn),
        now_ms=now,
    )


class EventPipeline:
    def __init__(
        self,
        db: Database,
        features: Features,
        runtime: RuntimeInfo,
        config: Config,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._db = db
        self._features = features
        self._runtime = runtime
        self._config = config
        self._officers = config.officers()
        self._supervisors = config.supervisors()
        self._clock = clock

    async def handle(self, event: RoomEvent) -> bool:
        """Process ``event`` unless it was already; True when it was processed now."""
        return await self.handle_batch([event]) == 1

    async def handle_batch(
        self,
        events: Sequence[RoomEvent],
        next_batch: str | None = None,
        invites: Sequence[Invite] = (),
    ) -> int:
        """One /sync batch as one transaction: every event (each in a savepoint), the bot's
        invitations, then the sync token. Returns how many events were processed now.

        Committing the batch at once is a group commit: one durable write for the whole
        batch. A crash before the commit replays the whole batch; nothing of it was sent.
        """

        async def unit(conn: Connection) -> int:
            done = await inbox.processed_among(conn, [event.event_id for event in events])
            fresh = [e for e in events if e.event_id not in done and e.type != "m.room.encrypted"]
            await e2ee.resolved(conn, [event.event_id for event in fresh])
            await org.prefetch_senders(conn, [(event.room_id, event.sender) for event in fresh])
            handled = 0
            for event in events:
                if await self._handle_one(conn, event, done):
                    handled += 1
            for invite in invites:
                deps = make_deps(conn, self._config, self._clock())
                for on_invite in self._features.on_invite:
                    decision = await on_invite(deps, invite)
                    log.info("invited to %s by %s: %s", invite.room_id, invite.inviter, decision)
            await self._features.end_unit(make_deps(conn, self._config, self._clock()))
            if next_batch is not None:
                await kv.put(conn, kv.SYNC_TOKEN, next_batch)
            return handled

        return await self._db.run(unit)

    async def _handle_one(self, conn: Connection, event: RoomEvent, done: set[str]) -> bool:
        """Handle ``event`` unless its id is in ``done`` (the batch's handled ids, which
        grows as the batch goes: the same id twice in one batch is handled once)."""
        if event.event_id in done:
            return False
        if event.type == "m.room.encrypted":
            # Not readable yet (its key has not arrived): kept, and handled — through this
            # same path, exactly once — when it can be decrypted. Not marked processed.
            await e2ee.keep(
                conn,
                event.event_id,
                event.room_id,
                event.sender,
                dict(event.raw or {}),
                self._clock(),
            )
            return False
        await conn.execute("SAVEPOINT event")
        try:
            outcome = await self._dispatch(conn, event)
        except Exception as err:  # one bad event must never block the batch
            await conn.execute("ROLLBACK TO event")
            what = err.verb if isinstance(err, HandlerFailed) else "event"
            log.exception("handling %s failed on %s", what, event.event_id)
            if not event.is_state and event.type == "m.room.message":
                ctx = await self._context(conn, event)
                key = (
                    "command.error"
                    if isinstance(err, HandlerFailed) and what not in ("message", "event")
                    else "message.error"
                )
                await ctx.reply(key, verb=what)
            outcome = "error"
        await inbox.mark_processed(conn, event.event_id, event.room_id, event.sender, outcome)
        await conn.execute("RELEASE event")
        done.add(event.event_id)
        return True

    async def _context(self, conn: Connection, event: RoomEvent) -> EventContext:
        deps = make_deps(conn, self._config, self._clock(), event.event_id, event.sender)
        room = await org.room(conn, event.room_id)
        dm_user = await direct.user_of(conn, event.room_id)
        roles = roles_of(event.sender, self._officers, self._supervisors)
        if await org.is_verified_anywhere(conn, event.sender):
            roles = roles | {Role.RESIDENT}
        return EventContext(
            deps=deps,
            event=event,
            roles=roles,
            lang=room.language if room else self._config.language,
            room=room,
            dm_with=dm_user if dm_user == event.sender else None,
        )

    async def _dispatch(self, conn: Connection, event: RoomEvent) -> str:
        ctx = await self._context(conn, event)
        for gate in self._features.gates:
            stopped = await gate(ctx)
            if stopped is not None:
                return stopped
        if event.is_state:
            features = self._features
            handlers = features.on_member if event.type == "m.room.member" else features.on_state
            for handler in handlers:
                await self._guarded(handler(ctx), event.type)
            return f"state:{event.type}"
        if event.type == "m.reaction":
            for on_reaction in self._features.on_reaction:
                await self._guarded(on_reaction(ctx), "reaction")
            return "reaction"
        if event.type == "m.room.redaction":
            for on_redaction in self._features.on_redaction:
                await self._guarded(on_redaction(ctx), "redaction")
            return "redaction"
        if event.type != "m.room.message" or event.msgtype not in MESSAGE_TYPES:
            return "ignored"
        if event.msgtype in TEXT_TYPES and not event.is_edit:
            try:
                parsed = parse(event.body, self._config.command_prefix)
            except CommandSyntaxError as err:
                spec = self._features.commands.get(err.verb)
                usage = spec.usage_line(ctx.prefix) if spec else f"{ctx.prefix}help"
                await ctx.reply("command.syntax", quote=err.quote, usage=usage)
                return "command:syntax"
            if parsed is not None:
                return await self._run_command(ctx, parsed)
        for on_message in self._features.on_message:
            if await self._guarded(on_message(ctx), "message"):
                return "message:handled"
        return "message"

    @staticmethod
    async def _guarded(work: Awaitable[Any], what: str) -> Any:
        try:
            return await work
        except Exception as err:
            raise HandlerFailed(what) from err

    async def _run_command(self, base: EventContext, parsed: ParsedCommand) -> str:
        registry = self._features.commands
        ctx = CommandContext(
            deps=base.deps,
            event=base.event,
            roles=base.roles,
            lang=base.lang,
            room=base.room,
            dm_with=base.dm_with,
            registry=registry,
            status=TxStatusProbe(base.deps.conn, self._runtime),
        )
        spec, parsed = registry.resolve(parsed)
        if spec is None:
            subs = registry.subcommands(parsed.verb, ctx.roles)
            if subs:
                usages = [sub.usage_line(ctx.prefix) for sub in subs]
                await ctx.reply("command.subcommands", verb=parsed.verb, usages=usages)
                return "command:usage"
            suggestion = registry.closest(parsed.verb, ctx.roles)
            await ctx.reply("command.unknown", verb=parsed.verb, suggestion=suggestion)
            return "command:unknown"
        if not spec.allowed(ctx.roles):
            await ctx.audit.record(
                ctx.sender,
                "command.refused",
                target=spec.verb,
                room_id=ctx.event.room_id,
                detail={"event_id": ctx.event.event_id, "needs": sorted(spec.roles)},
            )
            await ctx.reply("command.refused", verb=spec.verb, roles=role_names(ctx, spec.roles))
            return "command:refused"
        try:
            await spec.handler(ctx, parsed)
        except UsageError as err:
            problem = ctx.render(err.key, **err.params).body if err.key else err.problem
            await ctx.reply("command.usage", problem=problem, usage=spec.usage_line(ctx.prefix))
            return "command:usage"
        except Refused:
            return "command:refused"
        except Exception as err:
            raise HandlerFailed(spec.verb) from err
        return f"command:{spec.verb}"


def role_names(ctx: EventContext, roles: frozenset[Role]) -> str:
    names = [ctx.render(f"role.{role.value}").body for role in sorted(roles)]
    return f" {ctx.render('word.or').body} ".join(names)
