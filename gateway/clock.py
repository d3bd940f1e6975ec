"""Injected time: everything inside is timezone-aware UTC; tests freeze it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol

#: Instants the gateway takes from outside stay far from datetime's own ends, so adding a
#: validity, a back-off or a time zone to them never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def within_range(at: datetime) -> datetime:
    """`at` in UTC when it lies from 1970 to 9000; ValueError saying so otherwise."""
    try:
        utc = at.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"{at.isoformat()} is out of range (from 1970 to 9000)")
    return utc


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


@lru_cache(maxsize=512)
def isoformat(at: datetime) -> str:
    """The one textual form of a time stored in the database (sorts correctly). Cached: one
    message's time is written a dozen times (its row, events, consent, replies)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")
