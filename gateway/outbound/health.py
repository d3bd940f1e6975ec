"""A provider's health, one link per kind of call: sends, look-ups, status fetches.

Each fails on its own (a Twilio-compatible endpoint may take sends and have no Messages
list), so each has its own breaker; every short code sending through the provider shares
them, since an outage is the provider's, not a short code's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.config import ProviderConfig
from gateway.links import STATE_VALUE, Link

OPERATIONS = ("send", "lookup", "fetch")


class ProviderHealth:
    def __init__(self, provider: str, config: ProviderConfig, *,
                 on_trip: Callable[[str], None] = lambda op: None,
                 on_recover: Callable[[str], None] = lambda op: None) -> None:
        self.provider = provider
        self.links = {op: Link(f"provider {provider} {_WORDS[op]}",
                               trip_after=config.down_after_failures,
                               probe_max=config.probe_max_seconds,
                               on_trip=lambda op=op: on_trip(op),  # type: ignore[misc]
                               on_recover=lambda op=op: on_recover(op))  # type: ignore[misc]
                      for op in OPERATIONS}

    @property
    def send(self) -> Link:
        return self.links["send"]

    @property
    def lookup(self) -> Link:
        return self.links["lookup"]

    @property
    def fetch(self) -> Link:
        return self.links["fetch"]

    def snapshot(self) -> dict[str, Any]:
        """For /readyz: the provider's state is its worst link's."""
        links = {op: link.snapshot() for op, link in self.links.items()}
        worst = max((link.state for link in self.links.values()), key=STATE_VALUE.__getitem__)
        return {"state": worst.value, "operations": links}


_WORDS = {"send": "sends", "lookup": "look-ups", "fetch": "status fetches"}
