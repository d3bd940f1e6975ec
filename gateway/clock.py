"""Injected time: everything inside is timezone-aware UTC; tests freeze it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol


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
