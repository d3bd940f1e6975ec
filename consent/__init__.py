"""The consent ledger and the rules that decide whether a message may be sent.

Imports neither handlers nor campaigns, and never aiohttp or the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Callable

from consent.carrier import CarrierOptOuts
from consent.keywords import Families, Intent, classify
from consent.ledger import ConsentEvent, ConsentLedger, ConsentState, Kind, Source, Status
from consent.programs import Catalog
from consent.responder import ConsentResponder, Outcome
from consent.rules import ConsentRules, Decision, Purpose, Verdict
from gateway.config import Config
from gateway.profiles import ProfileStore

__all__ = ["CarrierOptOuts", "Catalog", "Consent", "ConsentEvent", "ConsentLedger",
           "ConsentResponder", "ConsentRules", "ConsentState", "Decision", "Families",
           "Intent", "Kind", "Outcome", "Purpose", "Source", "Status", "Verdict",
           "classify"]


class Consent:
    """Everything consent offers, built once from the configuration."""

    def __init__(self, config: Config, profiles: ProfileStore, *,
                 on_event: Callable[[ConsentEvent], None] | None = None) -> None:
        self.catalog = Catalog(config)
        self.ledger = ConsentLedger(profiles, pending_for=self.catalog.pending_for,
                                    on_event=on_event)
        self.rules = ConsentRules(self.ledger, self.catalog.policies())
        self.responder = ConsentResponder(self.ledger, self.catalog)
        self.carrier = CarrierOptOuts(self.ledger, self.catalog, config.phone.default_region)
