"""SQL for customer profiles, their timeline, the CRM sync outbox and suppressions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx, marks

PROFILE_COLUMNS = (
    "phone, first_name, last_name, email, language, time_zone, attributes_json, tags_json,"
    " inbound_count, outbound_count, delivered_count, failed_count, last_inbound_at,"
    " last_outbound_at, seq, created_at, updated_at")
FIELDS = ("first_name", "last_name", "email", "language", "time_zone")


async def get(db_or_tx: Database | Tx, phone: str) -> Row | None:
    return await db_or_tx.fetchone(f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE phone = ?",
                                   (phone,))


async def language(db_or_tx: Database | Tx, phone: str) -> str | None:
    row = await db_or_tx.fetchone("SELECT language FROM profiles WHERE phone = ?", (phone,))
    return row[0] if row else None


async def get_many(tx: Tx | Database, phones: Sequence[str], chunk: int = 5000) -> list[Row]:
    rows: list[Row] = []
    for i in range(0, len(phones), chunk):
        part = phones[i:i + chunk]
        rows += await tx.fetchall(
            f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE phone IN ({marks(part)})", part)
    return rows


async def upsert_many(tx: Tx, rows: Iterable[Sequence[Any]]) -> None:
    """Write whole profiles (in PROFILE_COLUMNS order); counters of existing rows are kept,
    so a change planned from a profile never undoes a count made meanwhile."""
    marks = ", ".join("?" * len(PROFILE_COLUMNS.split(",")))
    changed = ", ".join(f"{c} = excluded.{c}" for c in (
        *FIELDS, "attributes_json", "tags_json", "seq", "updated_at"))
    await tx.executemany(
        f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES ({marks})"
        f" ON CONFLICT (phone) DO UPDATE SET {changed}", rows)


async def insert_events_many(tx: Tx, rows: Iterable[Sequence[Any]]) -> None:
    """Rows of (event_id, phone, seq, type, occurred_at, data_json), in the order they
    happened: each takes the next `id` (no row is ever deleted, so no id is ever reused and
    the CRM relays' cursors stay valid)."""
    await tx.executemany(
        "INSERT INTO profile_events (event_id, phone, seq, type, occurred_at, data_json)"
        " VALUES (?, ?, ?, ?, ?, ?)", rows)


async def bump(tx: Tx, rows: Sequence[tuple[str, int, int, int, int, int, str | None, str]],
               chunk: int = 250) -> dict[str, int]:
    """Rows of (phone, received, sent, delivered, failed, events, last received, time):
    create profiles as needed, add to their counters and take `events` event numbers, a
    statement per chunk of profiles; returns each phone's last event number."""
    last: dict[str, int] = {}
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        found = await tx.fetchall(
            "INSERT INTO profiles (phone, inbound_count, outbound_count, delivered_count,"
            " failed_count, seq, last_inbound_at, last_outbound_at, created_at, updated_at)"
            " VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part)) +
            " ON CONFLICT (phone) DO UPDATE SET"
            " inbound_count = inbound_count + excluded.inbound_count,"
            " outbound_count = outbound_count + excluded.outbound_count,"
            " delivered_count = delivered_count + excluded.delivered_count,"
            " failed_count = failed_count + excluded.failed_count, seq = seq + excluded.seq,"
            " last_inbound_at = COALESCE(excluded.last_inbound_at, last_inbound_at),"
            " last_outbound_at = COALESCE(excluded.last_outbound_at, last_outbound_at),"
            " updated_at = excluded.updated_at RETURNING phone, seq",
            [v for phone, received, sent, ok, bad, events, received_at, at in part
             for v in (phone, received, sent, ok, bad, events, received_at,
                       at if sent else None, at, at)])
        last.update({row[0]: int(row[1]) for row in found})
    return last


async def existing(tx: Tx, phones: Sequence[str]) -> set[str]:
    rows = await tx.fetchall(f"SELECT phone FROM profiles WHERE phone IN ({marks(phones)})",
                             tuple(phones))
    return {row[0] for row in rows}


async def timeline(db: Database, phone: str, *, after_seq: int, limit: int) -> list[Row]:
    return await db.fetchall(
        "SELECT event_id, seq, type, occurred_at, data_json FROM profile_events"
        " WHERE phone = ? AND seq > ? ORDER BY seq LIMIT ?", (phone, after_seq, limit))


async def page(db: Database, *, after_phone: str, limit: int, where: str = "",
               params: Sequence[Any] = ()) -> list[Row]:
    clause = f" AND ({where})" if where else ""
    return await db.fetchall(
        f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE phone > ?{clause}"
        " ORDER BY phone LIMIT ?", (after_phone, *params, limit))


async def suppress(tx: Tx, phone: str, reason: str, now: datetime) -> None:
    await tx.execute("INSERT INTO suppressions (phone, reason, created_at) VALUES (?, ?, ?)"
                     " ON CONFLICT (phone) DO NOTHING", (phone, reason, isoformat(now)))


async def is_suppressed(db_or_tx: Database | Tx, phone: str) -> bool:
    return await suppressed_since(db_or_tx, phone) is not None


async def suppressed_since(db_or_tx: Database | Tx, phone: str) -> datetime | None:
    row = await db_or_tx.fetchone("SELECT created_at FROM suppressions WHERE phone = ?",
                                  (phone,))
    return datetime.fromisoformat(row[0]) if row else None


async def suppressed_many(db_or_tx: Database | Tx, phones: Sequence[str]
                          ) -> dict[str, datetime]:
    rows = await db_or_tx.fetchall(
        f"SELECT phone, created_at FROM suppressions WHERE phone IN ({marks(phones)})",
        tuple(phones))
    return {r[0]: datetime.fromisoformat(r[1]) for r in rows}


async def redact_person(tx: Tx, phone: str) -> None:
    """Blank everything personal about `phone`, wherever it is stored; keep the counts."""
    await tx.execute(
        "UPDATE profiles SET first_name = NULL, last_name = NULL, email = NULL,"
        " language = NULL, time_zone = NULL, attributes_json = '{}', tags_json = '[]'"
        " WHERE phone = ?", (phone,))
    await tx.execute("UPDATE profile_events SET data_json = '{\"redacted\":true}'"
                     " WHERE phone = ?", (phone,))
    await tx.execute("UPDATE inbound_messages SET body = '', params_json = '{}'"
                     " WHERE from_number = ?", (phone,))
    await tx.execute("UPDATE outbound_messages SET body = '' WHERE to_number = ?", (phone,))
    await tx.execute("UPDATE sandbox_messages SET body = '' WHERE to_number = ?", (phone,))
    await tx.execute("UPDATE status_callbacks SET params_json = '{}'"
                     " WHERE json_extract(params_json, '$.To') = ?", (phone,))
    # A conversation in progress holds the answers given so far.
    await tx.execute("DELETE FROM conversations WHERE phone = ?", (phone,))
