"""The flow of one event, exactly once: inbox check → decide → writes + outbox, one transaction.

A crash anywhere replays the batch from the last saved sync token; the inbox
skips what was already committed and the outbox resends with the same
transaction ids, so nothing is lost and nothing is answered twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiosqlite

from bot.commands import (
    CommandRegistry,
    CommandSyntaxError,
    ParsedCommand,
    UsageError,
    parse,
)
from bot.domain.matrix_model import RoomEvent
from bot.domain.render import Language, render, text
from bot.domain.roles import Role, roles_of
from bot.features.context import CommandContext
from bot.features.ports import RuntimeInfo
from bot.store import inbox
from bot.store.adapters import OutboxMessenger, SqlAuditLog, TxStatusProbe
from bot.store.clock import now_ms
from bot.store.db import Database

log = logging.getLogger(__name__)

MESSAGE_TYPES = frozenset({"m.text", "m.notice", "m.emote"})


class HandlerFailed(Exception):
    """A handler raised: its transaction was rolled back; the user gets an apology."""

    def __init__(self, verb: str) -> None:
        super().__init__(verb)
        self.verb = verb


class EventPipeline:
    def __init__(
        self,
        db: Database,
        registry: CommandRegistry,
        runtime: RuntimeInfo,
        *,
        prefix: str,
        language: Language,
        officers: set[str],
        supervisors: set[str],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._db = db
        self._registry = registry
        self._runtime = runtime
        self._prefix = prefix
        self._language: Language = language
        self._officers = officers
        self._supervisors = supervisors
        self._clock = clock

    async def handle(self, event: RoomEvent) -> bool:
        """Process ``event`` unless it was already; True when it was processed now."""
        try:
            async with self._db.transaction() as conn:
                if await inbox.is_processed(conn, event.event_id):
                    return False
                outcome = await self._dispatch(conn, event)
                await inbox.mark_processed(
                    conn, event.event_id, event.room_id, event.sender, outcome
                )
            return True
        except HandlerFailed as failure:
            log.exception("handler for %s failed on %s", failure.verb, event.event_id)
            async with self._db.transaction() as conn:
                if await inbox.is_processed(conn, event.event_id):
                    return False
                messenger = OutboxMessenger(conn, event.event_id)
                await messenger.send(
                    event.room_id,
                    render(self._language, "command.error", prefix=self._prefix, verb=failure.verb),
                    reply_to=event.event_id,
                    mentions=[event.sender],
                    tag={"kind": "command.error"},
                )
                await inbox.mark_processed(
                    conn, event.event_id, event.room_id, event.sender, "error"
                )
            return True

    async def _dispatch(self, conn: aiosqlite.Connection, event: RoomEvent) -> str:
        if event.type != "m.room.message" or event.msgtype not in MESSAGE_TYPES:
            return "ignored"
        try:
            parsed = parse(event.body, self._prefix)
        except CommandSyntaxError as err:
            ctx = self._context(conn, event)
            spec = self._registry.get(err.verb)
            usage = spec.usage_line(self._prefix) if spec else f"{self._prefix}help"
            await ctx.reply("command.syntax", quote=err.quote, usage=usage)
            return "command:syntax"
        if parsed is None:
            return "message"
        return await self._run_command(conn, event, parsed)

    def _context(self, conn: aiosqlite.Connection, event: RoomEvent) -> CommandContext:
        return CommandContext(
            event=event,
            roles=roles_of(event.sender, self._officers, self._supervisors),
            lang=self._language,
            prefix=self._prefix,
            messenger=OutboxMessenger(conn, event.event_id),
            audit=SqlAuditLog(conn),
            registry=self._registry,
            status=TxStatusProbe(conn, self._runtime),
            now_ms=self._clock(),
        )

    async def _run_command(
        self, conn: aiosqlite.Connection, event: RoomEvent, parsed: ParsedCommand
    ) -> str:
        ctx = self._context(conn, event)
        spec = self._registry.get(parsed.verb)
        if spec is None:
            suggestion = self._registry.closest(parsed.verb, ctx.roles)
            await ctx.reply(
                "command.unknown", prefix=self._prefix, verb=parsed.verb, suggestion=suggestion
            )
            return "command:unknown"
        if not spec.allowed(ctx.roles):
            await ctx.audit.record(
                event.sender,
                "command.refused",
                target=spec.verb,
                room_id=event.room_id,
                detail={"event_id": event.event_id, "needs": sorted(spec.roles)},
            )
            await ctx.reply(
                "command.refused",
                prefix=self._prefix,
                verb=spec.verb,
                roles=self._role_names(spec.roles),
            )
            return "command:refused"
        try:
            await spec.handler(ctx, parsed)
        except UsageError as err:
            await ctx.reply(
                "command.usage", problem=err.problem, usage=spec.usage_line(self._prefix)
            )
            return "command:usage"
        except Exception as err:
            raise HandlerFailed(spec.verb) from err
        return f"command:{spec.verb}"

    def _role_names(self, roles: frozenset[Role]) -> str:
        names = [text(self._language, f"role.{role.value}") for role in sorted(roles)]
        joiner = f" {text(self._language, 'word.or')} "
        return joiner.join(names)
