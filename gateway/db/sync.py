"""SQL for the CRM sync: a cursor per endpoint over profile_events, and dead letters.

Events are delivered in `profile_events.id` order. SQLite has one writer at a time, so an
event never becomes visible before one with a smaller id: a cursor cannot skip anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx, marks

_EVENT = "e.id AS ref, e.event_id, e.phone, e.seq, e.type, e.occurred_at, e.data_json"


async def ensure_cursor(tx: Tx, endpoint: str) -> None:
    await tx.execute("INSERT INTO sync_cursors (endpoint) VALUES (?)"
                     " ON CONFLICT (endpoint) DO NOTHING", (endpoint,))


async def cursor(db: Database, endpoint: str) -> Row | None:
    return await db.fetchone("SELECT * FROM sync_cursors WHERE endpoint = ?", (endpoint,))


async def next_events(db: Database, after_ref: int, limit: int) -> list[Row]:
    return await db.fetchall(f"SELECT {_EVENT} FROM profile_events e WHERE e.id > ?"
                             " ORDER BY e.id LIMIT ?", (after_ref, limit))


async def replays(db: Database, endpoint: str, limit: int) -> list[Row]:
    """Dead letters queued for another try, oldest event first."""
    return await db.fetchall(
        f"SELECT d.id AS letter, d.replayed_at, {_EVENT} FROM sync_dead_letters d"
        " JOIN profile_events e ON e.id = d.event_ref"
        " WHERE d.endpoint = ? AND d.state = 'replay' ORDER BY d.event_ref LIMIT ?",
        (endpoint, limit))


async def advance(tx: Tx, endpoint: str, last_ref: int, now: datetime) -> None:
    await tx.execute(
        "UPDATE sync_cursors SET last_ref = MAX(last_ref, ?), attempts = 0, last_error = NULL,"
        " last_success_at = ? WHERE endpoint = ?", (last_ref, isoformat(now), endpoint))


async def cursor_failed(tx: Tx, endpoint: str, error: str, now: datetime) -> None:
    await tx.execute(
        "UPDATE sync_cursors SET attempts = attempts + 1, last_error = ?, last_error_at = ?"
        " WHERE endpoint = ?", (error, isoformat(now), endpoint))


async def bury(tx: Tx, endpoint: str, refs: Sequence[int], attempts: int, error: str,
               now: datetime) -> None:
    """Set events aside as dead letters and move the cursor past them."""
    await tx.executemany(
        "INSERT INTO sync_dead_letters (endpoint, event_ref, state, attempts, last_error,"
        " dead_at) VALUES (?, ?, 'dead', ?, ?, ?)"
        " ON CONFLICT (endpoint, event_ref) DO UPDATE SET state = 'dead',"
        " attempts = excluded.attempts, last_error = excluded.last_error,"
        " dead_at = excluded.dead_at",
        [(endpoint, ref, attempts, error, isoformat(now)) for ref in refs])
    await tx.execute("UPDATE sync_cursors SET last_ref = MAX(last_ref, ?), attempts = 0"
                     " WHERE endpoint = ?", (max(refs), endpoint))



async def replays_delivered(tx: Tx, endpoint: str, letters: Sequence[int],
                            now: datetime) -> None:
    await tx.execute(f"UPDATE sync_dead_letters SET state = 'delivered' WHERE id IN"
                     f" ({marks(letters)})", tuple(letters))
    await tx.execute("UPDATE sync_cursors SET last_success_at = ?, last_error = NULL"
                     " WHERE endpoint = ?", (isoformat(now), endpoint))


async def replays_failed(tx: Tx, endpoint: str, letters: Sequence[int], error: str,
                         now: datetime, dead_before: datetime) -> int:
    """Count a failed replay; letters replayed before `dead_before` are dead again."""
    await tx.execute(f"UPDATE sync_dead_letters SET attempts = attempts + 1, last_error = ?"
                     f" WHERE id IN ({marks(letters)})", (error, *letters))
    await tx.execute("UPDATE sync_cursors SET last_error = ?, last_error_at = ?"
                     " WHERE endpoint = ?", (error, isoformat(now), endpoint))
    return await tx.update(
        f"UPDATE sync_dead_letters SET state = 'dead', dead_at = ? WHERE id IN"
        f" ({marks(letters)}) AND replayed_at < ?",
        (isoformat(now), *letters, isoformat(dead_before)))


async def status(db: Database, endpoint: str) -> Row | None:
    return await db.fetchone(
        "SELECT c.last_ref, c.attempts, c.last_error, c.last_error_at, c.last_success_at,"
        " (SELECT COUNT(*) FROM profile_events WHERE id > c.last_ref) AS backlog,"
        " (SELECT occurred_at FROM profile_events WHERE id > c.last_ref ORDER BY id LIMIT 1)"
        "   AS oldest,"
        " (SELECT COUNT(*) FROM sync_dead_letters WHERE endpoint = c.endpoint"
        "   AND state = 'dead') AS dead,"
        " (SELECT COUNT(*) FROM sync_dead_letters WHERE endpoint = c.endpoint"
        "   AND state = 'replay') AS replaying"
        " FROM sync_cursors c WHERE c.endpoint = ?", (endpoint,))


async def dead_letters(db: Database, endpoint: str | None, after_id: int, limit: int
                       ) -> list[Row]:
    where, params = ("AND d.endpoint = ?", [endpoint]) if endpoint else ("", [])
    return await db.fetchall(
        "SELECT d.id, d.endpoint, d.attempts, d.dead_at, d.last_error, e.event_id, e.phone,"
        " e.type, e.occurred_at FROM sync_dead_letters d"
        " JOIN profile_events e ON e.id = d.event_ref"
        f" WHERE d.state = 'dead' AND d.id > ? {where} ORDER BY d.id LIMIT ?",
        (after_id, *params, limit))


async def replay(tx: Tx, endpoint: str | None, ids: Sequence[int] | None,
                 now: datetime) -> int:
    """Queue dead letters for another try, with a fresh maximum age."""
    where, params = "", []
    if endpoint:
        where += " AND endpoint = ?"
        params.append(endpoint)
    if ids:
        where += f" AND id IN ({marks(ids)})"
        params.extend(ids)
    return await tx.update(
        f"UPDATE sync_dead_letters SET state = 'replay', replayed_at = ? WHERE state = 'dead'"
        f"{where}", (isoformat(now), *params))
