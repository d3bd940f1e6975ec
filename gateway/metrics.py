"""A small Prometheus registry: counters, histograms and gauges read at scrape time.

Enough of the text exposition format (version 0.0.4) for Prometheus, VictoriaMetrics and
Grafana Agent; no dependency beyond the standard library.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Awaitable, Callable, Iterable

Labels = tuple[tuple[str, str], ...]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """Thread-safe: write functions count from the database's writer thread."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(key)} {_num(value)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Iterable[float]) -> None:
        self.name, self.help = name, help_text
        self.buckets = sorted(buckets)
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, totals = self._series.setdefault(key, ([0] * len(self.buckets),
                                                           [0.0, 0.0]))
            if index < len(counts):
                counts[index] += 1
            totals[0] += value
            totals[1] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for key, (counts, (total, n)) in sorted(self._series.items()):
            cumulative = 0
            for bound, count in zip(self.buckets, counts, strict=True):
                cumulative += count
                yield f"{self.name}_bucket{_labels(key, (('le', _num(bound)),))} {cumulative}"
            yield f"{self.name}_bucket{_labels(key, (('le', '+Inf'),))} {int(n)}"
            yield f"{self.name}_sum{_labels(key)} {_num(total)}"
            yield f"{self.name}_count{_labels(key)} {int(n)}"


#: Reads several gauges at once (one query for related series): name → labels → value.
GaugeReader = Callable[[], Awaitable[dict[str, dict[Labels, float]]]]


class Registry:
    def __init__(self) -> None:
        self._metrics: list[Counter | Histogram] = []
        self._gauges: list[tuple[dict[str, str], GaugeReader]] = []

    def counter(self, name: str, help_text: str) -> Counter:
        metric = Counter(name, help_text)
        self._metrics.append(metric)
        return metric

    def histogram(self, name: str, help_text: str, buckets: Iterable[float]) -> Histogram:
        metric = Histogram(name, help_text, buckets)
        self._metrics.append(metric)
        return metric

    def gauges(self, helps: dict[str, str], read: GaugeReader) -> None:
        """Values computed at scrape time by one reader (queue depth from the database, …);
        `helps` names each gauge the reader returns, with its help text."""
        self._gauges.append((helps, read))

    async def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        for helps, read in self._gauges:
            values = await read()
            for name, help_text in helps.items():
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} gauge")
                for key, value in sorted(values.get(name, {}).items()):
                    lines.append(f"{name}{_labels(key)} {_num(value)}")
        return "\n".join(lines) + "\n"


class GatewayMetrics:
    """The gateway's own series; one instance per app."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.inbound = self.registry.counter(
            "mcrm_inbound_messages_total", "Inbound messages stored, by short code.")
        self.inbound_silenced = self.registry.counter(
            "mcrm_inbound_silenced_total",
            "Inbound texts left unanswered: the number had its fill of automatic replies.")
        self.inbound_duplicates = self.registry.counter(
            "mcrm_inbound_duplicates_total", "Inbound webhooks retried by the provider.")
        self.status_callbacks = self.registry.counter(
            "mcrm_status_callbacks_total", "Delivery receipts received, by status.")
        self.webhook_rejected = self.registry.counter(
            "mcrm_webhook_rejected_total", "Webhooks refused, by endpoint and reason.")
        self.consent_events = self.registry.counter(
            "mcrm_consent_events_total", "Consent ledger events, by program, kind and source.")
        self.sync_delivered = self.registry.counter(
            "mcrm_sync_delivered_total", "Profile events delivered to the CRM, by endpoint.")
        self.sync_failures = self.registry.counter(
            "mcrm_sync_failures_total", "Failed CRM deliveries (batches), by endpoint.")
        self.webhook_latency = self.registry.histogram(
            "mcrm_webhook_duration_seconds", "Time to answer a provider webhook.",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
