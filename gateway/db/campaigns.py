"""SQL for campaigns: definitions, runs, recipients, the outbound messages they queued, pull
campaigns' coupon pools and hits, and the stats.

Materialising an audience and queuing it go in chunks, each its own short transaction, so a
campaign of a million never holds the writer (and the inbound path) for long.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx, marks
from gateway.db.outbound import PENDING, add_events

COLUMNS = "id, name, kind, program_id, status, spec_json, next_run_at, created_at, updated_at"
RUN_COLUMNS = ("id, campaign_id, scheduled_for, status, cursor_phone, audience, started_at,"
               " finished_at")
#: Runs still at work (a restart resumes them).
UNFINISHED = ("materialising", "queuing", "sending")
#: Outbound statuses of a message that has not left yet and can still be held or cancelled.
#: A paused campaign's messages are held as ``deferred`` with reason ``paused`` and no time:
#: nothing releases them but a resume. (Those waiting for a later time keep waiting.)
WAITING = ("queued", "deferred")
#: Spreads consecutive recipients over the 100 buckets of the A/B split: 37 is prime to 100,
#: so every 100 consecutive recipients fill each bucket exactly once (exact percentages).
SPREAD = 37


# -- definitions -------------------------------------------------------------------------

async def insert(tx: Tx, row: Sequence[Any]) -> None:
    """(id, name, kind, program, status, spec, next run, created, updated)."""
    await tx.execute(f"INSERT INTO campaigns ({COLUMNS}) VALUES ({marks(row)})", row)


async def update_definition(tx: Tx, campaign_id: str, name: str, program_id: str,
                            spec_json: str, at: datetime) -> None:
    await tx.execute("UPDATE campaigns SET name = ?, program_id = ?, spec_json = ?,"
                     " updated_at = ? WHERE id = ?",
                     (name, program_id, spec_json, isoformat(at), campaign_id))


async def get(db: Database | Tx, campaign_id: str) -> Row | None:
    return await db.fetchone(f"SELECT {COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,))


async def search(db: Database, *, status: str | None, kind: str | None, before_id: str,
                 limit: int) -> list[Row]:
    """Newest first (ids sort by creation), from `before_id` down ('' from the newest)."""
    where, params = [], []
    for column, value in (("status", status), ("kind", kind)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if before_id:
        where.append("id < ?")
        params.append(before_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return await db.fetchall(f"SELECT {COLUMNS} FROM campaigns{clause} ORDER BY id DESC"
                             f" LIMIT ?", (*params, limit))


async def set_status(tx: Tx, campaign_id: str, status: str, at: datetime, *,
                     next_run_at: datetime | bool | None = False) -> None:
    """`next_run_at=False` leaves the next run as it is."""
    if next_run_at is False:
        await tx.execute("UPDATE campaigns SET status = ?, updated_at = ? WHERE id = ?",
                         (status, isoformat(at), campaign_id))
    else:
        await tx.execute(
            "UPDATE campaigns SET status = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
            (status, isoformat(next_run_at) if isinstance(next_run_at, datetime) else None,
             isoformat(at), campaign_id))


async def in_status(db: Database | Tx, statuses: Sequence[str], kind: str = "push"
                    ) -> list[Row]:
    return await db.fetchall(
        f"SELECT {COLUMNS} FROM campaigns WHERE kind = ? AND status IN ({marks(statuses)})",
        (kind, *statuses))


async def counts(db: Database) -> list[tuple[str, str, int]]:
    rows = await db.fetchall("SELECT kind, status, COUNT(*) FROM campaigns GROUP BY 1, 2")
    return [(r[0], r[1], int(r[2])) for r in rows]


async def statuses(tx: Tx | Database, campaign_ids: Sequence[str]) -> dict[str, str]:
    if not campaign_ids:
        return {}  # the claim of a batch without campaign messages: no query
    rows = await tx.fetchall(f"SELECT id, status FROM campaigns WHERE id IN"
                             f" ({marks(campaign_ids)})", tuple(campaign_ids))
    return {r[0]: r[1] for r in rows}


# -- runs --------------------------------------------------------------------------------

async def create_run(tx: Tx, campaign_id: str, scheduled_for: datetime, status: str,
                     at: datetime) -> tuple[int, bool]:
    """(run id, created): the same scheduled time never makes a second run."""
    stamp = isoformat(scheduled_for)
    found = await tx.fetchone("SELECT id FROM campaign_runs WHERE campaign_id = ?"
                              " AND scheduled_for = ?", (campaign_id, stamp))
    if found:
        return int(found[0]), False
    finished = isoformat(at) if status == "missed" else None
    run_id = await tx.execute(
        "INSERT INTO campaign_runs (campaign_id, scheduled_for, status, started_at,"
        " finished_at) VALUES (?, ?, ?, ?, ?)",
        (campaign_id, stamp, status, isoformat(at), finished))
    return run_id, True


async def get_run(db: Database | Tx, run_id: int) -> Row | None:
    return await db.fetchone(f"SELECT {RUN_COLUMNS} FROM campaign_runs WHERE id = ?",
                             (run_id,))


async def runs(db: Database | Tx, campaign_id: str) -> list[Row]:
    return await db.fetchall(f"SELECT {RUN_COLUMNS} FROM campaign_runs WHERE campaign_id = ?"
                             f" ORDER BY id", (campaign_id,))


async def unfinished_runs(db: Database | Tx) -> list[Row]:
    return await db.fetchall(f"SELECT {RUN_COLUMNS} FROM campaign_runs WHERE status IN"
                             f" ({marks(UNFINISHED)}) ORDER BY id", UNFINISHED)


async def has_unfinished_run(tx: Tx, campaign_id: str) -> bool:
    row = await tx.fetchone(
        f"SELECT EXISTS (SELECT 1 FROM campaign_runs WHERE campaign_id = ?"
        f" AND status IN ({marks(UNFINISHED)}))", (campaign_id, *UNFINISHED))
    return bool(row and row[0])


async def set_run(tx: Tx, run_id: int, status: str, at: datetime | None = None) -> None:
    await tx.execute("UPDATE campaign_runs SET status = ?, finished_at = ? WHERE id = ?",
                     (status, isoformat(at) if at else None, run_id))


async def finish_run(tx: Tx, run_id: int, at: datetime) -> bool:
    """Completed, unless it ended otherwise meanwhile (cancelled): True if it changed."""
    return await tx.update(
        f"UPDATE campaign_runs SET status = 'completed', finished_at = ? WHERE id = ?"
        f" AND status IN ({marks(UNFINISHED)})", (isoformat(at), run_id, *UNFINISHED)) > 0


# -- audience ----------------------------------------------------------------------------

def _audience(where: str) -> str:
    return ("FROM consent_status c LEFT JOIN profiles ON profiles.phone = c.phone"
            f" WHERE c.program_id = ? AND c.status = 'opted_in' AND ({where})")


async def audience_count(db: Database | Tx, program_id: str, where: str,
                         params: Sequence[Any]) -> int:
    row = await db.fetchone(f"SELECT COUNT(*) {_audience(where)}", (program_id, *params))
    return int(row[0]) if row else 0


async def audience_sample(db: Database | Tx, program_id: str, where: str,
                          params: Sequence[Any], limit: int) -> list[str]:
    rows = await db.fetchall(f"SELECT c.phone {_audience(where)} ORDER BY c.phone LIMIT ?",
                             (program_id, *params, limit))
    return [r[0] for r in rows]


async def materialise_chunk(tx: Tx, run_id: int, program_id: str, where: str,
                            params: Sequence[Any], cutoffs: Sequence[int], limit: int
                            ) -> int:
    """Add the next `limit` audience members (after the run's cursor, in phone order) as
    recipients, each with its A/B variant; returns how many. The cursor moves in the same
    transaction, so a chunk is taken exactly once."""
    run = await tx.fetchone("SELECT cursor_phone, audience FROM campaign_runs WHERE id = ?",
                            (run_id,))
    assert run is not None
    after, offset = run[0] or "", int(run[1])
    variant = "CASE " + " ".join(
        f"WHEN ((? + n) * {SPREAD}) % 100 < {cut} THEN {i}" for i, cut in enumerate(cutoffs)
    ) + f" ELSE {len(cutoffs) - 1} END"
    added = await tx.update(
        f"INSERT INTO campaign_recipients (run_id, seq, phone, variant)"
        f" SELECT ?, ? + n, phone, {variant} FROM (SELECT c.phone AS phone,"
        f" ROW_NUMBER() OVER (ORDER BY c.phone) AS n {_audience(where)} AND c.phone > ?"
        f" ORDER BY c.phone LIMIT ?)",
        (run_id, offset, *([offset] * len(cutoffs)), program_id, *params, after, limit))
    if added:
        last = await tx.fetchone("SELECT phone FROM campaign_recipients WHERE run_id = ?"
                                 " AND seq = ?", (run_id, offset + added))
        await tx.execute("UPDATE campaign_runs SET cursor_phone = ?, audience = ? WHERE id = ?",
                         (last[0] if last else after, offset + added, run_id))
    return added


async def next_recipients(db: Database | Tx, run_id: int, after_seq: int, limit: int
                          ) -> list[Row]:
    return await db.fetchall(
        "SELECT seq, phone, variant FROM campaign_recipients WHERE run_id = ? AND seq > ?"
        " AND outbound_id IS NULL AND skipped IS NULL ORDER BY seq LIMIT ?",
        (run_id, after_seq, limit))


async def mark_queued(tx: Tx, run_id: int, rows: Sequence[tuple[int, int]]) -> None:
    """(outbound id, seq), a whole batch in one statement."""
    await tx.executemany(
        "UPDATE campaign_recipients SET outbound_id = ? WHERE run_id = ? AND seq = ?"
        " AND outbound_id IS NULL AND skipped IS NULL",
        [(outbound_id, run_id, seq) for outbound_id, seq in rows])


async def mark_skipped(tx: Tx, run_id: int, rows: Sequence[tuple[str, int]]) -> None:
    """(reason, seq)."""
    await tx.executemany("UPDATE campaign_recipients SET skipped = ? WHERE run_id = ?"
                         " AND seq = ?", [(reason, run_id, seq) for reason, seq in rows])


async def skip_unqueued(tx: Tx, campaign_id: str, reason: str) -> int:
    return await tx.update(
        "UPDATE campaign_recipients SET skipped = ? WHERE outbound_id IS NULL"
        " AND skipped IS NULL AND run_id IN (SELECT id FROM campaign_runs"
        " WHERE campaign_id = ?)", (reason, campaign_id))


# -- the campaign's messages in the outbound pipeline -----------------------------------

async def ready_count(db: Database | Tx, short_code: str, campaign_id: str, limit: int
                      ) -> int:
    """How many of the campaign's messages wait, ready, for the sender (up to `limit`: the
    ready index keeps this cheap however large the campaign)."""
    row = await db.fetchone(
        "SELECT COUNT(*) FROM (SELECT 1 FROM outbound_messages WHERE from_number = ?"
        " AND status = 'queued' AND next_attempt_at IS NULL AND campaign_id = ? LIMIT ?)",
        (short_code, campaign_id, limit))
    return int(row[0]) if row else 0


async def has_pending(db: Database | Tx, campaign_id: str) -> bool:
    row = await db.fetchone(
        f"SELECT EXISTS (SELECT 1 FROM outbound_messages INDEXED BY outbound_messages_status"
        f" WHERE status IN ({marks(PENDING)}) AND campaign_id = ?)", (*PENDING, campaign_id))
    return bool(row and row[0])


async def _waiting_ids(tx: Tx, campaign_id: str, *, held: bool | None = None,
                       due: datetime | None = None) -> list[int]:
    """The campaign's messages not yet handed over (`held`: only those paused, or only
    those not paused; `due`: only those free to go at that time)."""
    clause = {None: "", True: " AND reason = 'paused' AND next_attempt_at IS NULL",
              False: " AND NOT (status = 'deferred' AND reason = 'paused'"
                     " AND next_attempt_at IS NULL)"}[held]
    params: tuple[Any, ...] = (*WAITING, campaign_id)
    if due is not None:
        clause += " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
        params += (isoformat(due),)
    rows = await tx.fetchall(
        f"SELECT id FROM outbound_messages INDEXED BY outbound_messages_status"
        f" WHERE status IN ({marks(WAITING)}) AND campaign_id = ?{clause}", params)
    return [r[0] for r in rows]


async def hold(tx: Tx, campaign_id: str, at: datetime) -> int:
    """Paused: what would go now is held until the campaign resumes. A message waiting for
    a later time (a recipient's local hour, quiet hours, a retry's back-off) keeps its time;
    if that comes while the campaign is still paused, the dispatcher holds it then."""
    ids = await _waiting_ids(tx, campaign_id, held=False, due=at)
    stamp = isoformat(at)
    await tx.executemany("UPDATE outbound_messages SET status = 'deferred', reason = 'paused',"
                         " next_attempt_at = NULL, updated_at = ? WHERE id = ?",
                         [(stamp, i) for i in ids])
    await add_events(tx, [(i, stamp, "held", "deferred", None, '{"reason":"paused"}')
                          for i in ids])
    return len(ids)


async def release(tx: Tx, campaign_id: str, at: datetime, expires: datetime) -> int:
    """Resumed: held messages are queued again (and decided again: quiet hours, consent);
    a default validity counts again from now."""
    ids = await _waiting_ids(tx, campaign_id, held=True)
    stamp = isoformat(at)
    await tx.executemany(
        "UPDATE outbound_messages SET status = 'queued', reason = NULL, updated_at = ?,"
        " expires_at = CASE WHEN fixed_expiry THEN expires_at ELSE MAX(expires_at, ?) END"
        " WHERE id = ?", [(stamp, isoformat(expires), i) for i in ids])
    await add_events(tx, [(i, stamp, "released", "queued", None, None) for i in ids])
    return len(ids)


async def cancel_waiting(tx: Tx, campaign_id: str, at: datetime) -> int:
    ids = await _waiting_ids(tx, campaign_id)
    stamp = isoformat(at)
    await tx.executemany(
        "UPDATE outbound_messages SET status = 'cancelled', reason = 'campaign_cancelled',"
        " next_attempt_at = NULL, updated_at = ? WHERE id = ?", [(stamp, i) for i in ids])
    await add_events(tx, [(i, stamp, "cancelled", "cancelled", None,
                           '{"reason":"campaign_cancelled"}') for i in ids])
    return len(ids)


# -- stats -------------------------------------------------------------------------------

async def recipient_stats(db: Database, campaign_id: str) -> list[Row]:
    """Per (variant, message status, reason, error code): recipients."""
    return await db.fetchall(
        "SELECT r.variant, COALESCE(m.status, CASE WHEN r.skipped IS NOT NULL THEN 'skipped'"
        " ELSE 'unqueued' END) AS status, COALESCE(m.reason, r.skipped) AS reason,"
        " m.error_code, COUNT(*) AS n, SUM(m.sent_at IS NOT NULL) AS handed_over"
        " FROM campaign_recipients r JOIN campaign_runs run ON run.id = r.run_id"
        " LEFT JOIN outbound_messages m ON m.id = r.outbound_id"
        " WHERE run.campaign_id = ? GROUP BY 1, 2, 3, 4", (campaign_id,))


async def response_stats(db: Database, campaign_id: str, short_code: str, program_id: str,
                         window_modifier: str) -> list[Row]:
    """Per variant: recipients who texted back, and who opted out of the program, within the
    attribution window after the campaign's message reached the provider."""
    return await db.fetchall(
        "SELECT r.variant,"
        " SUM(EXISTS (SELECT 1 FROM inbound_messages i WHERE i.from_number = m.to_number"
        "   AND i.to_number = ? AND i.received_at >= m.sent_at"
        "   AND i.received_at <= strftime('%Y-%m-%dT%H:%M:%f+00:00', m.sent_at, ?))),"
        " SUM(EXISTS (SELECT 1 FROM consent_events e WHERE e.phone = m.to_number"
        "   AND e.program_id = ? AND e.kind = 'opt_out' AND e.occurred_at >= m.sent_at"
        "   AND e.occurred_at <= strftime('%Y-%m-%dT%H:%M:%f+00:00', m.sent_at, ?)))"
        " FROM campaign_recipients r JOIN campaign_runs run ON run.id = r.run_id"
        " JOIN outbound_messages m ON m.id = r.outbound_id"
        " WHERE run.campaign_id = ? AND m.sent_at IS NOT NULL GROUP BY r.variant",
        (short_code, window_modifier, program_id, window_modifier, campaign_id))


