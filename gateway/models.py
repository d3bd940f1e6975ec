"""Plain value objects that cross layers: nothing here knows about HTTP or SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class InboundMessage:
    """A text a customer sent to one of our short codes, as the provider reported it."""

    provider: str
    provider_sid: str
    from_number: str  # E.164
    to_number: str  # our short code or long number
    body: str
    received_at: datetime
    num_segments: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    """One delivery receipt (status callback) for a message we sent."""

    provider: str
    provider_sid: str
    status: str
    received_at: datetime
    error_code: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutgoingSMS:
    """What a provider needs to send one message."""

    to_number: str
    from_number: str
    body: str
    status_callback: str | None = None


@dataclass(frozen=True)
class Reply:
    """A text to send back at once to the customer who wrote (inline in the webhook answer)."""

    text: str
    program_id: str | None = None
