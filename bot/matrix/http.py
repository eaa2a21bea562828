"""Plain JSON calls to the client-server API, for what nio does not cover (or covers badly):
``/createRoom`` with a full body, ``/join`` and ``/knock`` with ``via`` servers, room state.

Every call returns a ``SendResult``-compatible classification: rate limited (429),
transient (network, 5xx) or permanent (other 4xx); nothing raises for server trouble.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from bot.domain.matrix_model import SendResult

NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)
CLIENT_V3 = "/_matrix/client/v3"


@dataclass(frozen=True)
class HttpReply:
    status: int  # 0 when the request did not get an answer
    body: dict[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def errcode(self) -> str:
        return str(self.body.get("errcode", ""))

    def as_result(self, value: str | None = None) -> SendResult:
        if self.ok:
            return SendResult(value=value)
        if self.status == 429 or self.errcode == "M_LIMIT_EXCEEDED":
            retry = self.body.get("retry_after_ms")
            return SendResult(
                retry_after_ms=int(retry) if isinstance(retry, int | float) else 1000,
                error=self.describe(),
            )
        return SendResult(
            error=self.describe(),
            permanent=400 <= self.status < 500,
            # No answer, or a gateway error without a Matrix error code (a proxy in front of a
            # homeserver that is down). A 502 *with* an errcode is our homeserver saying that
            # another server did not answer: ours is up, and the rest of the outbox can go on.
            unreachable=self.status == 0 or (self.status in (502, 503, 504) and not self.errcode),
            remote=self.status in (502, 503, 504) and bool(self.errcode),
        )

    def describe(self) -> str:
        if self.status == 0:
            return f"network: {self.error}"
        message = self.body.get("error") or self.error or ""
        return f"HTTP {self.status} {self.errcode} {message}".strip()


def path(*parts: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """``/_matrix/client/v3/<parts, each percent-encoded>?<query>``."""
    built = CLIENT_V3 + "".join("/" + quote(part, safe="") for part in parts)
    return built + ("?" + urlencode(list(query)) if query else "")


class RawApi:
    def __init__(self, homeserver: str, token: Callable[[], str], timeout_s: float = 60) -> None:
        self._homeserver = homeserver.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self, method: str, url_path: str, body: dict[str, Any] | None = None
    ) -> HttpReply:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            async with self._session.request(
                method, self._homeserver + url_path, json=body, headers=headers
            ) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = {}
                if isinstance(data, list):  # e.g. GET /rooms/{id}/state
                    data = {"chunk": data}
                return HttpReply(resp.status, data if isinstance(data, dict) else {})
        except NETWORK_ERRORS as err:
            return HttpReply(0, {}, error=str(err) or type(err).__name__)

    async def get_bytes(self, url_path: str, max_bytes: int) -> tuple[bytes | None, HttpReply]:
        """Download at most ``max_bytes`` (more is an error: 413-like, permanent)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            async with self._session.get(self._homeserver + url_path, headers=headers) as resp:
                if resp.status != 200:
                    text = await resp.text()
                    try:
                        body = json.loads(text) if text else {}
                    except ValueError:
                        body = {}
                    return None, HttpReply(resp.status, body if isinstance(body, dict) else {})
                data = await resp.content.read(max_bytes + 1)
                if len(data) > max_bytes:
                    return None, HttpReply(
                        413, {"errcode": "M_TOO_LARGE", "error": f"larger than {max_bytes} bytes"}
                    )
                return data, HttpReply(200, {})
        except NETWORK_ERRORS as err:
            return None, HttpReply(0, {}, error=str(err) or type(err).__name__)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
