"""SQL for the CRM sync outbox: the next batch, outcomes, dead letters, status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx


async def next_batch(db: Database, endpoint: str, limit: int) -> list[Row]:
    """The oldest pending events for `endpoint`, in the order they happened."""
    return await db.fetchall(
        "SELECT o.id, o.attempts, o.enqueued_at, e.event_id, e.phone, e.seq, e.type,"
        " e.occurred_at, e.data_json"
        " FROM sync_outbox o JOIN profile_events e ON e.id = o.event_ref"
        " WHERE o.endpoint = ? AND o.state = 'pending' ORDER BY o.id LIMIT ?",
        (endpoint, limit))


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


async def mark_delivered(tx: Tx, ids: Sequence[int], now: datetime) -> None:
    await tx.execute(
        f"UPDATE sync_outbox SET state = 'delivered', attempts = attempts + 1,"
        f" delivered_at = ?, last_error = NULL WHERE state = 'pending' AND id IN ({_marks(ids)})",
        (isoformat(now), *ids))


async def mark_failed(tx: Tx, ids: Sequence[int], error: str, next_at: datetime,
                      dead_before: datetime) -> int:
    """Record a failed attempt; events enqueued before `dead_before` become dead letters."""
    await tx.execute(
        f"UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
        f" WHERE state = 'pending' AND id IN ({_marks(ids)})",
        (error, isoformat(next_at), *ids))
    return await tx.update(
        f"UPDATE sync_outbox SET state = 'dead' WHERE state = 'pending' AND enqueued_at < ?"
        f" AND id IN ({_marks(ids)})", (isoformat(dead_before), *ids))


async def status(db: Database, endpoint: str) -> Row | None:
    return await db.fetchone(
        "SELECT"
        " (SELECT COUNT(*) FROM sync_outbox WHERE endpoint = ?1 AND state = 'pending'),"
        " (SELECT MIN(enqueued_at) FROM sync_outbox WHERE endpoint = ?1 AND state = 'pending'),"
        " (SELECT COUNT(*) FROM sync_outbox WHERE endpoint = ?1 AND state = 'dead'),"
        " (SELECT last_error FROM sync_outbox WHERE endpoint = ?1 AND last_error IS NOT NULL"
        "  AND state != 'delivered' ORDER BY id DESC LIMIT 1)", (endpoint,))


async def dead_letters(db: Database, endpoint: str | None, after_id: int, limit: int
                       ) -> list[Row]:
    where, params = ("AND o.endpoint = ?", [endpoint]) if endpoint else ("", [])
    return await db.fetchall(
        "SELECT o.id, o.endpoint, o.attempts, o.enqueued_at, o.last_error, e.event_id,"
        " e.phone, e.type, e.occurred_at FROM sync_outbox o"
        " JOIN profile_events e ON e.id = o.event_ref"
        f" WHERE o.state = 'dead' AND o.id > ? {where} ORDER BY o.id LIMIT ?",
        (after_id, *params, limit))


async def replay(tx: Tx, endpoint: str | None, ids: Sequence[int] | None,
                 now: datetime) -> int:
    """Dead letters back to pending, with a fresh maximum age."""
    where, params = "", []
    if endpoint:
        where += " AND endpoint = ?"
        params.append(endpoint)
    if ids:
        where += f" AND id IN ({_marks(ids)})"
        params.extend(ids)
    return await tx.update(
        "UPDATE sync_outbox SET state = 'pending', attempts = 0, last_error = NULL,"
        f" enqueued_at = ?, next_attempt_at = ? WHERE state = 'dead'{where}",
        (isoformat(now), isoformat(now), *params))
