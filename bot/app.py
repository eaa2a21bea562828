"""Composition root: builds the database, the Matrix gateway, the pipeline and the outbox
worker from the config, and owns their start and stop."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from bot.commands import CommandRegistry
from bot.config import Config
from bot.delivery import OutboxWorker, txn_prefix
from bot.domain.backoff import Backoff
from bot.domain.matrix_model import BotSession, Invite, SyncBatch
from bot.features import basics
from bot.features.ports import RuntimeInfo
from bot.matrix.gateway import MatrixGateway
from bot.pipeline import EventPipeline
from bot.store import kv, session
from bot.store.db import Database

log = logging.getLogger(__name__)

DB_FILE = "neighborwatch.db"
JOIN_ATTEMPTS = 6
SHUTDOWN_DRAIN_S = 3.0


def build_registry() -> CommandRegistry:
    registry = CommandRegistry()
    basics.register(registry)
    return registry


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime = RuntimeInfo(homeserver=config.homeserver.url, started_at=time.time())
        self.ready = asyncio.Event()
        self._password = config.bot.password.get_secret_value() if config.bot.password else ""
        self._db: Database | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or a component fails); always closes what it opened."""
        cfg = self.config
        db = await Database.open(cfg.data_dir / DB_FILE)
        self._db = db
        gateway = MatrixGateway(
            cfg.homeserver.url,
            cfg.bot.user_id,
            device_name=cfg.bot.device_name,
            store_path=cfg.data_dir / "nio",
            timeline_limit=cfg.sync.timeline_limit,
            sync_timeout_ms=cfg.sync.timeout_ms,
            backoff_max_s=cfg.sync.backoff_max_s,
        )
        try:
            async with db.transaction() as conn:
                saved = await session.load(conn)
                since = await kv.get(conn, kv.SYNC_TOKEN)
            await gateway.connect(saved, self._password, self._save_session)
            worker = OutboxWorker(
                db,
                gateway,
                prefix=await txn_prefix(db),
                concurrency=cfg.outbox.concurrency,
                max_attempts=cfg.outbox.max_attempts,
                backoff_max_s=cfg.sync.backoff_max_s,
            )
            pipeline = EventPipeline(
                db,
                build_registry(),
                self.runtime,
                prefix=cfg.command_prefix,
                language=cfg.language,
                officers=cfg.officers(),
                supervisors=cfg.supervisors(),
            )
            tasks = {
                asyncio.create_task(worker.run(), name="outbox"),
                asyncio.create_task(self._sync_loop(gateway, pipeline, worker, since), name="sync"),
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
        assert self._db is not None
        async with self._db.transaction() as conn:
            await session.save(conn, new)

    async def _sync_loop(
        self,
        gateway: MatrixGateway,
        pipeline: EventPipeline,
        worker: OutboxWorker,
        since: str | None,
    ) -> None:
        async def relogin() -> None:
            await self._save_session(await gateway.relogin(self._password))

        async for batch in gateway.batches(since, relogin=relogin):
            await self._process(batch, pipeline, worker, gateway)
            self.runtime.last_sync_at = time.time()
            if not self.ready.is_set():
                self.ready.set()
                print(
                    f"neighborwatch ready: {gateway.user_id} on {gateway.homeserver}",
                    flush=True,
                )

    async def _process(
        self,
        batch: SyncBatch,
        pipeline: EventPipeline,
        worker: OutboxWorker,
        gateway: MatrixGateway,
    ) -> None:
        handled = 0
        for event in batch.events:
            if await pipeline.handle(event):
                handled += 1
                worker.wake()
        # The token is saved only after every event of the batch is committed.
        assert self._db is not None
        async with self._db.transaction() as conn:
            await kv.put(conn, kv.SYNC_TOKEN, batch.next_batch)
        if handled:
            log.debug("batch: %d events, %d handled", len(batch.events), handled)
        for invite in batch.invites:
            self._spawn(self._accept_invite(gateway, invite))

    async def _accept_invite(self, gateway: MatrixGateway, invite: Invite) -> None:
        backoff = Backoff(cap=self.config.sync.backoff_max_s)
        for _ in range(JOIN_ATTEMPTS):
            if await gateway.join(invite.room_id):
                return
            await asyncio.sleep(backoff.next_delay())
        log.error("could not join %s (invited by %s)", invite.room_id, invite.inviter)

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
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
