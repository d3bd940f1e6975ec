"""Opt-outs as the dispatchers must see them: at once, without waiting for a database read.

The ledger calls :meth:`OptOutWatch.noticed` inside the transaction that records an opt-out.
From that moment no message to the number is handed to the provider on an earlier decision:
the dispatcher checks here right before each provider call, and a message claimed before the
opt-out goes back to be decided again (by then the opt-out is committed, or it never will be).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from gateway.clock import Clock

#: Claims older than this have long been handed over or returned: forget older notices.
_KEEP_SECONDS = 300.0


class OptOutWatch:
    def __init__(self, clock: Clock, *, observe: Callable[[float], None] = lambda s: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.observe, self.monotonic = clock, observe, monotonic
        self._noticed: dict[str, float] = {}
        self._swept = monotonic()

    def noticed(self, phone: str, arrived: datetime) -> None:
        """An opt-out for `phone` that arrived at `arrived` is being recorded now."""
        now = self.monotonic()
        self._noticed[phone] = now
        # From here on nothing more can go to `phone`: that delay is the exposure we report.
        self.observe(max((self.clock.now() - arrived).total_seconds(), 0.0))
        if now - self._swept > _KEEP_SECONDS:
            self._noticed = {p: t for p, t in self._noticed.items()
                             if now - t < _KEEP_SECONDS}
            self._swept = now

    def noticed_since(self, phone: str, since: float) -> bool:
        at = self._noticed.get(phone)
        return at is not None and at >= since


class CampaignHolds:
    """Paused and cancelled campaigns as the dispatchers must see them: at once. A message
    of such a campaign claimed earlier goes back before the provider call; the claim that
    takes it again holds or cancels it, from the campaign's status in the database."""

    def __init__(self) -> None:
        self._stopped: set[str] = set()

    def stop(self, campaign_id: str) -> None:
        self._stopped.add(campaign_id)

    def resume(self, campaign_id: str) -> None:
        self._stopped.discard(campaign_id)

    def stopped(self, campaign_id: str | None) -> bool:
        return campaign_id is not None and campaign_id in self._stopped
