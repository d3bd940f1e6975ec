"""SQL for the outbound pipeline: queue, claim, outcomes, the delivery log and its queries.

Hot-path functions take whole batches and run one statement per batch (executemany), since
each statement is a trip to the database thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx, dumps, marks

#: Statuses a message can still leave; the others are final (receipts aside).
PENDING = ("queued", "deferred", "sending")

COLUMNS = ("id, from_number, to_number, body, status, provider, provider_sid, error_code,"
           " error_message, created_at, updated_at, program_id, purpose, sent_at,"
           " consent_event_id, in_reply_to, encoding, segments, priority, attempts,"
           " next_attempt_at, expires_at, sending_at, campaign_id, reason")


async def insert_many(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Queue rows of (from, to, body, program, purpose, encoding, segments, priority,
    campaign, created, expires, not_before, fixed_expiry); returns their ids, in order."""
    before = await tx.fetchone("SELECT COALESCE(MAX(id), 0) FROM outbound_messages")
    await tx.executemany(
        "INSERT INTO outbound_messages (from_number, to_number, body, program_id, purpose,"
        " encoding, segments, priority, campaign_id, created_at, updated_at, expires_at,"
        " next_attempt_at, fixed_expiry, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row[:10], row[9], row[10], row[11], row[12], "deferred" if row[11] else "queued")
         for row in rows])
    first = int(before[0]) + 1 if before else 1  # type: ignore[index]
    ids = list(range(first, first + len(rows)))
    await add_events(tx, [(i, row[9], "queued", "deferred" if row[11] else "queued", None,
                           None) for i, row in zip(ids, rows, strict=True)])
    return ids


async def add_events(tx: Tx, events: Sequence[tuple[int, str, str, str, str | None,
                                                   str | None]]) -> None:
    """Append (message id, time, event, status, error code, detail) to the delivery log."""
    if events:
        await tx.executemany(
            "INSERT INTO outbound_events (outbound_id, at, event, status, error_code, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)", events)


async def release_due(tx: Tx, from_number: str, now: datetime) -> int:
    """Messages whose wait (back-off, quiet hours, cap) is over become ready again."""
    return await tx.update(
        "UPDATE outbound_messages SET status = 'queued', next_attempt_at = NULL"
        " WHERE from_number = ? AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?"
        " AND status IN ('queued', 'deferred')", (from_number, isoformat(now)))


async def ready(tx: Tx, from_number: str, limit: int) -> list[Row]:
    return await tx.fetchall(
        "SELECT id, to_number, body, program_id, purpose, segments, expires_at, attempts,"
        " created_at, fixed_expiry, campaign_id FROM outbound_messages WHERE from_number = ?"
        " AND status = 'queued'"
        " AND next_attempt_at IS NULL ORDER BY priority, id LIMIT ?", (from_number, limit))


async def set_sending(tx: Tx, rows: Sequence[tuple[str, int | None, int]]) -> None:
    """(time, opt-in event, id): handed to the dispatcher, about to go to the provider."""
    await tx.executemany(
        "UPDATE outbound_messages SET status = 'sending', attempts = attempts + 1,"
        " sending_at = ?1, updated_at = ?1, consent_event_id = ?2, reason = NULL"
        " WHERE id = ?3", rows)


async def set_waiting(tx: Tx, rows: Sequence[tuple[str, str, str | None, str | None,
                                                  str | None, str, int]]) -> None:
    """(status, reason, next attempt, error code, error message, time, id): not now."""
    await tx.executemany(
        "UPDATE outbound_messages SET status = ?, reason = ?, next_attempt_at = ?,"
        " error_code = COALESCE(?, error_code), error_message = COALESCE(?, error_message),"
        " updated_at = ? WHERE id = ?", rows)


async def set_expiry(tx: Tx, rows: Sequence[tuple[str, int]]) -> None:
    """(new expiry, id): a deferral moved the default validity window on."""
    await tx.executemany("UPDATE outbound_messages SET expires_at = ? WHERE id = ?", rows)


async def set_final(tx: Tx, rows: Sequence[tuple[str, str | None, str | None, str | None,
                                                str, int]]) -> None:
    """(status, reason, error code, error message, time, id): failed, cancelled, expired."""
    await tx.executemany(
        "UPDATE outbound_messages SET status = ?, reason = ?, error_code = ?,"
        " error_message = ?, next_attempt_at = NULL, updated_at = ? WHERE id = ?", rows)


