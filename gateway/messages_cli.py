"""`mcrm messages tail|show`: the delivery log from the command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from gateway.config import Config
from gateway.db import Database, Row
from gateway.db import outbound as sql
from gateway.errors import NotFound
from gateway.phone import mask


async def _open(config: Config) -> Database:
    return await Database.open(config.database_path(),
                               busy_timeout_ms=config.database.busy_timeout_ms)


async def show(config: Config, message_id: int) -> int:
    db = await _open(config)
    try:
        row = await sql.get(db, message_id)
        if row is None:
            raise NotFound(f"no message #{message_id}")
        print(f"message #{row['id']}  {row['status']}"
              + (f" ({row['reason']})" if row["reason"] else ""))
        for label, value in (
                ("to", row["to_number"]), ("from", row["from_number"]),
                ("program", row["program_id"]), ("purpose", row["purpose"]),
                ("campaign", row["campaign_id"]),
                ("encoding", f"{row['encoding']}, {row['segments']} segment(s)"),
                ("attempts", row["attempts"]), ("provider", row["provider"]),
                ("provider id", row["provider_sid"]),
                ("error", " ".join(filter(None, (row["error_code"], row["error_message"])))),
                ("created", row["created_at"]), ("sent", row["sent_at"]),
                ("next attempt", row["next_attempt_at"]), ("expires", row["expires_at"]),
                ("opt-in event", row["consent_event_id"]), ("body", row["body"])):
            if value not in (None, ""):
                print(f"  {label:13} {value}")
        print("  log:")
        lines = [(e["at"], _event_line(e)) for e in await sql.events(db, message_id)]
        if row["provider_sid"]:
            lines += [(r["received_at"], f"receipt {r['status']}"
                       + (f" (error {r['error_code']})" if r["error_code"] else ""))
                      for r in await sql.receipts(db, row["provider"], row["provider_sid"])]
        for at, text in sorted(lines):
            print(f"    {at}  {text}")
        return 0
    finally:
        await db.close()


def _event_line(event: Row) -> str:
    detail = json.loads(event["detail"]) if event["detail"] else {}
    extra = ", ".join(f"{k}={v}" for k, v in detail.items())
    code = f" (error {event['error_code']})" if event["error_code"] else ""
    return f"{event['event']}{code}" + (f": {extra}" if extra else "")


def _receipt_line(receipt: Row, shown: Callable[[str], str]) -> str:
    who = (shown(receipt["to_number"]) if receipt["to_number"]
           else receipt["provider_sid"])  # a receipt for a message we do not know
    code = f" (error {receipt['error_code']})" if receipt["error_code"] else ""
    return f"#{receipt['outbound_id'] or '?'} {who} receipt {receipt['status']}{code}"


async def tail(config: Config, *, lines: int, follow: bool, interval: float = 0.5,
               mask_numbers: bool = True) -> int:
    """Print the last `lines` entries of the log, then (with `follow`) new ones as they come."""
    db = await _open(config)
    shown: Callable[[str], str] = mask if mask_numbers else str
    try:
        last_event, last_receipt = await sql.last_ids(db)
        event_id, receipt_id = max(last_event - lines, 0), max(last_receipt - lines, 0)
        first = True
        while True:
            events, receipts = await sql.log_after(db, event_id, receipt_id, 1000)
            entries: list[tuple[str, str]] = [
                (e["at"], f"#{e['outbound_id']} {shown(e['to_number'])} {_event_line(e)}")
                for e in events]
            entries += [(r["at"], _receipt_line(r, shown)) for r in receipts]
            entries.sort()
            for at, text in entries[-lines:] if first else entries:
                print(f"{at}  {text}", flush=True)
            first = False
            if events:
                event_id = events[-1]["id"]
            if receipts:
                receipt_id = receipts[-1]["id"]
            if not follow:
                return 0
            if not events and not receipts:
                await asyncio.sleep(interval)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    finally:
        await db.close()