# -- pull campaigns ----------------------------------------------------------------------

async def add_codes(tx: Tx, campaign_id: str, codes: Sequence[str]) -> int:
    """Add to the pool; a code already in it is not added twice. Returns how many were new."""
    before = await tx.fetchone("SELECT COUNT(*) FROM campaign_codes WHERE campaign_id = ?",
                               (campaign_id,))
    await tx.executemany("INSERT OR IGNORE INTO campaign_codes (campaign_id, code)"
                         " VALUES (?, ?)", [(campaign_id, c) for c in codes])
    after = await tx.fetchone("SELECT COUNT(*) FROM campaign_codes WHERE campaign_id = ?",
                              (campaign_id,))
    return int(after[0]) - int(before[0]) if after and before else 0


async def code_for(tx: Tx, campaign_id: str, phone: str, at: datetime) -> str | None:
    """The customer's code: the one handed out before, else the next free one (None when
    the pool is empty)."""
    found = await tx.fetchone("SELECT code FROM campaign_codes WHERE campaign_id = ?"
                              " AND phone = ?", (campaign_id, phone))
    if found:
        return str(found[0])
    taken = await tx.fetchone(
        "UPDATE campaign_codes SET phone = ?, assigned_at = ? WHERE campaign_id = ? AND code ="
        " (SELECT code FROM campaign_codes WHERE campaign_id = ? AND phone IS NULL"
        "  ORDER BY rowid LIMIT 1) RETURNING code",
        (phone, isoformat(at), campaign_id, campaign_id))
    return str(taken[0]) if taken else None


async def add_hit(tx: Tx, campaign_id: str, phone: str, at: datetime, in_window: bool,
                  inbound_sid: str) -> None:
    await tx.execute("INSERT INTO campaign_hits (campaign_id, phone, at, in_window,"
                     " inbound_sid) VALUES (?, ?, ?, ?, ?)",
                     (campaign_id, phone, isoformat(at), int(in_window), inbound_sid))


async def pull_stats(db: Database, campaign_id: str) -> Row | None:
    return await db.fetchone(
        "SELECT (SELECT COUNT(*) FROM campaign_hits WHERE campaign_id = ?1),"
        " (SELECT COUNT(*) FROM campaign_hits WHERE campaign_id = ?1 AND in_window),"
        " (SELECT COUNT(DISTINCT phone) FROM campaign_hits WHERE campaign_id = ?1),"
        " (SELECT COUNT(*) FROM campaign_codes WHERE campaign_id = ?1),"
        " (SELECT COUNT(*) FROM campaign_codes WHERE campaign_id = ?1 AND phone IS NOT NULL)",
        (campaign_id,))
