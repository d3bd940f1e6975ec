"""Prometheus metrics through the official client library (`prometheus_client`).

Counters and histograms are the library's (thread-safe: write functions count from the
database's writer thread), each declared with its label names; gauges are read at scrape
time by async readers (queue depth from the database …) and handed to the library as a
collector. Each app has a registry of its own, with the process collectors operators expect
beside ours: resident memory, CPU seconds, open file descriptors, garbage collections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

Labels = tuple[tuple[str, str], ...]

#: The text format every Prometheus version reads (what generate_latest writes).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Counters as they always were here: `name_total` only, no `name_created` series beside them.
prometheus_client.disable_created_metrics()


class Counter:
    """A counter whose labels are given by name at each `inc` (as the library's `labels()`)."""

    def __init__(self, metric: prometheus_client.Counter, labels: Sequence[str]) -> None:
        self._metric, self._labelled = metric, bool(labels)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        (self._metric.labels(**labels) if self._labelled else self._metric).inc(amount)


class Histogram:
    def __init__(self, metric: prometheus_client.Histogram, labels: Sequence[str]) -> None:
        self._metric, self._labelled = metric, bool(labels)

    def observe(self, value: float, **labels: str) -> None:
        (self._metric.labels(**labels) if self._labelled else self._metric).observe(value)


#: Reads several gauges at once (one query for related series): name → labels → value.
GaugeReader = Callable[[], Awaitable[dict[str, dict[Labels, float]]]]


class _Gauges(Collector):
    """Gauges one reader returns, as read before the last scrape."""

    def __init__(self, helps: dict[str, str], read: GaugeReader) -> None:
        self.helps, self.read = helps, read
        self.values: dict[str, dict[Labels, float]] = {}

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the names are ours

    def collect(self) -> Iterator[Metric]:
        for name, help_text in self.helps.items():
            series = sorted(self.values.get(name, {}).items())
            names = [k for k, _ in series[0][0]] if series else []
            family = GaugeMetricFamily(name, help_text, labels=names)
            for labels, value in series:
                family.add_metric([v for _, v in labels], value)
            yield family


class Registry:
    def __init__(self) -> None:
        self.library = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.library)
        self._gauges: list[_Gauges] = []

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(prometheus_client.Counter(name, help_text, labelnames=labels,
                                                 registry=self.library), labels)

    def histogram(self, name: str, help_text: str, buckets: Iterable[float],
                  labels: Sequence[str] = ()) -> Histogram:
        return Histogram(prometheus_client.Histogram(
            name, help_text, labelnames=labels, buckets=tuple(buckets),
            registry=self.library), labels)

    def gauges(self, helps: dict[str, str], read: GaugeReader) -> None:
        """Values computed at scrape time by one reader (queue depth from the database, …);
        `helps` names each gauge the reader returns, with its help text."""
        gauges = _Gauges(helps, read)
        self.library.register(gauges)
        self._gauges.append(gauges)

    async def render(self) -> str:
        for gauges in self._gauges:
            gauges.values = await gauges.read()
        return generate_latest(self.library).decode()


class GatewayMetrics:
    """The gateway's own series; one instance per app."""

    def __init__(self) -> None:
        self.registry = Registry()
        counter = self.registry.counter
        self.inbound = counter(
            "mcrm_inbound_messages_total", "Inbound messages stored, by short code.",
            ("short_code",))
        self.inbound_silenced = counter(
            "mcrm_inbound_silenced_total",
            "Inbound texts left unanswered: the number had its fill of automatic replies.")
        self.inbound_duplicates = counter(
            "mcrm_inbound_duplicates_total", "Inbound webhooks retried by the provider.")
        self.status_callbacks = counter(
            "mcrm_status_callbacks_total", "Delivery receipts received, by status.",
            ("status",))
        self.webhook_rejected = counter(
            "mcrm_webhook_rejected_total", "Webhooks refused, by endpoint and reason.",
            ("endpoint", "reason"))
        self.consent_events = counter(
            "mcrm_consent_events_total", "Consent ledger events, by program, kind and source.",
            ("program", "kind", "source"))
        self.sync_delivered = counter(
            "mcrm_sync_delivered_total", "Profile events delivered to the CRM, by endpoint.",
            ("endpoint",))
        self.sync_failures = counter(
            "mcrm_sync_failures_total", "Failed CRM deliveries (batches), by endpoint.",
            ("endpoint",))
        self.webhook_latency = self.registry.histogram(
            "mcrm_webhook_duration_seconds", "Time to answer a provider webhook.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), ("endpoint",))
