"""The Matrix side of the bot: login, the sync loop, gap filling, sending. The only nio user.

nio types never leave this module: the rest of the bot receives
``SyncBatch``/``RoomEvent`` and answers with ``SendResult``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    Event,
    LocalProtocolError,
    LoginError,
    MegolmEvent,
    MessageDirection,
    RoomMessagesError,
    SyncError,
    SyncResponse,
    WhoamiError,
)

from bot.connectivity import Connectivity
from bot.domain.backoff import Backoff
from bot.domain.matrix_model import Action, BotSession, Invite, RoomEvent, SendResult, SyncBatch
from bot.matrix.e2ee import CrossSigning, CryptoStoreMissing, query_keys, store_file
from bot.matrix.http import NETWORK_ERRORS, RawApi
from bot.matrix.writes import MatrixWriter

log = logging.getLogger(__name__)

GAP_PAGE_SIZE = 100
GAP_MAX_PAGES = 100
PART_SIZE = 50  # events per committed part of a long /sync (see ``split_batch``)


class LoginFailed(RuntimeError):
    """The homeserver rejected the bot's password: nothing to retry."""


class GapFillFailed(RuntimeError):
    pass


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """Lazy-loaded members, a generous timeline, nothing the bot does not use."""
    return {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": timeline_limit, "lazy_load_members": True},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    }


class MatrixGateway:
    def __init__(
        self,
        homeserver: str,
        user_id: str,
        *,
        device_name: str,
        store_path: Path,
        timeline_limit: int = 50,
        sync_timeout_ms: int = 30_000,
        backoff_max_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        connectivity: Connectivity | None = None,
        cross_signing_keys: Path | None = None,
        cross_sign: bool = True,
    ) -> None:
        store_path.mkdir(parents=True, exist_ok=True)
        self.connectivity = connectivity or Connectivity()
        self.store_path = store_path
        self._cross_sign = cross_sign
        self.session: BotSession | None = None
        self.user_id = user_id
        self.homeserver = homeserver
        self._device_name = device_name
        self._client = AsyncClient(
            homeserver,
            user_id,
            store_path=str(store_path),
            config=AsyncClientConfig(
                max_limit_exceeded=0,
                max_timeouts=0,
                encryption_enabled=True,
                store_sync_tokens=False,
                request_timeout=60,
            ),
        )
        self._raw = RawApi(homeserver, lambda: self._client.access_token)
        self.writer = MatrixWriter(self._client, self._raw, user_id)
        self.cross_signing = CrossSigning(
            self._raw, user_id, cross_signing_keys or store_path / "cross-signing-keys.json"
        )
        self._filter = sync_filter(timeline_limit)
        self._sync_timeout_ms = sync_timeout_ms
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.requests_failed = 0

    # ----------------------------------------------------------------- login

    async def connect(
        self,
        saved: BotSession | None,
        password: str,
        on_new_session: Callable[[BotSession], Awaitable[None]],
        *,
        cross_sign: bool | None = None,
    ) -> BotSession:
        """Restore ``saved`` (same device id) or log in once; retries while the server is down.

        Then proves the crypto store is this device's and (unless ``cross_sign`` is False)
        makes sure the device is cross-signed."""
        backoff = Backoff(cap=self._backoff_max_s)
        while True:
            try:
                session = await self._connect_once(saved, password)
            except NETWORK_ERRORS as err:
                delay = backoff.next_delay()
                log.warning(
                    "homeserver %s unreachable (%s); retrying in %.0f s",
                    self.homeserver,
                    err,
                    delay,
                )
                await self._sleep(delay)
                continue
            if session != saved:
                await on_new_session(session)
            self.session = session
            await self._prepare_crypto(
                session, password, self._cross_sign if cross_sign is None else cross_sign
            )
            return session

    async def _prepare_crypto(self, session: BotSession, password: str, cross_sign: bool) -> None:
        """Keys uploaded, the store proven to be this device's, cross-signing in place."""
        backoff = Backoff(cap=self._backoff_max_s)
        while True:
            try:
                if self._client.should_upload_keys:
                    await self._client.keys_upload()
                own = (await query_keys(self._raw, [session.user_id]))[session.user_id]
                device = own.devices.get(session.device_id)
                assert self._client.olm is not None
                ours = self._client.olm.account.identity_keys["ed25519"]
                theirs = ((device or {}).get("keys") or {}).get(f"ed25519:{session.device_id}")
                if theirs is not None and theirs != ours:
                    raise CryptoStoreMissing(
                        f"the crypto store in {self.store_path} does not belong to device "
                        f"{session.device_id} (its key {ours[:8]}… is not the server's "
                        f"{theirs[:8]}…). Restore the data directory from a backup; "
                        "a new identity is never created silently."
                    )
                if cross_sign:
                    done = await self.cross_signing.bootstrap(session.device_id, password)
                    log.info("cross-signing: %s", done)
                return
            except NETWORK_ERRORS as err:
                delay = backoff.next_delay()
                log.warning("preparing encryption failed (%s); retrying in %.0f s", err, delay)
                await self._sleep(delay)

    async def _connect_once(self, saved: BotSession | None, password: str) -> BotSession:
        if saved is not None and saved.user_id == self.user_id:
            store = store_file(self.store_path, saved.user_id, saved.device_id)
            if not store.exists():
                raise CryptoStoreMissing(
                    f"the bot's device {saved.device_id} has no crypto store ({store} is "
                    "missing): its encryption keys are gone. Restore the data directory from a "
                    "backup. A new identity is never created silently; to start over on "
                    "purpose, remove the whole data directory and log in again."
                )
            self._client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            whoami = await self._client.whoami()
            if not isinstance(whoami, WhoamiError):
                log.info("restored session for %s, device %s", saved.user_id, saved.device_id)
                return saved
            if whoami.status_code not in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                raise OSError(f"whoami failed: {whoami}")
            log.warning(
                "stored access token was rejected; logging in again as device %s", saved.device_id
            )
            self._client.access_token = ""
        return await self._login(password, saved.device_id if saved else None)

    async def _login(self, password: str, device_id: str | None) -> BotSession:
        if device_id:
            self._client.device_id = device_id
        resp = await self._client.login(password=password, device_name=self._device_name)
        if isinstance(resp, LoginError):
            status = resp.transport_response.status if resp.transport_response else None
            if status is not None and status >= 500:
                raise OSError(f"login failed: {resp}")
            raise LoginFailed(f"the homeserver refused the bot's login: {resp.message}")
        log.info("logged in as %s, device %s", resp.user_id, resp.device_id)
        return BotSession(resp.user_id, resp.device_id, resp.access_token)

    # ------------------------------------------------------------------ sync

    async def batches(
        self, since: str | None, relogin: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[SyncBatch]:
        """Yield one ``SyncBatch`` per /sync, forever; back off (capped) while failing.

        The caller saves ``batch.next_batch`` once it has committed the batch; we
        continue from it here (the batch is not re-fetched unless the process
        restarts before it was saved).
        """
        backoff = Backoff(cap=self._backoff_max_s)
        token = since
        # The first sync of the process returns at once (no long-poll): startup work that
        # waits for it (reconciliation, catching up) is not held up by a quiet server.
        first = True
        while True:
            try:
                resp = await self._client.sync(
                    timeout=0 if first or not token else self._sync_timeout_ms,
                    sync_filter=self._filter,
                    since=token,
                )
                if isinstance(resp, SyncError):
                    if resp.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN") and relogin:
                        await relogin()
                    raise OSError(_describe_error(resp))
                assert isinstance(resp, SyncResponse)
                if resp.device_list.changed:
                    self.writer.devices_changed(list(resp.device_list.changed))
                batch = await self._to_batch(resp, token)
            except (*NETWORK_ERRORS, GapFillFailed) as err:
                self.requests_failed += 1
                self.connectivity.mark_down(str(err) or type(err).__name__)
                delay = backoff.next_delay()
                log.warning(
                    "sync failed (%s); retrying in %.0f s", err or type(err).__name__, delay
                )
                await self._sleep(delay)
                continue
            backoff.reset()
            first = False
            self.connectivity.mark_up()
            await self._maintain_keys()
            for part in split_batch(batch, token):
                yield part
            token = batch.next_batch

    async def _maintain_keys(self) -> None:
        """What nio's ``sync_forever`` would do: to-device messages out, keys up, query, claim."""
        client = self._client
        try:
            await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except NETWORK_ERRORS as err:
            log.warning("key maintenance failed (%s); retried after the next sync", err)

    def try_decrypt(self, room_id: str, raw: dict[str, Any]) -> RoomEvent | None:
        """An event kept because it could not be read: readable now (its key arrived)?"""
        event = Event.parse_event(dict(raw))
        if not isinstance(event, MegolmEvent) or self._client.olm is None:
            return None
        event.room_id = room_id
        try:
            decrypted = self._client.decrypt_event(event)
        except EncryptionError:
            return None
        source = getattr(decrypted, "source", None)
        if not isinstance(source, dict) or source.get("type") == "m.room.encrypted":
            return None
        return _convert(room_id, source)

    async def request_key(self, room_id: str, raw: dict[str, Any]) -> None:
        """Ask the sender's devices to share the key of an unreadable event (best effort)."""
        event = Event.parse_event(dict(raw))
        if not isinstance(event, MegolmEvent) or self._client.olm is None:
            return
        event.room_id = room_id
        try:
            await self._client.request_room_key(event)
        except (LocalProtocolError, *NETWORK_ERRORS) as err:
            log.debug("room key request for %s not sent: %s", raw.get("event_id"), err)

    async def relogin(self, password: str) -> BotSession:
        """Log in again with the same device id (the access token was revoked)."""
        return await self._login(password, self._client.device_id)

    async def _to_batch(self, resp: SyncResponse, since: str | None) -> SyncBatch:
        invites = [
            Invite(room_id, *_inviter(info.invite_state, self.user_id))
            for room_id, info in resp.rooms.invite.items()
        ]
        if since is None:
            # First sync ever: the present, not the past. History is not replayed.
            return SyncBatch(resp.next_batch, [], invites, initial=True)
        events: list[RoomEvent] = []
        for room_id, room in resp.rooms.join.items():
            raw = [
                ev.source
                for ev in room.timeline.events
                if isinstance(getattr(ev, "source", None), dict)
            ]
            joined_now = any(_is_own_join(ev, self.user_id) for ev in raw)
            # A room the bot has just joined has no gap worth fetching: what came before
            # the join is not ours to handle.
            if room.timeline.limited and room.timeline.prev_batch and not joined_now:
                gap = await self._fill_gap(room_id, room.timeline.prev_batch, since)
                raw = _merge(gap, raw)
            events.extend(events_to_handle(room_id, raw, self.user_id))
        return SyncBatch(resp.next_batch, events, invites)

    async def _fill_gap(self, room_id: str, start: str, since: str) -> list[dict[str, Any]]:
        """Fetch, oldest first, the events a limited timeline left out."""
        collected: list[dict[str, Any]] = []
        token = start
        for _ in range(GAP_MAX_PAGES):
            resp = await self._client.room_messages(
                room_id,
                start=token,
                end=since,
                direction=MessageDirection.back,
                limit=GAP_PAGE_SIZE,
            )
            if isinstance(resp, RoomMessagesError):
                raise GapFillFailed(f"/messages in {room_id}: {resp}")
            collected.extend(ev.source for ev in resp.chunk if isinstance(ev.source, dict))
            if not resp.chunk or not resp.end or resp.end == token:
                break
            token = resp.end
        else:
            log.error(
                "gap in %s longer than %d events; older ones were not fetched",
                room_id,
                GAP_PAGE_SIZE * GAP_MAX_PAGES,
            )
        collected.reverse()
        log.info("filled a gap of %d events in %s", len(collected), room_id)
        return collected

    # -------------------------------------------------------------- actions

    async def perform(self, action: Action, txn_id: str) -> SendResult:
        return await self.writer.perform(action, txn_id)

    async def create_dm(self, user_id: str) -> SendResult:
        return await self.writer.create_dm(user_id)

    async def room_state(self, room_id: str) -> list[dict[str, Any]] | None:
        return await self.writer.room_state(room_id)

    async def close(self) -> None:
        await self._raw.close()
        await self._client.close()


def split_batch(batch: SyncBatch, since: str | None, size: int = PART_SIZE) -> list[SyncBatch]:
    """A long batch (catching up after a stop: hundreds of tips) in parts of ``size`` events.

    The caller commits each part, and its replies start going out while the next part is
    handled, instead of after the whole backlog. Only the last part carries the new token;
    the others carry ``since`` (saving it again changes nothing), so a crash between parts
    replays the whole /sync and the inbox skips the events already handled.
    """
    if since is None or len(batch.events) <= size:
        return [batch]
    chunks = [batch.events[i : i + size] for i in range(0, len(batch.events), size)]
    parts = [SyncBatch(since, chunk) for chunk in chunks[:-1]]
    parts.append(SyncBatch(batch.next_batch, chunks[-1], batch.invites, batch.initial))
    return parts


def events_to_handle(room_id: str, raw: list[dict[str, Any]], user_id: str) -> list[RoomEvent]:
    """Drop the bot's own events and everything before the bot (last) joined the room."""
    start = 0
    for index, ev in enumerate(raw):
        if _is_own_join(ev, user_id):
            start = index + 1
    events = []
    for ev in raw[start:]:
        converted = _convert(room_id, ev)
        if converted is not None and converted.sender != user_id:
            events.append(converted)
    return events


def _describe_error(resp: Any) -> str:
    """``HTTP 502 M_UNKNOWN: Bad Gateway`` from a nio error response."""
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", None)
    parts = [f"HTTP {status}" if status else "no response", resp.status_code or "", resp.message]
    return " ".join(str(p) for p in parts if p)


def _is_own_join(ev: dict[str, Any], user_id: str) -> bool:
    if ev.get("type") != "m.room.member" or ev.get("state_key") != user_id:
        return False
    content = ev.get("content") or {}
    if content.get("membership") != "join":
        return False
    prev = ((ev.get("unsigned") or {}).get("prev_content") or {}).get("membership")
    return prev != "join"


def _convert(room_id: str, ev: dict[str, Any]) -> RoomEvent | None:
    event_id, sender, etype = ev.get("event_id"), ev.get("sender"), ev.get("type")
    content = ev.get("content")
    if not (isinstance(event_id, str) and isinstance(sender, str) and isinstance(etype, str)):
        return None
    ts = ev.get("origin_server_ts")
    state_key = ev.get("state_key")
    unsigned = ev.get("unsigned")
    body = dict(content) if isinstance(content, dict) else {}
    if etype == "m.room.redaction" and "redacts" not in body and isinstance(ev.get("redacts"), str):
        body["redacts"] = ev["redacts"]  # rooms before v11 keep it outside the content
    return RoomEvent(
        event_id=event_id,
        room_id=room_id,
        sender=sender,
        type=etype,
        content=body,
        origin_server_ts=ts if isinstance(ts, int) else 0,
        state_key=state_key if isinstance(state_key, str) else None,
        unsigned=unsigned if isinstance(unsigned, dict) else {},
        raw=ev if etype == "m.room.encrypted" else None,
    )


def _merge(older: list[dict[str, Any]], newer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    merged = []
    for ev in [*older, *newer]:
        key = ev.get("event_id")
        if key in seen:
            continue
        seen.add(key)
        merged.append(ev)
    return merged


def _inviter(invite_state: list[Any], user_id: str) -> tuple[str | None, bool]:
    """Who invited the bot, and whether they marked the room as a direct chat."""
    for ev in invite_state:
        source = getattr(ev, "source", None)
        if isinstance(source, dict) and source.get("state_key") == user_id:
            sender = source.get("sender")
            # nio moves "content" out of the source dict into the event's attribute.
            content = getattr(ev, "content", None) or source.get("content") or {}
            is_direct = isinstance(content, dict) and content.get("is_direct") is True
            return (sender if isinstance(sender, str) else None, is_direct)
    return (None, False)
