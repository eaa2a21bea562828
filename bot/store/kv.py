"""Small key-value settings: the sync token, the transaction-id prefix, …"""

from __future__ import annotations

from bot.store.db import Connection, memoised

SYNC_TOKEN = "sync.next_batch"
TXN_PREFIX = "outbox.txn_prefix"


async def get(conn: Connection, key: str) -> str | None:
    async def load() -> str | None:
        cur = await conn.execute("SELECT value FROM kv WHERE key = ?", (key,))
        row = await cur.fetchone()
        return str(row[0]) if row else None

    return await memoised(conn, ("kv", key), load)


async def put(conn: Connection, key: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
