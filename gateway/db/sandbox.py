"""SQL for the sandbox provider's carrier-side store."""

from __future__ import annotations

from datetime import datetime

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx


async def insert_message(tx: Tx, *, sid: str, from_number: str, to_number: str, body: str,
                         status_callback: str | None, now: datetime,
                         first_receipt_at: datetime) -> None:
    await tx.execute(
        "INSERT INTO sandbox_messages (sid, from_number, to_number, body, status,"
        " status_callback, created_at, updated_at, next_receipt_at)"
        " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        (sid, from_number, to_number, body, status_callback, isoformat(now), isoformat(now),
         isoformat(first_receipt_at)))


async def due_receipts(db: Database, now: datetime, limit: int) -> list[Row]:
    return await db.fetchall(
        "SELECT sid, to_number, status, status_callback FROM sandbox_messages"
        " WHERE next_receipt_at IS NOT NULL AND next_receipt_at <= ?"
        " ORDER BY next_receipt_at LIMIT ?", (isoformat(now), limit))


async def next_receipt_at(db: Database) -> datetime | None:
    row = await db.fetchone(
        "SELECT MIN(next_receipt_at) FROM sandbox_messages WHERE next_receipt_at IS NOT NULL")
    return datetime.fromisoformat(row[0]) if row and row[0] else None


async def advance_status(tx: Tx, *, sid: str, old: str, new: str, error_code: str | None,
                         now: datetime, next_at: datetime | None) -> bool:
    """Move one message on; False when it was no longer in `old` (already advanced)."""
    changed = await tx.update(
        "UPDATE sandbox_messages SET status = ?, error_code = ?, updated_at = ?,"
        " next_receipt_at = ? WHERE sid = ? AND status = ?",
        (new, error_code, isoformat(now), isoformat(next_at) if next_at else None, sid, old))
    return changed > 0


async def list_messages(db: Database, *, to_number: str | None, limit: int) -> list[Row]:
    where, params = "", []
    if to_number:
        where, params = " WHERE to_number = ?", [to_number]
    return await db.fetchall(
        "SELECT sid, from_number, to_number, body, status, error_code, created_at, updated_at"
        f" FROM sandbox_messages{where} ORDER BY created_at DESC, sid LIMIT ?",
        (*params, limit))


async def find(db: Database, from_number: str, to_number: str, since: datetime) -> list[Row]:
    return await db.fetchall(
        "SELECT sid, from_number, to_number, body, status, created_at FROM sandbox_messages"
        " WHERE to_number = ? AND from_number = ? AND created_at >= ? ORDER BY created_at, sid",
        (to_number, from_number, isoformat(since)))


async def get(db: Database, sid: str) -> Row | None:
    return await db.fetchone("SELECT sid, status, error_code FROM sandbox_messages"
                             " WHERE sid = ?", (sid,))
