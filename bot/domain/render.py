"""All wording lives in ``locales/<lang>.yaml``; this module turns a key into a message.

Each entry has a ``text`` template (plain body) and optionally an ``html``
template.  HTML is rendered by a Jinja2 environment with autoescape on, so any
user-supplied value (a command name, a display name, a tip) is escaped in the
formatted body; the plain body is plain text and needs no escaping.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import jinja2
import yaml

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")


@dataclass(frozen=True)
class Message:
    """A rendered message: plain body plus optional HTML (already escaped)."""

    body: str
    html: str | None = None


class UnknownMessageKey(KeyError):
    pass


_TEXT_ENV = jinja2.Environment(
    autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
)
_HTML_ENV = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
)
# The wording uses no Jinja globals (range, dict, lipsum, cycler, joiner, namespace): without
# them every render skips copying them into its context, a third of a short render's time.
# test_render checks that no template names one.
for _env in (_TEXT_ENV, _HTML_ENV):
    _env.globals.clear()


# libyaml's loader when PyYAML has it (several times faster), else the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def preload() -> None:
    """Read every language's wording now (at startup), not when the first message needs it:
    the first tip is not kept waiting, and a broken locale file stops the bot at once."""
    for lang in LANGUAGES:
        _catalogue(lang)


@cache
def _catalogue(lang: Language) -> dict[str, dict[str, str]]:
    raw = resources.files("bot.domain").joinpath("locales", f"{lang}.yaml").read_text("utf-8")
    data = yaml.load(raw, Loader=_YAML_LOADER)
    if not isinstance(data, dict):
        raise ValueError(f"locales/{lang}.yaml must be a mapping")
    catalogue: dict[str, dict[str, str]] = {}
    for key, entry in data.items():
        if isinstance(entry, str):
            catalogue[str(key)] = {"text": entry}
        elif isinstance(entry, dict):
            catalogue[str(key)] = {str(k): str(v) for k, v in entry.items()}
        else:
            raise ValueError(f"locales/{lang}.yaml: {key} must be a string or mapping")
    return catalogue


@cache
def _template(env_name: str, source: str) -> jinja2.Template:
    env = _HTML_ENV if env_name == "html" else _TEXT_ENV
    return env.from_string(source)


def keys(lang: Language) -> set[str]:
    return set(_catalogue(lang))


def render(lang: Language, key: str, **params: Any) -> Message:
    """Render ``key`` in ``lang``; HTML escapes every parameter."""
    entry = _catalogue(lang).get(key)
    if entry is None:
        raise UnknownMessageKey(f"{lang}:{key}")
    body = _template("text", entry["text"]).render(**params).strip()
    if "html" in entry:
        formatted = _template("html", entry["html"]).render(**params).strip()
    else:
        formatted = None
    return Message(body=body, html=formatted)


def text(lang: Language, key: str, **params: Any) -> str:
    """Just the plain text of a key (for pieces embedded in other messages)."""
    return render(lang, key, **params).body


def escape(value: str) -> str:
    return html.escape(value, quote=True)
