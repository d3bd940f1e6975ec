"""SQL for inbound messages, status callbacks and outbound message counts."""

from __future__ import annotations

import json
from datetime import datetime

from gateway.clock import isoformat
from gateway.db import Database, Tx
from gateway.models import InboundMessage, StatusUpdate

QUEUED_STATUSES = ("queued", "deferred", "sending")


async def insert_inbound(tx: Tx, msg: InboundMessage) -> int | None:
    """Store `msg`; returns its row id, or None when this provider sid was stored before."""
    rowid = await tx.execute(
        "INSERT INTO inbound_messages (provider, provider_sid, from_number, to_number, body,"
        " num_segments, received_at, params_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (provider, provider_sid) DO NOTHING",
        (msg.provider, msg.provider_sid, msg.from_number, msg.to_number, msg.body,
         msg.num_segments, isoformat(msg.received_at),
         json.dumps(msg.params, ensure_ascii=False, sort_keys=True)))
    return rowid or None


async def insert_status(tx: Tx, update: StatusUpdate) -> int:
    """Append one status callback; callbacks are never merged or overwritten."""
    return await tx.execute(
        "INSERT INTO status_callbacks (provider, provider_sid, status, error_code, received_at,"
        " params_json) VALUES (?, ?, ?, ?, ?, ?)",
        (update.provider, update.provider_sid, update.status, update.error_code,
         isoformat(update.received_at),
         json.dumps(update.params, ensure_ascii=False, sort_keys=True)))


async def insert_inline_reply(tx: Tx, *, inbound_id: int, from_number: str, to_number: str,
                              body: str, program_id: str | None, at: datetime) -> int:
    """A reply handed to the provider in the webhook's own answer (TwiML): sent with it."""
    stamp = isoformat(at)
    return await tx.execute(
        "INSERT INTO outbound_messages (from_number, to_number, body, status, provider,"
        " created_at, updated_at, program_id, purpose, sent_at, in_reply_to)"
        " VALUES (?, ?, ?, 'sent', 'inline', ?, ?, ?, 'reply', ?, ?)",
        (from_number, to_number, body, stamp, stamp, program_id, stamp, inbound_id))


async def queue_message(tx: Tx, *, from_number: str, to_number: str, body: str,
                        program_id: str | None, purpose: str, at: datetime) -> int:
    """A message for the outbound pipeline to send (consent-checked when it goes)."""
    stamp = isoformat(at)
    return await tx.execute(
        "INSERT INTO outbound_messages (from_number, to_number, body, status, created_at,"
        " updated_at, program_id, purpose) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
        (from_number, to_number, body, stamp, stamp, program_id, purpose))


async def inline_replies(db: Database | Tx, provider: str, provider_sid: str) -> list[str]:
    """The replies given to an inbound message, for answering a retried webhook the same."""
    rows = await db.fetchall(
        "SELECT o.body FROM outbound_messages o JOIN inbound_messages i ON i.id = o.in_reply_to"
        " WHERE i.provider = ? AND i.provider_sid = ? ORDER BY o.id", (provider, provider_sid))
    return [r[0] for r in rows]


async def outbound_counts(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, COUNT(*) FROM outbound_messages GROUP BY status")
    return {row[0]: int(row[1]) for row in rows}


async def queue_depth(db: Database) -> int:
    marks = ",".join("?" * len(QUEUED_STATUSES))
    row = await db.fetchone(
        f"SELECT COUNT(*) FROM outbound_messages WHERE status IN ({marks})", QUEUED_STATUSES)
    return int(row[0]) if row else 0
