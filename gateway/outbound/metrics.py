"""The pipeline's series: what was sent, retried, refused, and how fast opt-outs bite."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gateway.metrics import Registry

if TYPE_CHECKING:
    from gateway.outbound.outcomes import Outcome


class OutboundMetrics:
    def __init__(self, registry: Registry) -> None:
        self.sends = registry.counter(
            "mcrm_outbound_sends_total",
            "Hand-overs to the provider by short code and result (sent, failed, retry, "
            "unknown, recheck).", ("short_code", "result"))
        self.segments = registry.counter(
            "mcrm_outbound_segments_total", "Segments accepted by the provider, by short code.",
            ("short_code",))
        self.decisions = registry.counter(
            "mcrm_outbound_claims_total",
            "Messages taken from the queue by short code and what consent and validity said "
            "(sending, stopped, waiting).", ("short_code", "result"))
        self.latency = registry.histogram(
            "mcrm_provider_send_seconds", "Time the provider took to answer a send.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.breaker_trips = registry.counter(
            "mcrm_provider_breaker_trips_total",
            "Times a provider's sends, look-ups or status fetches were marked down (the "
            "breaker opened), by provider and operation.", ("provider", "operation"))
        self.opt_out_exposure = registry.histogram(
            "mcrm_opt_out_block_seconds",
            "From an opt-out arriving to the moment no message to that number can be handed "
            "to the provider any more.",
            (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

    def claimed(self, short_code: str, sending: int, stopped: int, waiting: int) -> None:
        for result, count in (("sending", sending), ("stopped", stopped),
                              ("waiting", waiting)):
            if count:
                self.decisions.inc(count, short_code=short_code, result=result)

    def outcomes(self, short_code: str, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            self.sends.inc(short_code=short_code, result=o.kind)
            if o.kind == "sent":
                self.segments.inc(o.segments or o.message.segments, short_code=short_code)

    def provider_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)
