"""SQL for inbound messages, status callbacks and outbound message counts."""

from __future__ import annotations

from collections.abc import Sequence
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


async def insert_statuses(tx: Tx, updates: Sequence[StatusUpdate]) -> None:
    """Append status callbacks; callbacks are never merged or overwritten."""
    await tx.executemany(
        "INSERT INTO status_callbacks (provider, provider_sid, status, error_code, received_at,"
        " params_json) VALUES (?, ?, ?, ?, ?, ?)",
        [(u.provider, u.provider_sid, u.status, u.error_code, isoformat(u.received_at),
          dumps(u.params)) for u in updates])


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


#: How far along a message is, by the provider's receipts. Only these statuses move our
#: message (Twilio's queued, accepted, sending, read … are logged and change nothing), and
#: only forward: a late `sent` never overwrites `delivered`. A message given up because its
#: outcome stayed unknown ranks as `sending`: a receipt proves it went after all.
RECEIPT_RANK = {"sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}
_RANK = ("CASE WHEN status = 'failed' AND reason = 'outcome_unknown' THEN 1 ELSE CASE status"
         " WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 3"
         " WHEN 'failed' THEN 3 WHEN 'sending' THEN 1 ELSE 0 END END")


async def link_receipts(tx: Tx, receipts: Sequence[tuple[StatusUpdate, int | None]]) -> None:
    """Put receipts on our messages (named by id, else found by provider id): learn the
    provider id, move the status forward. A receipt no message of ours matches changes
    nothing here (it is in status_callbacks all the same)."""
    by_id, by_sid = [], []
    for update, outbound_id in receipts:
        rank = RECEIPT_RANK.get(update.status, 0)
        status = update.status if rank else "queued"  # never written when rank is 0
        stamp = isoformat(update.received_at)
        values = (rank, status, rank, update.error_code, rank, stamp, stamp)
        if outbound_id is not None:
            by_id.append((update.provider, update.provider_sid, *values, outbound_id,
                          update.provider_sid))
        else:
            by_sid.append((*values, update.provider, update.provider_sid))
    sets = (f"status = CASE WHEN {_RANK} < ? THEN ? ELSE status END,"
            f" error_code = CASE WHEN {_RANK} < ? THEN ? ELSE error_code END,"
            f" next_attempt_at = CASE WHEN {_RANK} < ? THEN NULL ELSE next_attempt_at END,"
            f" sent_at = COALESCE(sent_at, ?), updated_at = ?")
    if by_id:
        await tx.executemany(
            f"UPDATE outbound_messages SET provider = ?, provider_sid = ?, {sets}"
            f" WHERE id = ? AND (provider_sid IS NULL OR provider_sid = ?)", by_id)
    if by_sid:
        await tx.executemany(
            f"UPDATE outbound_messages SET {sets} WHERE provider = ? AND provider_sid = ?",
            by_sid)


async def outbound_counts(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, COUNT(*) FROM outbound_messages GROUP BY status")
    return {row[0]: int(row[1]) for row in rows}
