"""The links the gateway depends on (a provider's sends, look-ups and status fetches, each CRM
endpoint): how to wait between tries, and whether a link is up.

One rule for every retry loop: the wait doubles from a first delay to a cap, with jitter,
and counts *attempts* (a wake-up or a commit elsewhere never shortens it, so an outage is
met by a few tries, not a storm). One success resets it, so a single failure after a
recovery costs a short wait, not the cap. So does a failure of another kind than the ones
before it (an endpoint that answered 503, or refused connections, now answers 500): it is
back in some form, and its new fault starts a new count (:attr:`Link.streak`).

A :class:`Link` is ``ok``; ``degraded`` after a failure; ``down`` after ``trip_after``
failures in a row. While down (the breaker is open) the caller asks :meth:`Link.may_try`
before each try: it lets one probe through at a time, spaced by the same back-off, and the
first success closes the breaker. A state change is logged as one line, never a traceback
per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from gateway.clock import isoformat

log = logging.getLogger(__name__)


def backoff(attempt: int, initial: float, cap: float, rng: random.Random | None = None
            ) -> float:
    """Seconds to wait after the `attempt`-th failure in a row (1, 2, …): `initial` doubled
    per failure up to `cap`, then half of it fixed and half random (so that many waiters
    that failed together do not come back together)."""
    full = min(cap, initial * 2 ** min(max(attempt - 1, 0), 60))
    return full / 2 + (rng or random).uniform(0, full / 2)


class State(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


#: Gauge values, so an alert can say `>= 2`.
STATE_VALUE = {State.OK: 0, State.DEGRADED: 1, State.DOWN: 2}


class Link:
    """The health of one link, shared by everything that uses it (all of a provider's short
    codes share its send link)."""

    def __init__(self, what: str, *, trip_after: int = 5, probe_initial: float = 1.0,
                 probe_max: float = 30.0, monotonic: Callable[[], float] = time.monotonic,
                 on_trip: Callable[[], None] = lambda: None,
                 on_recover: Callable[[], None] = lambda: None) -> None:
        self.what = what  # "provider twilio send", "CRM endpoint crm"
        self.trip_after, self.probe_initial, self.probe_max = trip_after, probe_initial, probe_max
        self._monotonic = monotonic
        self._on_trip, self._on_recover = on_trip, on_recover
        self.state = State.OK
        self.failures = 0  # in a row
        self.streak = 0  # in a row and of the same kind: sets the back-off
        self._kind: str | None = None
        self.trips = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._since = monotonic()
        self._next_probe = 0.0
        self._probes = 0

    @property
    def down(self) -> bool:
        return self.state is State.DOWN

    def succeeded(self) -> None:
        if self.state is State.OK:
            return
        was, failures = self.state, self.failures
        self.failures, self.streak, self._probes, self._kind = 0, 0, 0, None
        self._set(State.OK)
        log.log(logging.WARNING if was is State.DOWN else logging.INFO,
                "%s: ok again after %d failure%s in a row", self.what, failures,
                "" if failures == 1 else "s")
        if was is State.DOWN:
            self._on_recover()

    def failed(self, error: str, kind: str | None = None) -> None:
        """One more failure; `kind` classes it (a new kind starts a new back-off)."""
        if kind != self._kind:
            self.streak, self._kind = 0, kind
            self._probes = 0
        self.failures += 1
        self.streak += 1
        self.last_error, self.last_error_at = error, datetime.now(UTC)
        now = self._monotonic()
        if self.state is State.DOWN:
            self._probes += 1
            self._next_probe = now + backoff(self._probes, self.probe_initial, self.probe_max)
        elif self.failures >= self.trip_after:
            self.trips += 1
            self._probes = 1
            self._next_probe = now + backoff(1, self.probe_initial, self.probe_max)
            self._set(State.DOWN)
            log.warning("%s: down after %d failures in a row (last: %s); trying again now "
                        "and then until it answers", self.what, self.failures, error)
            self._on_trip()
        elif self.state is State.OK:
            self._set(State.DEGRADED)
            log.warning("%s: degraded (%s)", self.what, error)

    def may_try(self) -> bool:
        """Always, unless down; while down, once per probe interval (one probe at a time)."""
        if self.state is not State.DOWN:
            return True
        now = self._monotonic()
        if now < self._next_probe:
            return False
        # Until the probe reports back, nobody else tries: hold the next one off.
        self._next_probe = now + backoff(self._probes + 1, self.probe_initial, self.probe_max)
        return True

    def next_try_in(self) -> float:
        """Seconds until `may_try` may say yes (0 when it would now)."""
        if self.state is not State.DOWN:
            return 0.0
        return max(self._next_probe - self._monotonic(), 0.0)

    def _set(self, state: State) -> None:
        self.state, self._since = state, self._monotonic()

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state.value, "consecutive_failures": self.failures,
                "last_error": self.last_error,
                "last_error_at": isoformat(self.last_error_at) if self.last_error_at else None,
                "for_seconds": round(self._monotonic() - self._since, 1),
                "breaker_trips": self.trips}


class OwnFaults:
    """A loop of ours failing on our own side (the database busy or gone): the first
    failure's traceback, then one line each, and waits that back off like any retry."""

    def __init__(self, what: str, *, initial: float = 1.0, cap: float = 30.0) -> None:
        self.what, self.initial, self.cap = what, initial, cap
        self.count = 0

    def failed(self, exc: BaseException) -> float:
        """Log it; returns the seconds to wait before the next try."""
        self.count += 1
        if self.count == 1:
            log.error("%s: unexpected error", self.what, exc_info=exc)
        else:
            log.warning("%s: failing again (%d in a row): %s: %s", self.what, self.count,
                        type(exc).__name__, exc)
        return backoff(self.count, self.initial, self.cap)

    async def attempt(self, step: Callable[[], Awaitable[bool]]) -> bool:
        """One round of a worker loop: its answer ("busy"), or False after a failure of
        ours, once its back-off has been slept out."""
        try:
            busy = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await asyncio.sleep(self.failed(exc))
            return False
        self.ok()
        return busy

    def ok(self) -> None:
        if self.count:
            log.warning("%s: working again after %d failure%s", self.what, self.count,
                        "" if self.count == 1 else "s")
            self.count = 0


async def idle(wake: asyncio.Event, seconds: float) -> None:
    """Wait for `wake` (set after the wait began), at most `seconds`."""
    wake.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)
