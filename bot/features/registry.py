"""The features of the bot, declared in one place: commands, event handlers, outbox hooks,
startup tasks. ``bot/app.py`` builds one ``Features`` and hands it to the pipeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.commands import CommandRegistry
from bot.delivery import Outcome
from bot.domain.matrix_model import Invite
from bot.features.context import Deps, EventContext

MessageHandler = Callable[[EventContext], Awaitable[bool]]
"""Gets every message that is not a command; returns True when it dealt with it."""
EventHandler = Callable[[EventContext], Awaitable[None]]
FeatureHook = Callable[[Deps, dict[str, Any], Outcome], Awaitable[None]]
InviteHandler = Callable[[Deps, Invite], Awaitable[str]]
"""Decides what to do with an invitation of the bot; returns the decision for the log."""
Gate = Callable[[EventContext], Awaitable[str | None]]
"""Runs before everything else; returning an outcome stops the event there (e.g. throttled)."""
UnitEnd = Callable[[Deps], Awaitable[None]]
"""Runs once at the end of every unit of work, before it commits (work collected per unit)."""


@dataclass
class Features:
    commands: CommandRegistry = field(default_factory=CommandRegistry)
    gates: list[Gate] = field(default_factory=list)
    on_message: list[MessageHandler] = field(default_factory=list)
    on_member: list[EventHandler] = field(default_factory=list)
    on_state: list[EventHandler] = field(default_factory=list)
    on_reaction: list[EventHandler] = field(default_factory=list)
    on_redaction: list[EventHandler] = field(default_factory=list)
    hooks: dict[str, FeatureHook] = field(default_factory=dict)
    on_invite: list[InviteHandler] = field(default_factory=list)
    before_commit: list[UnitEnd] = field(default_factory=list)

    async def end_unit(self, deps: Deps) -> None:
        for finish in self.before_commit:
            await finish(deps)

    def hook(self, name: str) -> Callable[[FeatureHook], FeatureHook]:
        def decorate(fn: FeatureHook) -> FeatureHook:
            if name in self.hooks:
                raise ValueError(f"hook {name!r} declared twice")
            self.hooks[name] = fn
            return fn

        return decorate
