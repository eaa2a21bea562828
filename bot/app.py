"""Composition root: builds the database, the Matrix gateway, the features, the pipeline and
the outbox worker from the config, and owns their start and stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Config
from bot.delivery import Hook, OutboxWorker, Outcome, txn_prefix
from bot.domain import render
from bot.domain.matrix_model import BotSession, SyncBatch
from bot.features import (
    basics,
    cases,
    digests,
    federation,
    intake,
    invites,
    membership,
    notices,
    onboarding,
    retention,
    rooms,
    taskforce,
    trust,
)
from bot.features.context import Deps
from bot.features.ports import RuntimeInfo
from bot.features.registry import FeatureHook, Features
from bot.features.trust import PinnedTrust
from bot.matrix.gateway import MatrixGateway
from bot.pipeline import EventPipeline, make_deps
from bot.store import e2ee as e2ee_store
from bot.store import intake as intake_store
from bot.store import kv, session
from bot.store.clock import now_ms
from bot.store.db import Connection, Database

log = logging.getLogger(__name__)

DB_FILE = "neighborwatch.db"
SHUTDOWN_DRAIN_S = 3.0
RECONCILE_POLL_S = 30.0


def build_features() -> Features:
    features = Features()
    features.on_invite.append(invites.decide)
    federation.register(features)  # first gate: a refused server's message goes no further
    basics.register(features)
    rooms.register(features)
    onboarding.register(features)
    membership.register(features)
    intake.register(features)
    cases.register(features)
    notices.register(features)  # first in line for messages: sightings are not tips
    digests.register(features)
    trust.register(features)
    taskforce.register(features)
    return features


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime = RuntimeInfo(homeserver=config.homeserver.url, started_at=time.time())
        self.ready = asyncio.Event()
        self._password = config.bot.password.get_secret_value() if config.bot.password else ""
        self._db: Database | None = None
        self._worker: OutboxWorker | None = None
        self._reconcile_wake = asyncio.Event()
        self._timed_lock = asyncio.Lock()
        self._key_requested: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._features = Features()

    @property
    def db(self) -> Database:
        assert self._db is not None
        return self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Deps]:
        """A unit of work for background tasks; what it queues is sent after it commits."""
        async with self.db.transaction() as conn:
            deps = make_deps(conn, self.config, now_ms())
            yield deps
            await self._features.end_unit(deps)
        if self._worker is not None:
            self._worker.wake()

    def _hooks(self, features: Features) -> dict[str, Hook]:
        def adapt(hook: FeatureHook) -> Hook:
            async def run(conn: Connection, args: dict[str, Any], out: Outcome) -> None:
                deps = make_deps(conn, self.config, now_ms())
                await hook(deps, args, out)
                await features.end_unit(deps)

            return run

        return {name: adapt(hook) for name, hook in features.hooks.items()}

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or a component fails); always closes what it opened."""
        cfg = self.config
        render.preload()
        self._db = db = await Database.open(cfg.data_dir / DB_FILE)
        gateway = MatrixGateway(
            cfg.homeserver.url,
            cfg.bot.user_id,
            device_name=cfg.bot.device_name,
            store_path=cfg.data_dir / "nio",
            timeline_limit=cfg.sync.timeline_limit,
            sync_timeout_ms=cfg.sync.timeout_ms,
            backoff_max_s=cfg.sync.backoff_max_s,
            cross_signing_keys=cfg.e2ee.keys_file,
            cross_sign=cfg.e2ee.cross_sign,
        )
        gateway.writer.encrypt_new_dms = cfg.rooms.encrypted
        if cfg.e2ee.trust != "all":
            gateway.writer.trust = PinnedTrust(self.transaction, cfg.e2ee.trust)
        try:
            async with db.transaction() as conn:
                saved = await session.load(conn)
                since = await kv.get(conn, kv.SYNC_TOKEN)
            await gateway.connect(saved, self._password, self._save_session)
            features = self._features = build_features()
            worker = self._worker = OutboxWorker(
                db,
                gateway,
                prefix=await txn_prefix(db),
                hooks=self._hooks(features),
                concurrency=cfg.outbox.concurrency,
                max_attempts=cfg.outbox.max_attempts,
                backoff_max_s=cfg.sync.backoff_max_s,
                connectivity=gateway.connectivity,
            )
            pipeline = EventPipeline(db, features, self.runtime, cfg)
            tasks = {
                asyncio.create_task(worker.run(), name="outbox"),
                asyncio.create_task(self._sync_loop(gateway, pipeline, since), name="sync"),
                asyncio.create_task(self._maintain_rooms(gateway), name="rooms"),
                asyncio.create_task(self._timers(), name="timers"),
            }
            stopper = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("stopping: sending what is queued (up to %.0f s)", SHUTDOWN_DRAIN_S)
                await worker.drain(SHUTDOWN_DRAIN_S)
            for task in {*tasks, stopper, *self._background}:
                task.cancel()
            results = await asyncio.gather(*tasks, stopper, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    raise result
        finally:
            await gateway.close()
            await db.close()

    async def _save_session(self, new: BotSession) -> None:
        async with self.db.transaction() as conn:
            await session.save(conn, new)

    async def _sync_loop(
        self, gateway: MatrixGateway, pipeline: EventPipeline, since: str | None
    ) -> None:
        async def relogin() -> None:
            await self._save_session(await gateway.relogin(self._password))

        async for batch in gateway.batches(since, relogin=relogin):
            await self._process(batch, pipeline)
            await self._retry_unreadable(gateway, pipeline)
            self.runtime.last_sync_at = time.time()
            if not self.ready.is_set():
                self.ready.set()
                print(
                    f"neighborwatch ready: {gateway.user_id} on {gateway.homeserver}",
                    flush=True,
                )

    async def _process(self, batch: SyncBatch, pipeline: EventPipeline) -> None:
        assert self._worker is not None
        # Events, invitations and the sync token: one transaction (see handle_batch).
        handled = await pipeline.handle_batch(batch.events, batch.next_batch, batch.invites)
        self._worker.wake()
        if await self.db.fetchone("SELECT 1 FROM reconcile_queue LIMIT 1") is not None:
            self._reconcile_wake.set()
        if handled:
            log.debug("batch: %d events, %d handled", len(batch.events), handled)

    async def _retry_unreadable(self, gateway: MatrixGateway, pipeline: EventPipeline) -> None:
        """Events kept because their keys had not arrived: readable now? Then handle them."""
        async with self.db.transaction() as conn:
            waiting = await e2ee_store.waiting(conn)
        readable = []
        for room_id, event_id, raw in waiting:
            event = gateway.try_decrypt(room_id, raw)
            if event is not None:
                readable.append(event)
            elif event_id not in self._key_requested:
                self._key_requested.add(event_id)
                await gateway.request_key(room_id, raw)
        if readable:
            handled = await pipeline.handle_batch(readable)
            log.info("%d late-decrypted event(s) handled", handled)
            assert self._worker is not None
            self._worker.wake()

    async def _maintain_rooms(self, gateway: MatrixGateway) -> None:
        """Officers' rooms and reconciliation at startup; then rooms someone changed."""
        await self.ready.wait()
        await rooms.ensure_station_rooms(self.transaction)
        changed = await rooms.reconcile_all(self.transaction, gateway)
        log.info("startup reconciliation done: %d room(s) corrected", changed)
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_wake.wait(), timeout=RECONCILE_POLL_S)
            self._reconcile_wake.clear()
            await rooms.reconcile_requested(self.transaction, gateway)

    async def _timers(self) -> None:
        """APScheduler (owned here, stopped with the app) wakes the timed work: every
        ``timers.tick_seconds`` and exactly at each configured cron time. The work itself
        decides what is due from the clock and the database, so a late or repeated
        wake-up changes nothing, and what was missed while the bot was down is done now."""
        await self.ready.wait()
        cfg = self.config
        zone = ZoneInfo(cfg.timezone)
        scheduler = AsyncIOScheduler(timezone=zone)
        scheduler.add_job(
            self._timed_work,
            IntervalTrigger(seconds=cfg.timers.tick_seconds),
            max_instances=1,
            coalesce=True,
            id="tick",
        )
        crons = {
            cfg.digests.nudge_at,
            cfg.retention.run_at,
            cfg.digests.schedule.daily,
            cfg.digests.schedule.weekly,
        }
        schedules = [s.schedule for s in cfg.stations] + [d.schedule for d in cfg.districts]
        for schedule in schedules:
            if schedule is not None:
                crons |= {schedule.daily, schedule.weekly}
        for index, cron in enumerate(sorted(crons)):
            scheduler.add_job(
                self._timed_work,
                CronTrigger.from_crontab(cron, timezone=zone),
                max_instances=1,
                coalesce=True,
                id=f"cron-{index}",
            )
        scheduler.start()
        try:
            await self._timed_work()
            await asyncio.Event().wait()
        finally:
            scheduler.shutdown(wait=False)

    async def _timed_work(self) -> None:
        """Expiries and reminders, digests, nudges, retention, pruning — whatever is due."""
        async with self._timed_lock:
            try:
                async with self.transaction() as deps:
                    await notices.tick(deps)
                    await digests.run_due(deps)
                    await digests.nudge(deps)
                    await retention.nightly(deps)
                    await trust.give_up_unreadable(deps)
                    await intake_store.prune(deps.conn, deps.now_ms)
            except Exception:  # retried at the next wake-up, never fatal
                log.exception("timed work failed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def run_until_signalled(config: Config) -> None:
    """Run the app; SIGINT/SIGTERM stop it cleanly."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await App(config).run(stop)
