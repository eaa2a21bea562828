"""Which servers a room admits, from its create event and its server ACL (pure).

* ``m.federate: false`` in ``m.room.create``: only the creator's server takes part
  (the homeserver enforces it in the auth rules; checked again here, it costs nothing).
* ``m.room.server_acl``: the spec's rules, as Synapse applies them — the port is ignored,
  IP literals are refused unless ``allow_ip_literals`` (default true), a ``deny`` glob
  wins over an ``allow`` glob, and a server no ``allow`` glob matches is refused (an ACL
  without ``allow`` admits nobody). Globs use ``*`` and ``?``, case-insensitively.

ACLs act at the network level only (they are not auth rules): an event from a denied
server still reaches the room when a server that ignores the ACL relays it, so the bot
checks the sender's server itself before it acts on a message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any


def server_of(user_id: str) -> str:
    """The server part of a Matrix id (``@a:example.org:8448`` → ``example.org:8448``)."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def host_of(server: str) -> str:
    """A server name without its port (``[::1]:8448`` → ``[::1]``)."""
    if server.startswith("["):
        end = server.find("]")
        return server[: end + 1] if end > 0 else server
    return server.rsplit(":", 1)[0] if server.count(":") == 1 else server


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return False
    return True


@cache
def _glob(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _globs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def acl_admits(acl: Mapping[str, Any], server: str) -> bool:
    """Whether the ``m.room.server_acl`` content ``acl`` lets ``server`` take part."""
    host = host_of(server)
    allow_ip = acl.get("allow_ip_literals", True)
    if allow_ip is False and is_ip_literal(host):
        return False
    if any(_glob(p).fullmatch(host) for p in _globs(acl.get("deny"))):
        return False
    return any(_glob(p).fullmatch(host) for p in _globs(acl.get("allow")))


@dataclass(frozen=True)
class RoomFederation:
    """What the bot knows of a room's federation settings (nothing known: all admitted)."""

    creator_server: str | None = None
    federate: bool = True
    acl: Mapping[str, Any] | None = None

    def refusal(self, user_id: str) -> str | None:
        """Why the room does not admit ``user_id``'s server (``"not_federated"``,
        ``"server_acl"``), or None when it does."""
        server = server_of(user_id)
        if not self.federate and self.creator_server is not None and server != self.creator_server:
            return "not_federated"
        if self.acl is not None and not acl_admits(self.acl, server):
            return "server_acl"
        return None
