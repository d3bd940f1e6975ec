"""The consent ledger: an append-only record of every opt-in and opt-out per (phone, program).

The current status is a fold over the events (``fold``), kept materialised in
``consent_status`` for speed and rebuildable from the events at any time (``rebuild``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx
from gateway.db import consent as sql
from gateway.profile_import import CONSENT_SOURCES
from gateway.profiles import ProfileStore


class Kind(enum.StrEnum):
    OPT_IN_REQUESTED = "opt_in_requested"  # double opt-in: waiting for the customer's Y
    OPT_IN_CONFIRMED = "opt_in_confirmed"
    OPT_OUT = "opt_out"
    RE_OPT_IN = "re_opt_in"  # START / UNSTOP / YES after an opt-out
    IMPORTED = "imported"  # consent captured elsewhere, brought in with its evidence


class Status(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Source(enum.StrEnum):
    KEYWORD = "keyword"
    WEB_FORM = "web_form"
    API = "api"
    IMPORT = "import"
    CARRIER = "carrier"
    STORE = "store"


# The import path (gateway core, which cannot import consent) checks sources against a copy.
assert {s.value for s in Source} == set(CONSENT_SOURCES), "consent sources disagree"


@dataclass(frozen=True)
class ConsentEvent:
    phone: str
    program_id: str
    kind: Kind
    source: str
    occurred_at: datetime
    inbound_sid: str | None = None
    inbound_text: str | None = None
    reply_text: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @classmethod
    def from_row(cls, row: Row) -> ConsentEvent:
        return cls(phone=row["phone"], program_id=row["program_id"], kind=Kind(row["kind"]),
                   source=row["source"], occurred_at=datetime.fromisoformat(row["occurred_at"]),
                   inbound_sid=row["inbound_sid"], inbound_text=row["inbound_text"],
                   reply_text=row["reply_text"], evidence=json.loads(row["evidence_json"]),
                   id=row["id"])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "phone": self.phone, "program": self.program_id,
                "kind": self.kind.value, "source": self.source,
                "occurred_at": isoformat(self.occurred_at), "inbound_sid": self.inbound_sid,
                "inbound_text": self.inbound_text, "reply_text": self.reply_text,
                "evidence": self.evidence}


@dataclass(frozen=True)
class ConsentState:
    """Where a (phone, program) stands, and which event put it there."""

    phone: str
    program_id: str
    status: Status = Status.NONE
    since: datetime | None = None
    last_event_id: int | None = None
    #: The opt-in that allows marketing now (None unless opted in).
    opt_in_event_id: int | None = None
    pending_until: datetime | None = None

    def effective(self, at: datetime) -> Status:
        """The status at `at`: an unconfirmed double opt-in lapses when it expires."""
        if self.status is Status.PENDING and self.pending_until and at >= self.pending_until:
            return Status.NONE
        return self.status

    @classmethod
    def from_row(cls, row: Row) -> ConsentState:
        pending = row["pending_until"]
        return cls(phone=row["phone"], program_id=row["program_id"],
                   status=Status(row["status"]), since=datetime.fromisoformat(row["since"]),
                   last_event_id=row["last_event_id"], opt_in_event_id=row["opt_in_event_id"],
                   pending_until=datetime.fromisoformat(pending) if pending else None)

    def to_dict(self, at: datetime) -> dict[str, Any]:
        return {"program": self.program_id, "status": self.effective(at).value,
                "since": isoformat(self.since) if self.since else None,
                "opt_in_event_id": self.opt_in_event_id,
                "pending_until": isoformat(self.pending_until) if self.pending_until
                else None}


def fold(state: ConsentState, event: ConsentEvent, event_id: int,
         pending_for: timedelta) -> ConsentState:
    """The state after `event`: the one place the ledger's meaning is defined."""
    at = event.occurred_at
    if state.since is not None and at < state.since:
        # Older than what decided the current status (an import of last year's opt-in after
        # this week's STOP): kept in the ledger as proof, but it changes nothing.
        return state
    current = state.effective(at)
    if event.kind is Kind.OPT_IN_REQUESTED:
        if current is Status.OPTED_IN:  # asking again changes nothing while opted in
            return ConsentState(state.phone, state.program_id, current, state.since,
                                event_id, state.opt_in_event_id, None)
        return ConsentState(state.phone, state.program_id, Status.PENDING, at, event_id, None,
                            at + pending_for)
    if event.kind is Kind.OPT_OUT:
        return ConsentState(state.phone, state.program_id, Status.OPTED_OUT, at, event_id)
    # opt_in_confirmed, re_opt_in, imported: opted in, by this event.
    return ConsentState(state.phone, state.program_id, Status.OPTED_IN, at, event_id, event_id)


