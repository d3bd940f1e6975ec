"""SQL for inbound messages, status callbacks and outbound message counts."""

from __future__ import annotations

from datetime import datetime

from gateway.clock import isoformat
from gateway.db import Database, Tx, dumps
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
         dumps(msg.params)))
    return rowid or None


async def insert_status(tx: Tx, update: StatusUpdate) -> int:
    """Append one status callback; callbacks are never merged or overwritten."""
    return await tx.execute(
        "INSERT INTO status_callbacks (provider, provider_sid, status, error_code, received_at,"
        " params_json) VALUES (?, ?, ?, ?, ?, ?)",
        (update.provider, update.provider_sid, update.status, update.error_code,
         isoformat(update.received_at),
         dumps(update.params)))


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


async def inline_replies(db: Database | Tx, provider: str, provider_sid: str
                         ) -> list[tuple[int, str]]:
    """(id, body) of the replies given to an inbound message, to answer a retry the same."""
    rows = await db.fetchall(
        "SELECT o.id, o.body FROM outbound_messages o"
        " JOIN inbound_messages i ON i.id = o.in_reply_to"
        " WHERE i.provider = ? AND i.provider_sid = ? ORDER BY o.id", (provider, provider_sid))
    return [(r[0], r[1]) for r in rows]


#: How far along a message is; a receipt never moves one back (a late `sent` after
#: `delivered` changes nothing).
STATUS_RANK = {"queued": 0, "deferred": 0, "sending": 1, "accepted": 1, "sent": 2,
               "delivered": 3, "read": 4, "undelivered": 3, "failed": 3}


async def link_receipt(tx: Tx, outbound_id: int, provider: str, provider_sid: str,
                       status: str, error_code: str | None, at: datetime) -> bool:
    """A receipt for one of our messages: learn its provider id, move its status forward."""
    row = await tx.fetchone("SELECT status, provider_sid FROM outbound_messages WHERE id = ?",
                            (outbound_id,))
    if row is None or (row["provider_sid"] and row["provider_sid"] != provider_sid):
        return False
    forward = STATUS_RANK.get(status, -1) > STATUS_RANK.get(row["status"], -1)
    await tx.execute(
        "UPDATE outbound_messages SET provider = ?, provider_sid = ?,"
        " status = CASE WHEN ? THEN ? ELSE status END,"
        " error_code = CASE WHEN ? THEN ? ELSE error_code END, updated_at = ? WHERE id = ?",
        (provider, provider_sid, forward, status, forward, error_code, isoformat(at),
         outbound_id))
    return True


async def outbound_counts(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, COUNT(*) FROM outbound_messages GROUP BY status")
    return {row[0]: int(row[1]) for row in rows}
