"""Whether the homeserver answers, shared by the sync loop and the outbox worker.

While the homeserver is unreachable only the sync loop probes it (with its
capped exponential backoff); the outbox worker waits for the sync loop to see
it answer again instead of probing on its own. So an outage costs one request
per backoff step, not one per loop.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Connectivity:
    def __init__(self) -> None:
        self._up = asyncio.Event()
        self._up.set()

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def mark_down(self, reason: str) -> None:
        if self._up.is_set():
            log.warning("homeserver unreachable (%s): sending paused until it answers", reason)
        self._up.clear()

    def mark_up(self) -> None:
        if not self._up.is_set():
            log.info("homeserver answers again: sending resumed")
        self._up.set()

    async def wait_up(self) -> None:
        await self._up.wait()
