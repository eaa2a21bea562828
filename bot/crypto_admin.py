"""``neighborwatch crypto status|reset``: the bot's encryption identity as the server sees it,
and a deliberate rotation of its cross-signing keys."""

from __future__ import annotations

import json

from bot.app import DB_FILE
from bot.config import Config
from bot.domain.matrix_model import BotSession
from bot.matrix.gateway import MatrixGateway
from bot.store import audit, session
from bot.store.db import Database


async def crypto_command(config: Config, action: str, actor: str) -> str:
    db = await Database.open(config.data_dir / DB_FILE)
    gateway = MatrixGateway(
        config.homeserver.url,
        config.bot.user_id,
        device_name=config.bot.device_name,
        store_path=config.data_dir / "nio",
        backoff_max_s=config.sync.backoff_max_s,
        cross_signing_keys=config.e2ee.keys_file,
    )
    password = config.bot.password.get_secret_value() if config.bot.password else ""
    try:
        async with db.transaction() as conn:
            saved = await session.load(conn)
        if saved is None:
            return "the bot has not logged in yet: start it once with `neighborwatch run`"

        async def save(new: BotSession) -> None:
            async with db.transaction() as conn:
                await session.save(conn, new)

        current = await gateway.connect(saved, password, save, cross_sign=False)
        if action == "reset":
            done = await gateway.cross_signing.bootstrap(current.device_id, password, reset=True)
            async with db.transaction() as conn:
                await audit.record(conn, actor, "crypto.reset", detail={"done": done})
            return f"new cross-signing identity: {done}"
        status = await gateway.cross_signing.status(current.device_id)
        return json.dumps(status, indent=2)
    finally:
        await gateway.close()
        await db.close()
