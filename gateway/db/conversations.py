"""SQL for conversation state: one row per (customer, short code) while a flow is active."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.clock import isoformat
from gateway.db import Row, Tx, dumps


async def get(tx: Tx, phone: str, short_code: str) -> Row | None:
    return await tx.fetchone("SELECT * FROM conversations WHERE phone = ? AND short_code = ?",
                             (phone, short_code))


async def put(tx: Tx, *, phone: str, short_code: str, flow: str, step: str, retries: int,
              answers: dict[str, Any], started_at: str, now: datetime, expires_at: datetime
              ) -> None:
    await tx.execute(
        "INSERT INTO conversations (phone, short_code, flow, step, retries, answers_json,"
        " started_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (phone, short_code) DO UPDATE SET flow = excluded.flow,"
        " step = excluded.step, retries = excluded.retries,"
        " answers_json = excluded.answers_json, started_at = excluded.started_at,"
        " updated_at = excluded.updated_at, expires_at = excluded.expires_at",
        (phone, short_code, flow, step, retries, dumps(answers), started_at, isoformat(now),
         isoformat(expires_at)))


async def delete(tx: Tx, phone: str, short_code: str) -> None:
    await tx.execute("DELETE FROM conversations WHERE phone = ? AND short_code = ?",
                     (phone, short_code))


async def replies_since(tx: Tx, phone: str, since: datetime) -> int:
    """Automatic replies (inline answers to inbound texts) sent to `phone` since `since`."""
    row = await tx.fetchone(
        "SELECT COUNT(*) FROM outbound_messages WHERE to_number = ? AND in_reply_to IS NOT NULL"
        " AND created_at >= ?", (phone, isoformat(since)))
    return int(row[0]) if row else 0
