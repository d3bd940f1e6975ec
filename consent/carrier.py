"""Carrier signals: a recipient who replied STOP at the carrier is opted out here too."""

from __future__ import annotations

from consent.ledger import ConsentEvent, ConsentLedger, Kind, Source
from consent.programs import Catalog
from gateway.db import Tx
from gateway.errors import InvalidNumber
from gateway.models import StatusUpdate
from gateway.phone import to_e164
from gateway.providers.error_codes import CONTACT_STOPPED


class CarrierOptOuts:
    """Turns Twilio error 21610 on a receipt into opt-outs with source ``carrier``."""

    def __init__(self, ledger: ConsentLedger, catalog: Catalog, default_region: str) -> None:
        self.ledger, self.catalog, self.region = ledger, catalog, default_region

    async def on_status(self, tx: Tx, update: StatusUpdate) -> list[int]:
        if update.error_code != CONTACT_STOPPED:
            return []
        short_code = str(update.params.get("From", ""))
        try:
            phone = to_e164(str(update.params.get("To", "")), self.region)
        except InvalidNumber:
            return []
        return await self.opt_out(tx, phone, short_code, update)

    async def opt_out(self, tx: Tx, phone: str, short_code: str,
                      update: StatusUpdate) -> list[int]:
        return await self.ledger.opt_out(tx, ConsentEvent(
            phone=phone, program_id="", kind=Kind.OPT_OUT, source=Source.CARRIER,
            occurred_at=update.received_at, evidence={
                "provider": update.provider, "provider_sid": update.provider_sid,
                "error_code": update.error_code, "short_code": short_code}),
            [p.id for p in self.catalog.stop_targets(short_code)])