async def set_sent(tx: Tx, rows: Sequence[tuple[str, str, int | None, str, str | None, int]]
                   ) -> None:
    """(provider, provider id, segments, time, receipt check time, id): accepted. A receipt
    that came first (sent, delivered) is kept: the status only moves forward."""
    await tx.executemany(
        f"UPDATE outbound_messages SET provider = ?1, provider_sid = ?2,"
        f" segments = COALESCE(?3, segments), sent_at = ?4, updated_at = ?4,"
        f" next_attempt_at = NULL, error_code = NULL, error_message = NULL, reason = NULL,"
        f" receipt_check_at = ?5,"
        f" status = CASE WHEN status IN {PENDING} THEN 'sent' ELSE status END WHERE id = ?6",
        rows)


async def set_reconcile(tx: Tx, rows: Sequence[tuple[str, str | None, str | None, str, int,
                                                    int]]) -> None:
    """(look-up time, error code, error message, time, look-ups tried now (0 or 1), id):
    outcome unknown, stays sending."""
    await tx.executemany(
        "UPDATE outbound_messages SET next_attempt_at = ?, error_code = ?, error_message = ?,"
        " updated_at = ?, lookups = lookups + ? WHERE id = ? AND status = 'sending'", rows)


async def release_retries(tx: Tx, from_number: str, now: datetime) -> int:
    """The provider is back: messages backing off after a failed send may go now."""
    return await tx.update(
        "UPDATE outbound_messages SET next_attempt_at = ? WHERE from_number = ?"
        " AND status = 'queued' AND reason = 'retry' AND next_attempt_at > ?",
        (isoformat(now), from_number, isoformat(now)))


async def release_next_retry(tx: Tx, from_number: str, now: datetime) -> int:
    """The provider is down and nothing else is ready: the message that backs off the
    longest goes now, as the probe (1: one was found)."""
    return await tx.update(
        "UPDATE outbound_messages SET next_attempt_at = ?1 WHERE id = (SELECT id"
        " FROM outbound_messages WHERE from_number = ?2 AND status = 'queued'"
        " AND reason = 'retry' AND next_attempt_at > ?1 ORDER BY next_attempt_at LIMIT 1)",
        (isoformat(now), from_number))


async def release_lookups(tx: Tx, from_number: str, now: datetime) -> int:
    """Look-ups are answered again: those backing off after a failed look-up go now (not
    those still giving the provider time to finish a request)."""
    return await tx.update(
        "UPDATE outbound_messages SET next_attempt_at = ? WHERE from_number = ?"
        " AND status = 'sending' AND lookups > 0 AND next_attempt_at > ?",
        (isoformat(now), from_number, isoformat(now)))


async def orphaned_sending(tx: Tx, from_number: str, at: datetime) -> int:
    """After a restart: every message caught in `sending` gets looked up at `at`."""
    return await tx.update(
        "UPDATE outbound_messages SET next_attempt_at = ? WHERE from_number = ?"
        " AND status = 'sending' AND next_attempt_at IS NULL", (isoformat(at), from_number))


async def due_lookups(db: Database | Tx, from_number: str, now: datetime, limit: int
                      ) -> list[Row]:
    return await db.fetchall(
        "SELECT id, to_number, body, program_id, purpose, segments, expires_at, attempts,"
        " sending_at, created_at, lookups, campaign_id FROM outbound_messages"
        " WHERE from_number = ?"
        " AND status = 'sending' AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT ?", (from_number, isoformat(now), limit))


async def next_failed_lookup(db: Database | Tx, from_number: str) -> Row | None:
    """While look-ups are down: the message whose failed look-up is next, as the probe."""
    return await db.fetchone(
        "SELECT id, to_number, body, program_id, purpose, segments, expires_at, attempts,"
        " sending_at, created_at, lookups, campaign_id FROM outbound_messages"
        " WHERE from_number = ? AND status = 'sending' AND next_attempt_at IS NOT NULL"
        " AND lookups > 0 ORDER BY next_attempt_at LIMIT 1", (from_number,))


async def due_receipts(db: Database, from_number: str, now: datetime, limit: int
                       ) -> list[Row]:
    """Sent, no final receipt, and its status check is due."""
    return await db.fetchall(
        "SELECT id, to_number, from_number, provider, provider_sid, sent_at, receipt_checks"
        " FROM outbound_messages"
        " WHERE from_number = ? AND status = 'sent' AND receipt_check_at IS NOT NULL"
        " AND receipt_check_at <= ? ORDER BY receipt_check_at LIMIT ?",
        (from_number, isoformat(now), limit))


