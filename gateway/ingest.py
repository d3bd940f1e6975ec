"""What happens to a provider's report once the edge has checked and parsed it: store it."""

from __future__ import annotations

import logging

from gateway.db import Database, Tx
from gateway.db.messages import insert_inbound, insert_status
from gateway.metrics import GatewayMetrics
from gateway.models import InboundMessage, StatusUpdate
from gateway.phone import mask

log = logging.getLogger(__name__)


class Ingest:
    """Stores inbound messages (once per provider id) and every delivery receipt."""

    def __init__(self, db: Database, metrics: GatewayMetrics,
                 short_codes: frozenset[str] = frozenset()) -> None:
        self.db, self.metrics = db, metrics
        self.short_codes = short_codes

    async def inbound(self, msg: InboundMessage) -> bool:
        """Store `msg`; False when the provider had delivered this message id before."""
        rowid = await self.db.write(lambda tx: insert_inbound(tx, msg))
        if rowid is None:
            self.metrics.inbound_duplicates.inc()
            log.info("inbound %s from %s already stored: provider retry", msg.provider_sid,
                     mask(msg.from_number))
            return False
        # Only our own numbers become label values: a forged To must not grow the series.
        label = msg.to_number if msg.to_number in self.short_codes else "other"
        self.metrics.inbound.inc(short_code=label)
        log.info("inbound %s from %s to %s stored as #%d", msg.provider_sid,
                 mask(msg.from_number), msg.to_number, rowid)
        return True

    async def status(self, update: StatusUpdate) -> None:
        await self.db.write(lambda tx: self.record_status(tx, update))

    async def record_status(self, tx: Tx, update: StatusUpdate) -> None:
        """Append a receipt inside the caller's transaction (webhook or sandbox carrier)."""
        await insert_status(tx, update)
        self.metrics.status_callbacks.inc(status=update.status)
