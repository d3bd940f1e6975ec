"""The outbound pipeline: every message the gateway sends leaves through here.

A message is a row before any provider call (:mod:`gateway.outbound.outbox`); one
:class:`~gateway.outbound.dispatcher.Dispatcher` per short code claims, checks consent at
the moment of sending, paces by segments per second and hands it over; unknown outcomes are
looked up at the provider before anything is sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from consent import Consent
from gateway.clock import Clock
from gateway.config import Config
from gateway.db import Database
from gateway.db import outbound as sql
from gateway.outbound.dispatcher import Dispatcher
from gateway.outbound.health import ProviderHealth
from gateway.outbound.metrics import OutboundMetrics
from gateway.outbound.outbox import NewMessage, Outbox, Priority, QueueRefused
from gateway.outbound.ratelimit import RateLimiter
from gateway.outbound.reconcile import ReceiptSink
from gateway.outbound.watch import CampaignHolds, OptOutWatch
from gateway.providers import Provider

__all__ = ["CampaignHolds", "NewMessage", "OptOutWatch", "Outbound", "Outbox", "Priority",
           "QueueRefused"]


class Outbound:
    """The outbox, a dispatcher per short code, and the limiters they share."""

    def __init__(self, config: Config, db: Database, provider: Provider, consent: Consent,
                 clock: Clock, watch: OptOutWatch, metrics: OutboundMetrics, *,
                 holds: CampaignHolds | None = None, outbox: Outbox | None = None,
                 receipts: ReceiptSink | None = None,
                 committed: Callable[[], None] = lambda: None) -> None:
        self.config, self.db, self.clock = config, db, clock
        self.outbox = outbox or Outbox(config)
        self.watch = watch
        self.holds = holds or CampaignHolds()
        self.health = ProviderHealth(provider.name, config.provider,
                                     on_trip=lambda op: metrics.breaker_trips.inc(
                                         provider=provider.name, operation=op),
                                     on_recover=self._recovered)
        reads = RateLimiter(config.provider.reads_per_second)
        account = (RateLimiter(config.provider.messages_per_second)
                   if config.provider.messages_per_second > 0 else None)
        per_program = {p.id: RateLimiter(p.messages_per_second) for p in config.programs
                       if p.messages_per_second > 0}

        def limiters(program_id: str | None) -> list[RateLimiter]:
            found = [per_program[program_id]] if program_id in per_program else []
            return found + ([account] if account else [])

        status_url = config.service.public_url.rstrip("/") + "/webhooks/twilio/status?outbound="
        self.dispatchers = {
            sc.code: Dispatcher(
                short_code=sc.code, db=db, provider=provider, rules=consent.rules,
                carrier=consent.carrier, profiles=consent.ledger.profiles, clock=clock,
                config=config.outbound,
                limiter=RateLimiter(sc.messages_per_second),
                limiters=limiters, watch=watch,
                metrics=metrics, status_url=status_url, holds=self.holds,
                health=self.health, reads=reads, on_receipts=receipts, committed=committed)
            for sc in config.short_codes}

    def _recovered(self, operation: str) -> None:
        """A provider link came back: what backs off behind it goes now."""
        for dispatcher in self.dispatchers.values():
            if operation == "send":
                dispatcher.provider_recovered()
            elif operation == "lookup":
                dispatcher.reconciler.lookups_recovered()

    async def queue(self, messages: Sequence[NewMessage], at: datetime | None = None
                    ) -> list[int]:
        """Queue in one transaction (all or none) and wake the senders."""
        when = at or self.clock.now()
        ids = await self.db.write(lambda tx: self.outbox.queue_many(tx, messages, when))
        self.wake()
        return ids

    def wake(self, short_code: str | None = None) -> None:
        for code, dispatcher in self.dispatchers.items():
            if short_code is None or code == short_code:
                dispatcher.wake()

    async def queue_status(self) -> list[dict[str, Any]]:
        """Per short code: what waits, and how long the ready part takes at today's rate."""
        counts: dict[str, dict[str, tuple[int, int]]] = {}
        for row in await sql.depth(self.db):
            counts.setdefault(row[0], {})[row[1]] = (int(row[2]), int(row[3]))
        receipts = await sql.awaiting_receipts(self.db)
        out = []
        for code, dispatcher in self.dispatchers.items():
            mine = counts.get(code, {})
            ready = sum(mine.get(s, (0, 0))[1] for s in ("queued", "sending"))
            rate = dispatcher.limiter.current_rate()
            out.append({
                "short_code": code,
                "queued": mine.get("queued", (0, 0))[0],
                "deferred": mine.get("deferred", (0, 0))[0],
                "sending": mine.get("sending", (0, 0))[0],
                "awaiting_receipt": receipts.get(code, 0),
                "segments_waiting": ready,
                "segments_per_second": rate,
                # While the provider takes no sends, nothing drains: no time is promised.
                "drain_seconds": None if self.health.send.down else round(ready / rate, 1),
                "provider": self.health.provider,
                "provider_state": self.health.send.state.value})
        return out
