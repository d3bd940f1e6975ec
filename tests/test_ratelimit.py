"""The segment rate limiter, on a simulated clock: the carrier's rules to the letter."""

from __future__ import annotations

import itertools
import random
from bisect import bisect_left

import pytest

from gateway.outbound.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(limiter: RateLimiter, clock: Clock, sizes: list[int]) -> list[tuple[float, int]]:
    """Send `sizes` back to back as fast as the limiter lets them go."""
    sent = []
    for segments in sizes:
        while (wait := limiter.delay(segments, clock.now)) > 0:
            clock.now += wait
        limiter.take(segments, clock.now)
        sent.append((clock.now, segments))
    return sent


def busiest_second(sent: list[tuple[float, int]]) -> int:
    times = [t for t, _ in sent]
    totals = [0]
    for _, segments in sent:
        totals.append(totals[-1] + segments)
    return max(totals[bisect_left(times, t + 1.0)] - totals[i] for i, t in enumerate(times))


def achieved(sent: list[tuple[float, int]]) -> float:
    return (sum(s for _, s in sent) - sent[-1][1]) / (sent[-1][0] - sent[0][0])


@pytest.mark.parametrize("rate", [1, 3, 10, 100, 250])
def test_no_second_goes_over_the_rate(rate: int) -> None:
    clock = Clock()
    rng = random.Random(rate)
    sizes = [min(rng.choice((1, 1, 2, 3)), rate) for _ in range(rate * 30 + 20)]
    sent = run(RateLimiter(rate, clock=clock), clock, sizes)
    assert busiest_second(sent) <= rate


@pytest.mark.parametrize("rate", [100, 250, 1000])
def test_a_short_codes_rate_is_reached_within_two_percent(rate: int) -> None:
    clock = Clock()
    rng = random.Random(rate)
    sent = run(RateLimiter(rate, clock=clock), clock,
               [rng.choice((1, 2)) for _ in range(rate * 20)])
    assert achieved(sent) == pytest.approx(rate, rel=0.02)


def test_the_stream_is_even_not_a_burst_at_the_top_of_each_second() -> None:
    clock = Clock()
    sent = run(RateLimiter(100, clock=clock), clock, [1] * 300)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sent)]
    assert max(gaps) < 0.02 and min(gaps) > 0.005  # about 10 ms apart, always


def test_a_429_slows_the_rate_down_for_a_while() -> None:
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    limiter.slow_down(0.5, seconds=10)
    slow = run(limiter, clock, [1] * 200)
    assert achieved(slow) == pytest.approx(50, rel=0.03)
    clock.now += 10
    fast = run(limiter, clock, [1] * 300)
    assert achieved(fast) == pytest.approx(100, rel=0.02)


def test_a_message_bigger_than_a_second_goes_alone() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)
    sent = run(limiter, clock, [5, 1])
    assert sent[1][0] - sent[0][0] >= 1.0


def test_a_message_counts_from_when_the_provider_answered() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)
    first = limiter.take(2, clock.now)
    clock.now += 0.3  # the provider took 300 ms to answer
    limiter.settle(first)
    clock.now += 0.8  # 1.1 s after the hand-over, but 0.8 s after the answer
    assert limiter.delay(1, clock.now) == pytest.approx(0.2)
