"""What happens to a provider's report once the edge has checked and parsed it: store it,
and put it on the customer's profile in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.db import Database, Tx
from gateway.db.messages import insert_inbound, insert_status
from gateway.metrics import GatewayMetrics
from gateway.models import InboundMessage, StatusUpdate
from gateway.phone import mask
from gateway.profiles import ProfileStore

log = logging.getLogger(__name__)


class Ingest:
    """Stores inbound messages (once per provider id) and every delivery receipt."""

    def __init__(self, db: Database, metrics: GatewayMetrics, profiles: ProfileStore, *,
                 short_codes: frozenset[str] = frozenset(),
                 committed: Callable[[], None] = lambda: None) -> None:
        self.db, self.metrics, self.profiles = db, metrics, profiles
        self.short_codes = short_codes
        self.committed = committed

    async def inbound(self, msg: InboundMessage) -> bool:
        """Store `msg`; False when the provider had delivered this message id before."""

        async def store(tx: Tx) -> int | None:
            rowid = await insert_inbound(tx, msg)
            if rowid is not None:
                await self.profiles.on_inbound(tx, msg)
            return rowid

        rowid = await self.db.write(store)
        if rowid is None:
            self.metrics.inbound_duplicates.inc()
            log.info("inbound %s from %s already stored: provider retry", msg.provider_sid,
                     mask(msg.from_number))
            return False
        self.committed()
        # Only our own numbers become label values: a forged To must not grow the series.
        label = msg.to_number if msg.to_number in self.short_codes else "other"
        self.metrics.inbound.inc(short_code=label)
        log.info("inbound %s from %s to %s stored as #%d", msg.provider_sid,
                 mask(msg.from_number), msg.to_number, rowid)
        return True

    async def status(self, update: StatusUpdate) -> None:
        await self.db.write(lambda tx: self.record_status(tx, update))
        self.committed()

    async def record_status(self, tx: Tx, update: StatusUpdate) -> None:
        """Append a receipt inside the caller's transaction (webhook or sandbox carrier)."""
        await insert_status(tx, update)
        await self.profiles.on_status(tx, update)
        self.metrics.status_callbacks.inc(status=update.status)