class ConsentLedger:
    """Records consent events (in the caller's transaction) and answers where things stand."""

    def __init__(self, profiles: ProfileStore, *, pending_for: timedelta,
                 on_event: Callable[[ConsentEvent], None] | None = None) -> None:
        self.profiles = profiles
        self.pending_for = pending_for
        self.on_event = on_event  # e.g. a metrics counter

    async def state(self, db: Database | Tx, phone: str, program_id: str) -> ConsentState:
        row = await sql.get_status(db, phone, program_id)
        return ConsentState.from_row(row) if row else ConsentState(phone, program_id)

    async def states(self, db: Database | Tx, phone: str) -> list[ConsentState]:
        return [ConsentState.from_row(r) for r in await sql.statuses(db, phone)]

    async def history(self, db: Database | Tx, phone: str) -> list[ConsentEvent]:
        return [ConsentEvent.from_row(r) for r in await sql.events_for(db, phone)]

    async def record(self, tx: Tx, event: ConsentEvent) -> tuple[int, ConsentState]:
        """Append `event`, update the status, and put it on the profile's timeline."""
        event_id = await sql.insert_event(
            tx, phone=event.phone, program_id=event.program_id, kind=event.kind.value,
            source=event.source, occurred_at=event.occurred_at,
            inbound_sid=event.inbound_sid, inbound_text=event.inbound_text,
            reply_text=event.reply_text, evidence=event.evidence)
        before = await self.state(tx, event.phone, event.program_id)
        after = fold(before, event, event_id, self.pending_for)
        await self._store(tx, after)
        await self.profiles.record(tx, event.phone, "consent.changed", {
            "program": event.program_id, "kind": event.kind.value, "source": event.source,
            "status": after.status.value, "consent_event_id": event_id,
        }, event.occurred_at)
        if self.on_event is not None:
            self.on_event(event)
        return event_id, after

    async def opt_out(self, tx: Tx, event: ConsentEvent, program_ids: Iterable[str]
                      ) -> list[int]:
        """Record the opt-out `event` for each program not already opted out at its time
        (STOP, carrier signals, a reviewed message alike); returns the new event ids."""
        statuses = {s.program_id: s.effective(event.occurred_at)
                    for s in await self.states(tx, event.phone)}
        recorded = []
        for program_id in program_ids:
            if statuses.get(program_id) is not Status.OPTED_OUT:
                event_id, _ = await self.record(tx, replace(event, program_id=program_id))
                recorded.append(event_id)
        return recorded

    async def _store(self, tx: Tx, state: ConsentState) -> None:
        assert state.since is not None and state.last_event_id is not None
        await sql.put_status(
            tx, phone=state.phone, program_id=state.program_id, status=state.status.value,
            since=isoformat(state.since), last_event_id=state.last_event_id,
            opt_in_event_id=state.opt_in_event_id,
            pending_until=isoformat(state.pending_until) if state.pending_until else None)

    async def rebuild(self, tx: Tx) -> int:
        """Recompute every status from the events; returns how many differed from the
        materialised table (0 when the two agree, as they must)."""
        before = {(r["phone"], r["program_id"]): tuple(r) for r in await sql.all_status(tx)}
        states: dict[tuple[str, str], ConsentState] = {}
        after_id = 0
        while rows := await sql.all_events(tx, after_id, 5000):
            for row in rows:
                event = ConsentEvent.from_row(row)
                key = (event.phone, event.program_id)
                current = states.get(key) or ConsentState(*key)
                states[key] = fold(current, event, row["id"], self.pending_for)
            after_id = rows[-1]["id"]
        await sql.clear_status(tx)
        for state in states.values():
            await self._store(tx, state)
        after = {(r["phone"], r["program_id"]): tuple(r) for r in await sql.all_status(tx)}
        return sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))