async def set_receipt_checks(tx: Tx, rows: Sequence[tuple[str | None, int]]) -> None:
    """(next check or None to stop checking, id): a status fetch that found nothing final."""
    await tx.executemany(
        "UPDATE outbound_messages SET receipt_check_at = ?, receipt_checks = receipt_checks + 1"
        " WHERE id = ?", rows)


async def awaiting_receipts(db: Database) -> dict[str, int]:
    """Per short code: messages sent and still waiting for a final status."""
    rows = await db.fetchall(
        "SELECT from_number, COUNT(*) FROM outbound_messages WHERE status = 'sent'"
        " AND receipt_check_at IS NOT NULL GROUP BY from_number")
    return {r[0]: int(r[1]) for r in rows}


async def known_sids(db: Database | Tx, provider: str, sids: Sequence[str]) -> set[str]:
    if not sids:
        return set()
    rows = await db.fetchall(
        f"SELECT provider_sid FROM outbound_messages WHERE provider = ?"
        f" AND provider_sid IN ({marks(sids)})", (provider, *sids))
    return {r[0] for r in rows}


async def depth(db: Database) -> list[Row]:
    """(short code, status, messages, segments) of everything not yet handed over."""
    return await db.fetchall(
        "SELECT from_number, status, COUNT(*), COALESCE(SUM(segments), 0)"
        " FROM outbound_messages WHERE status IN ('queued', 'deferred', 'sending')"
        " GROUP BY from_number, status")


async def get(db: Database | Tx, message_id: int) -> Row | None:
    return await db.fetchone(f"SELECT {COLUMNS} FROM outbound_messages WHERE id = ?",
                             (message_id,))


async def events(db: Database | Tx, message_id: int) -> list[Row]:
    return await db.fetchall("SELECT at, event, status, error_code, detail FROM outbound_events"
                             " WHERE outbound_id = ? ORDER BY id", (message_id,))


async def receipts(db: Database | Tx, provider: str, provider_sid: str) -> list[Row]:
    return await db.fetchall(
        "SELECT received_at, status, error_code, params_json FROM status_callbacks"
        " WHERE provider = ? AND provider_sid = ? ORDER BY id", (provider, provider_sid))


async def search(db: Database, *, phone: str | None, campaign: str | None,
                 status: str | None, since: datetime | None, after_id: int, limit: int
                 ) -> list[Row]:
    """The delivery log, newest first, from `after_id` down (0: from the newest)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("to_number", phone), ("campaign_id", campaign),
                          ("status", status)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if since:
        where.append("created_at >= ?")
        params.append(isoformat(since))
    if after_id:
        where.append("id < ?")
        params.append(after_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return await db.fetchall(f"SELECT {COLUMNS} FROM outbound_messages{clause}"
                             f" ORDER BY id DESC LIMIT ?", (*params, limit))


async def log_after(db: Database, event_id: int, receipt_id: int, limit: int
                    ) -> tuple[list[Row], list[Row]]:
    """The delivery log after two cursors (`messages tail`): pipeline events, and provider
    receipts (with the message they belong to, when it is ours)."""
    events = await db.fetchall(
        "SELECT e.id, e.outbound_id, e.at, e.event, e.status, e.error_code, e.detail,"
        " o.to_number FROM outbound_events e JOIN outbound_messages o ON o.id = e.outbound_id"
        " WHERE e.id > ? ORDER BY e.id LIMIT ?", (event_id, limit))
    receipts = await db.fetchall(
        "SELECT s.id, o.id AS outbound_id, s.received_at AS at, s.status, s.error_code,"
        " s.provider_sid, o.to_number FROM status_callbacks s LEFT JOIN outbound_messages o"
        " ON o.provider = s.provider AND o.provider_sid = s.provider_sid"
        " WHERE s.id > ? ORDER BY s.id LIMIT ?", (receipt_id, limit))
    return events, receipts


async def last_ids(db: Database) -> tuple[int, int]:
    row = await db.fetchone("SELECT (SELECT COALESCE(MAX(id), 0) FROM outbound_events),"
                            " (SELECT COALESCE(MAX(id), 0) FROM status_callbacks)")
    return (int(row[0]), int(row[1])) if row else (0, 0)


def detail(**fields: Any) -> str | None:
    kept = {k: v for k, v in fields.items() if v is not None}
    return dumps(kept) if kept else None
