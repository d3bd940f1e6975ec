"""Throughput as carriers count it: segments per second, smooth, with a hard one-second bound.

Two rules together. Spacing: after a message of k segments the next may go k/rate seconds
later, so traffic is an even stream rather than a burst at the top of each second. The
window: the segments sent in any one-second window never exceed the rate, even when spacing
alone would let a 2-segment message tip it over, or when the sender catches up after a pause.
A message counts from the moment the provider answers it (see :meth:`RateLimiter.settle`), so
one that was slow on its way out cannot bunch up with the next ones at the carrier.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

#: A sender this far behind its schedule starts afresh instead of catching up in a burst.
_CATCH_UP_SECONDS = 0.05


class RateLimiter:
    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.window, self.clock = rate, 1.0, clock
        self._next = 0.0
        self._sent: deque[list[float]] = deque()  # [time, segments], oldest first
        self._in_window = 0
        self._factor, self._slow_until = 1.0, 0.0
        self._lock = asyncio.Lock()

    def current_rate(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        return self.rate * (self._factor if now < self._slow_until else 1.0)

    def slow_down(self, factor: float, seconds: float) -> None:
        """Send at `factor` of the rate for `seconds` (the provider answered 429)."""
        self._factor = factor
        self._slow_until = self.clock() + seconds

    def delay(self, segments: int, now: float) -> float:
        """Seconds until `segments` more may go (0: now)."""
        rate = self.current_rate(now)
        while self._sent and self._sent[0][0] <= now - self.window:
            self._in_window -= int(self._sent.popleft()[1])
        wait = self._next - now
        capacity = max(1, math.floor(rate * self.window + 1e-9))
        excess = self._in_window + segments - capacity
        if excess > 0 and self._sent:
            freed = 0.0
            for at, count in self._sent:
                freed += count
                if freed >= excess:
                    wait = max(wait, at + self.window - now)
                    break
            else:  # bigger than a second's worth: it goes alone, into an empty window
                wait = max(wait, max(at for at, _ in self._sent) + self.window - now)
        return max(wait, 0.0)

    def take(self, segments: int, now: float) -> list[float]:
        entry = [now, float(segments)]
        self._sent.append(entry)
        self._in_window += segments
        start = self._next if now - self._next < _CATCH_UP_SECONDS else now
        self._next = start + segments / self.current_rate(now)
        return entry

    async def acquire(self, segments: int) -> list[float]:
        """Wait until `segments` may be sent, and count them as sent; returns the entry to
        hand to :meth:`settle` once the provider has answered."""
        async with self._lock:
            while True:
                now = self.clock()
                wait = self.delay(segments, now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            return self.take(segments, now)

    def settle(self, entry: list[float]) -> None:
        """The provider answered: the message reached it by now. Counting it from this later
        moment keeps a message that was slow on the way out from sharing a carrier second
        with the ones after it (it costs a round trip of rate, about 0.2%)."""
        entry[0] = max(entry[0], self.clock())
