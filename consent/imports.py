"""Consent that arrives with a profile import: recorded in the ledger with its evidence."""

from __future__ import annotations

from datetime import UTC, datetime

from consent.ledger import ConsentEvent, ConsentLedger, Kind
from gateway.clock import isoformat
from gateway.db import Tx
from gateway.profile_import import ConsentWriter
from gateway.profiles import ImportedConsent


def consent_writer(ledger: ConsentLedger) -> ConsentWriter:
    """The writer `import_profiles` calls for each chunk's consent columns."""

    async def write(tx: Tx, items: list[tuple[str, ImportedConsent]], at: datetime) -> None:
        for phone, consent in items:
            captured = datetime.fromisoformat(consent.captured_at)
            if captured.tzinfo is None:  # a plain date: the start of that day, UTC
                captured = captured.replace(tzinfo=UTC)
            await ledger.record(tx, ConsentEvent(
                phone=phone, program_id=consent.program_id,
                kind=Kind.IMPORTED if consent.opt_in else Kind.OPT_OUT, source=consent.source,
                occurred_at=captured,
                evidence={**consent.evidence, "imported_at": isoformat(at)}))

    return write
