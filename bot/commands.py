"""``!verb [sub] args`` parsing and the declarative command registry.

A command is declared once with ``@registry.command(...)``: its verb, optional
sub-verb, usage, the roles allowed to run it and its help text in both
languages.  ``!help``, usage errors and the authorization checks are all
derived from that one declaration, never from a hand-kept list.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.domain.render import Language
from bot.domain.roles import Role

MAX_COMMAND_CHARS = 4096
"""Commands are short; a longer message is parsed only up to this many characters."""

FULLWIDTH_PREFIXES = {"!": "！", "?": "？", ".": "。"}
QUOTE_PAIRS = {'"': '"', "“": "”", "「": "」", "『": "』", "„": "“", "«": "»", "'": "'"}
_VERB = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}$")
_DECLARED = re.compile(r"[a-z][a-z0-9_-]{0,31}( [a-z][a-z0-9_-]{0,31})?$")
_SPACE = re.compile(r"\s")


class CommandSyntaxError(ValueError):
    """The message is a command but cannot be tokenised (an unclosed quote)."""

    def __init__(self, quote: str, verb: str = "") -> None:
        super().__init__(quote)
        self.quote = quote
        self.verb = verb


class UsageError(ValueError):
    """Raised by a handler when its arguments are wrong; the user gets the usage line.

    ``key`` names a wording in the locales (rendered in the caller's language with
    ``params``); ``problem`` is for text that needs no translation.
    """

    def __init__(self, problem: str = "", *, key: str | None = None, **params: Any) -> None:
        super().__init__(problem or key or "")
        self.problem = problem
        self.key = key
        self.params = params


@dataclass(frozen=True)
class ParsedCommand:
    verb: str
    args: list[str]
    raw_args: str


def parse(text: str, prefix: str = "!") -> ParsedCommand | None:
    """Return the command in ``text``, or None when the message is not a command.

    A command starts with the prefix (or its full-width form, ``！`` for ``!``)
    immediately followed by a letter.  Arguments are split on whitespace
    (including the ideographic space); quotes ``"…"``, ``“…”``, ``「…」`` group
    words, also inside ``key="value"`` pairs.
    """
    stripped = text.lstrip()
    prefixes = [prefix]
    if prefix in FULLWIDTH_PREFIXES:
        prefixes.append(FULLWIDTH_PREFIXES[prefix])
    for candidate in prefixes:
        if stripped.startswith(candidate):
            rest = stripped[len(candidate) :]
            break
    else:
        return None
    rest = rest[:MAX_COMMAND_CHARS]
    head, _, raw_args = _split_first(rest)
    if not _VERB.match(head):
        return None
    verb = head.lower()
    try:
        args = tokenize(raw_args)
    except CommandSyntaxError as err:
        raise CommandSyntaxError(err.quote, verb) from None
    return ParsedCommand(verb=verb, args=args, raw_args=raw_args.strip())


def _split_first(text: str) -> tuple[str, str, str]:
    match = _SPACE.search(text)
    if match is None:
        return text, "", ""
    return text[: match.start()], match.group(), text[match.end() :]


def tokenize(text: str) -> list[str]:
    """Split arguments, honouring ASCII, curly and CJK quotes."""
    tokens: list[str] = []
    current: list[str] = []
    in_token = False
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
            i += 1
            continue
        closing = QUOTE_PAIRS.get(char)
        # A straight apostrophe only opens a quote at the start of a token ("don't" stays a word).
        if closing is not None and not (char == "'" and in_token):
            end = text.find(closing, i + 1)
            if end < 0:
                raise CommandSyntaxError(char)
            current.append(text[i + 1 : end])
            in_token = True
            i = end + 1
            continue
        current.append(char)
        in_token = True
        i += 1
    if in_token:
        tokens.append("".join(current))
    return tokens


Handler = Callable[[Any, ParsedCommand], Awaitable[None]]


@dataclass(frozen=True)
class CommandSpec:
    verb: str
    usage: str
    roles: frozenset[Role]
    help: dict[Language, str]
    handler: Handler = field(compare=False)

    def allowed(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)

    def usage_line(self, prefix: str) -> str:
        return f"{prefix}{self.verb} {self.usage}".rstrip()


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: dict[str, CommandSpec] = {}
        self._aliases: dict[str, str] = {}

    def command(
        self,
        verb: str,
        *,
        usage: str = "",
        roles: Iterable[Role],
        help_en: str,
        help_zh: str,
    ) -> Callable[[Handler], Handler]:
        """Declare a command (``"ping"``, or a verb and sub-verb: ``"room create"``).

        The decorated coroutine gets ``(ctx, parsed)``; for a sub-verb,
        ``parsed.args`` starts after it.
        """
        if not _DECLARED.match(verb):
            raise ValueError(f"bad verb {verb!r}")

        def decorate(handler: Handler) -> Handler:
            if verb in self._commands:
                raise ValueError(f"command {verb!r} declared twice")
            self._commands[verb] = CommandSpec(
                verb=verb,
                usage=usage,
                roles=frozenset(roles),
                help={"en": help_en, "zh": help_zh},
                handler=handler,
            )
            return handler

        return decorate

    def alias(self, other: str, verb: str) -> None:
        """Accept ``other`` as another spelling of ``verb`` (e.g. neighborhood)."""
        self._aliases[other] = verb

    def get(self, verb: str) -> CommandSpec | None:
        return self._commands.get(self._aliases.get(verb, verb))

    def resolve(self, parsed: ParsedCommand) -> tuple[CommandSpec | None, ParsedCommand]:
        """The declared command ``parsed`` names: ``verb sub`` first, then ``verb``."""
        verb = self._aliases.get(parsed.verb, parsed.verb)
        if parsed.args:
            sub = parsed.args[0].lower()
            spec = self._commands.get(f"{verb} {sub}")
            if spec is not None:
                rest = _split_first(parsed.raw_args)[2].strip()
                return spec, ParsedCommand(spec.verb, parsed.args[1:], rest)
        spec = self._commands.get(verb)
        return spec, ParsedCommand(verb, parsed.args, parsed.raw_args)

    def subcommands(self, verb: str, roles: frozenset[Role]) -> list[CommandSpec]:
        verb = self._aliases.get(verb, verb)
        return [spec for spec in self.visible_to(roles) if spec.verb.startswith(verb + " ")]

    def all(self) -> list[CommandSpec]:
        return sorted(self._commands.values(), key=lambda spec: spec.verb)

    def visible_to(self, roles: frozenset[Role]) -> list[CommandSpec]:
        return [spec for spec in self.all() if spec.allowed(roles)]

    def closest(self, verb: str, roles: frozenset[Role]) -> str | None:
        names = sorted({spec.verb.split(" ")[0] for spec in self.visible_to(roles)})
        matches = difflib.get_close_matches(verb, names, n=1, cutoff=0.6)
        return matches[0] if matches else None
