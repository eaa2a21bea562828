"""Retention: cases closed longer than the configured period are anonymised, nightly.

Reporter identity, the report's text, identifiers, notes and attachments are
removed; number, category, place, dates, statuses and the audit trail stay, so
statistics and digests keep adding up. Dry run: count and report, change nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from bot.domain.digest import last_fire
from bot.features.context import Deps
from bot.store import digests

DAY_MS = 86_400_000


async def anonymise(deps: Deps, *, dry_run: bool) -> int:
    """Anonymise what is due now; returns how many cases (would) change."""
    cutoff = deps.now_ms - deps.config.retention.closed_case_days * DAY_MS
    cur = await deps.conn.execute(
        "SELECT id FROM cases WHERE closed_at IS NOT NULL AND closed_at < ?"
        " AND anonymised_at IS NULL AND status IN ('solved', 'referred', 'unfounded', 'duplicate')",
        (cutoff,),
    )
    ids = [int(r[0]) for r in await cur.fetchall()]
    if dry_run or not ids:
        return len(ids)
    for case_id in ids:
        await deps.conn.execute(
            "UPDATE cases SET reporter = NULL, reporter_name = NULL, text = '', identifiers = '[]',"
            " text_truncated = 0, anonymised_at = ? WHERE id = ?",
            (deps.now_ms, case_id),
        )
        await deps.conn.execute("UPDATE case_events SET note = NULL WHERE case_id = ?", (case_id,))
        await deps.conn.execute("DELETE FROM case_attachments WHERE case_id = ?", (case_id,))
        await deps.conn.execute("DELETE FROM case_messages WHERE case_id = ?", (case_id,))
        await deps.conn.execute(
            "UPDATE category_corrections SET text = '' WHERE case_id = ?", (case_id,)
        )
        await deps.conn.execute(
            "UPDATE relay_questions SET question = '' WHERE case_id = ?", (case_id,)
        )
    return len(ids)


async def nightly(deps: Deps) -> int | None:
    """The scheduled run, once per firing; None when it is not time."""
    policy = deps.config.retention
    zone = ZoneInfo(deps.config.timezone)
    fired = last_fire(policy.run_at, zone, dt.datetime.fromtimestamp(deps.now_ms / 1000, zone))
    if fired is None:
        return None
    fired_ms = int(fired.timestamp() * 1000)
    count = await anonymise(deps, dry_run=True)
    detail = json.dumps({"at": fired.isoformat(), "count": count, "dry_run": policy.dry_run})
    if not await digests.claim_job(deps.conn, "retention", fired_ms, detail):
        return None
    if not policy.dry_run:
        count = await anonymise(deps, dry_run=False)
    await deps.audit.record(
        deps.bot_id, "retention.run", detail={"count": count, "dry_run": policy.dry_run}
    )
    return count
