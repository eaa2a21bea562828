"""Commands every bot needs: ``!ping``, ``!help`` and ``!status``."""

from __future__ import annotations

from bot.commands import ParsedCommand, UsageError
from bot.domain.roles import ALL_ROLES, MEMBERS_AND_STAFF, STAFF
from bot.features.context import CommandContext
from bot.features.registry import Features


def register(features: Features) -> None:
    registry = features.commands

    @registry.command(
        "ping",
        roles=MEMBERS_AND_STAFF,
        help_en="Check that the bot is alive; shows how long your message took to reach it.",
        help_zh="检查机器人是否在线，并显示消息到达机器人所用的时间。",
    )
    async def ping(ctx: CommandContext, parsed: ParsedCommand) -> None:
        latency_ms = max(0, ctx.now_ms - ctx.event.origin_server_ts)
        await ctx.reply("ping.pong", latency_ms=latency_ms)

    @registry.command(
        "help",
        usage="[command]",
        roles=ALL_ROLES,
        help_en="List the commands you may use, or explain one.",
        help_zh="列出您可以使用的命令，或解释某个命令。",
    )
    async def help_(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if len(parsed.args) > 1:
            raise UsageError()
        if parsed.args:
            verb = parsed.args[0].lstrip("!！").lower()
            spec = ctx.registry.get(verb)
            if spec is None or not spec.allowed(ctx.roles):
                await ctx.reply(
                    "help.unknown",
                    verb=verb,
                    prefix=ctx.prefix,
                )
                return
            await ctx.reply("help.one", usage=spec.usage_line(ctx.prefix), text=spec.help[ctx.lang])
            return
        commands = [
            {"usage": spec.usage_line(ctx.prefix), "text": spec.help[ctx.lang]}
            for spec in ctx.registry.visible_to(ctx.roles)
        ]
        await ctx.reply("help.list", commands=commands)

    @registry.command(
        "status",
        roles=STAFF,
        help_en="Bot health: uptime, events handled, messages waiting to be sent.",
        help_zh="机器人运行状态：运行时间、已处理事件、待发送消息。",
    )
    async def status(ctx: CommandContext, parsed: ParsedCommand) -> None:
        if parsed.args:
            raise UsageError()
        report = await ctx.status.status()
        await ctx.reply("status.report", r=report)
