"""A claimed message, and what became of its hand-over (or look-up) until it is written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.providers import SendError, SendErrorKind


@dataclass(frozen=True)
class Claimed:
    id: int
    to_number: str
    body: str
    program_id: str | None
    segments: int
    attempts: int
    expires_at: datetime
    claimed: float  # monotonic time of the claim: opt-outs noticed after it win
    campaign_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one hand-over (or look-up), waiting to be written."""

    message: Claimed
    kind: str  # sent, failed, retry, unknown, recheck
    at: datetime
    sid: str | None = None
    segments: int | None = None
    error: SendError | None = None
    #: Why, where the error's kind does not say it (recheck: provider_down; failed:
    #: outcome_unknown).
    reason: str | None = None
    #: unknown: when to look it up (default: reconcile_after_seconds from now); set by a
    #: look-up that failed, which also counts it.
    lookup_at: datetime | None = None

    @property
    def contact_stopped(self) -> bool:
        """21610: the recipient opted out at the carrier."""
        return self.error is not None and self.error.kind is SendErrorKind.CONTACT_STOPPED
