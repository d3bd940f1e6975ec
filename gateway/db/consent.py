"""SQL for the consent ledger, the derived status, the review list and send history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx, dumps, marks

_EVENT_COLUMNS = ("id, phone, program_id, kind, source, occurred_at, inbound_sid,"
                  " inbound_text, reply_text, evidence_json")


async def insert_event(tx: Tx, *, phone: str, program_id: str, kind: str, source: str,
                       occurred_at: datetime, inbound_sid: str | None,
                       inbound_text: str | None, reply_text: str | None,
                       evidence: dict[str, Any]) -> int:
    return await tx.execute(
        "INSERT INTO consent_events (phone, program_id, kind, source, occurred_at, inbound_sid,"
        " inbound_text, reply_text, evidence_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (phone, program_id, kind, source, isoformat(occurred_at), inbound_sid, inbound_text,
         reply_text, dumps(evidence)))


async def get_status(db: Database | Tx, phone: str, program_id: str) -> Row | None:
    return await db.fetchone("SELECT * FROM consent_status WHERE phone = ? AND program_id = ?",
                             (phone, program_id))


async def statuses(db: Database | Tx, phone: str) -> list[Row]:
    return await db.fetchall("SELECT * FROM consent_status WHERE phone = ? ORDER BY program_id",
                             (phone,))


async def put_status(tx: Tx, *, phone: str, program_id: str, status: str, since: str,
                     last_event_id: int, opt_in_event_id: int | None,
                     pending_until: str | None) -> None:
    await tx.execute(
        "INSERT INTO consent_status (phone, program_id, status, since, last_event_id,"
        " opt_in_event_id, pending_until) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (phone, program_id) DO UPDATE SET status = excluded.status,"
        " since = excluded.since, last_event_id = excluded.last_event_id,"
        " opt_in_event_id = excluded.opt_in_event_id, pending_until = excluded.pending_until",
        (phone, program_id, status, since, last_event_id, opt_in_event_id, pending_until))


async def events_for(db: Database | Tx, phone: str) -> list[Row]:
    return await db.fetchall(
        f"SELECT {_EVENT_COLUMNS} FROM consent_events WHERE phone = ? ORDER BY id", (phone,))


async def all_events(db: Database | Tx, after_id: int, limit: int) -> list[Row]:
    return await db.fetchall(f"SELECT {_EVENT_COLUMNS} FROM consent_events WHERE id > ?"
                             " ORDER BY id LIMIT ?", (after_id, limit))


async def program_events(db: Database, program_id: str | None, since: datetime | None,
                         after_id: int, limit: int) -> list[Row]:
    where, params = ["id > ?"], [after_id]
    if program_id:
        where.append("program_id = ?")
        params.append(program_id)
    if since:
        where.append("occurred_at >= ?")
        params.append(isoformat(since))
    return await db.fetchall(f"SELECT {_EVENT_COLUMNS} FROM consent_events WHERE "
                             f"{' AND '.join(where)} ORDER BY id LIMIT ?", (*params, limit))


async def clear_status(tx: Tx) -> None:
    await tx.execute("DELETE FROM consent_status")


async def all_status(db: Database | Tx) -> list[Row]:
    return await db.fetchall("SELECT * FROM consent_status ORDER BY phone, program_id")


async def add_review(tx: Tx, *, phone: str, short_code: str, inbound_sid: str | None,
                     text: str, rule: str, at: datetime) -> int:
    return await tx.execute(
        "INSERT INTO consent_review (phone, short_code, inbound_sid, text, rule, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", (phone, short_code, inbound_sid, text, rule,
                                       isoformat(at)))


async def open_reviews(db: Database, after_id: int, limit: int) -> list[Row]:
    return await db.fetchall("SELECT * FROM consent_review WHERE resolved_at IS NULL AND id > ?"
                             " ORDER BY id LIMIT ?", (after_id, limit))


async def get_review(db: Database | Tx, review_id: int) -> Row | None:
    return await db.fetchone("SELECT * FROM consent_review WHERE id = ?", (review_id,))


async def resolve_review(tx: Tx, review_id: int, resolution: str, at: datetime) -> bool:
    """Close a review item once; False when it was closed already."""
    return await tx.update(
        "UPDATE consent_review SET resolved_at = ?, resolution = ? WHERE id = ?"
        " AND resolved_at IS NULL", (isoformat(at), resolution, review_id)) > 0


#: A marketing message counts against the caps from the moment it is handed to the provider
#: (inline replies have only sent_at), unless it never went.
_SENT = "COALESCE(sending_at, sent_at)"
_COUNTED = "status NOT IN ('queued', 'deferred', 'cancelled', 'expired', 'failed')"


async def statuses_many(db: Database | Tx, phones: Sequence[str]) -> list[Row]:
    return await db.fetchall(
        f"SELECT * FROM consent_status WHERE phone IN ({marks(phones)})", tuple(phones))


async def marketing_sends_many(db: Database | Tx, phones: Sequence[str], since: datetime
                               ) -> list[Row]:
    """(phone, program, sent_at) of marketing messages to any of `phones` since `since`."""
    return await db.fetchall(
        f"SELECT to_number, program_id, {_SENT} AS at FROM outbound_messages"
        f" WHERE to_number IN ({marks(phones)}) AND purpose = 'marketing' AND {_COUNTED}"
        f" AND {_SENT} >= ? ORDER BY at", (*phones, isoformat(since)))


async def marketing_messages(db: Database | Tx, phone: str) -> list[Row]:
    """Marketing messages to `phone`, each with the opt-in event that allowed it."""
    return await db.fetchall(
        "SELECT id, program_id, status, created_at, sent_at, consent_event_id"
        " FROM outbound_messages WHERE to_number = ? AND purpose = 'marketing' ORDER BY id",
        (phone,))


async def redact(tx: Tx, phone: str) -> None:
    """Erasure: blank the personal text of the ledger's events; what happened stays."""
    await tx.execute("UPDATE consent_events SET inbound_text = NULL, reply_text = NULL,"
                     " evidence_json = '{\"redacted\":true}' WHERE phone = ?", (phone,))
    await tx.execute("UPDATE consent_review SET text = '' WHERE phone = ?", (phone,))

