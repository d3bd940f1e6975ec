"""`mcrm check` and `mcrm consent show|export`: consent from the command line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from consent import Consent
from consent.compliance import lint, replay
from consent.export import CSV_HEADER, csv_line, jsonl_line
from gateway.clock import SystemClock
from gateway.config import Config
from gateway.db import Database
from gateway.db import consent as consent_sql
from gateway.errors import BadRequest
from gateway.profiles import ProfileStore


async def check(config: Config) -> int:
    """Lint, then replay; exit 1 when a program has an error a carrier would refuse."""
    findings = lint(config)
    for f in findings:
        print(f"{f.level:7s} {f.program}: {f.message}")
    errors = sum(f.level == "error" for f in findings)
    print(f"{len(config.programs)} programs: {errors} errors, {len(findings) - errors} warnings")
    print()
    print("What a customer gets (replayed on a scratch database):")
    logging.getLogger("gateway.db").setLevel(logging.WARNING)
    for exchange in await replay(config):
        print(f"  {exchange.short_code} > {exchange.sent}")
        for reply in exchange.replies or ("(no reply)",):
            print(f"  {exchange.short_code} < {reply}")
    return 1 if errors else 0


async def _open(config: Config) -> tuple[Database, Consent]:
    db = await Database.open(config.database_path(),
                             busy_timeout_ms=config.database.busy_timeout_ms)
    return db, Consent(config, ProfileStore(default_region=config.phone.default_region))


async def show(config: Config, raw_phone: str) -> int:
    db, consent = await _open(config)
    try:
        phone = ProfileStore(default_region=config.phone.default_region).normalise(raw_phone)
        now = SystemClock().now()
        states = {s.program_id: s for s in await consent.ledger.states(db, phone)}
        print(phone)
        for program in consent.catalog.programs:
            state = states.get(program)
            print(f"  {program:20s} {state.effective(now) if state else 'none'}")
        print("history:")
        for event in await consent.ledger.history(db, phone):
            print(f"  #{event.id} {event.occurred_at.isoformat()} {event.program_id} "
                  f"{event.kind} via {event.source}"
                  + (f": {event.inbound_text!r}" if event.inbound_text else "")
                  + (f" {json.dumps(event.evidence)}" if event.evidence else ""))
    finally:
        await db.close()
    return 0


async def export(config: Config, program: str | None, since: str | None, fmt: str) -> int:
    if program and program not in {p.id for p in config.programs}:
        raise BadRequest(f"--program: {program!r} is not a configured program")
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            raise BadRequest(f"--since: {since!r} is not a date (YYYY-MM-DD)") from None
    db, _ = await _open(config)
    try:
        out = sys.stdout
        if fmt == "csv":
            out.write(CSV_HEADER)
        after = 0
        while rows := await consent_sql.program_events(db, program, start, after, 1000):
            out.writelines(csv_line(r) if fmt == "csv" else jsonl_line(r) for r in rows)
            after = rows[-1]["id"]
    finally:
        await db.close()
    return 0


async def rebuild(config: Config) -> int:
    """The materialised statuses must equal the fold of the ledger; exit 1 if they did not
    (they are corrected either way)."""
    db, consent = await _open(config)
    try:
        differing = await db.write(consent.ledger.rebuild)
        count = await db.fetchone("SELECT COUNT(*) FROM consent_status")
    finally:
        await db.close()
    total = count[0] if count else 0
    if differing:
        print(f"rebuilt {total} consent statuses from the ledger: {differing} differed and "
              "were corrected")
        return 1
    print(f"rebuilt {total} consent statuses from the ledger: all matched")
    return 0
