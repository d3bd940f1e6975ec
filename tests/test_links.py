"""Retry loops back off per attempt, and a link's health (ok, degraded, down) with its breaker:
one probe at a time while down, one log line per change of state."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway import keys
from gateway.links import Link, OwnFaults, State, backoff
from tests.conftest import ConfigFactory, admin, eventually, free_port
from tests.fakes.crm_receiver import CrmReceiver

SECRET = "crm-shared-secret-0123456789"


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_the_first_delay_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    for attempt, full in ((1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (60, 30),
                          (10_000, 30)):
        delays = {backoff(attempt, 1.0, 30.0, rng) for _ in range(40)}
        assert all(full / 2 <= d <= full for d in delays), (attempt, delays)
        assert len(delays) > 1


def test_a_link_is_degraded_after_a_failure_and_down_after_enough_in_a_row(
        caplog: pytest.LogCaptureFixture) -> None:
    trips, recoveries = [], []
    link = Link("provider x sends", trip_after=3, on_trip=lambda: trips.append(1),
                on_recover=lambda: recoveries.append(1))
    caplog.set_level(logging.INFO, logger="gateway.links")
    link.failed("HTTP 503")
    assert (link.state, link.failures) == (State.DEGRADED, 1)
    link.succeeded()
    assert (link.state, link.failures) == (State.OK, 0)  # one success resets the count
    for _ in range(3):
        link.failed("HTTP 503")
    assert link.down and trips == [1] and link.trips == 1
    for _ in range(20):  # failing on while down: no new line, no new trip
        link.failed("connection refused")
    assert trips == [1]
    link.succeeded()
    assert link.state is State.OK and recoveries == [1]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5, lines  # degraded, ok, degraded, down, ok: one line per change
    assert "down after 3 failures in a row (last: HTTP 503)" in lines[3]
    assert "ok again after 23 failures" in lines[4]
    snapshot = link.snapshot()
    assert snapshot["state"] == "ok" and snapshot["last_error"] == "connection refused"


def test_while_down_one_probe_goes_at_a_time_spaced_by_back_off() -> None:
    clock = Monotonic()
    link = Link("provider x look-ups", trip_after=2, probe_initial=1.0, probe_max=4.0,
                monotonic=clock)
    assert link.may_try()
    link.failed("503")
    link.failed("503")
    assert link.down
    assert not link.may_try()  # the first probe waits 0.5–1 s
    clock.now += 1.0
    assert link.may_try()
    assert not link.may_try()  # one probe at a time
    gaps = []
    for _ in range(6):  # each failed probe waits longer, up to the cap
        link.failed("503")
        waited = 0.0
        while not link.may_try():
            clock.now += 0.05
            waited += 0.05
        gaps.append(waited)
    assert gaps[0] <= 2.05 and all(g <= 4.05 for g in gaps), gaps
    assert gaps[-1] >= 2.0  # capped, not shrinking
    link.succeeded()
    assert link.may_try() and link.may_try()  # ok again: no gating


@pytest.fixture
async def crm() -> AsyncIterator[CrmReceiver]:
    receiver = CrmReceiver(SECRET, free_port())
    await receiver.start()
    yield receiver
    await receiver.stop()


async def test_the_crm_relay_sleeps_out_its_back_off_while_customers_text(
        make_config: ConfigFactory, make_client: Any, crm: CrmReceiver) -> None:
    """Every inbound commit wakes the relay; a failure wait is slept out all the same, so an
    outage meets a few attempts, not one per commit."""
    config = make_config(sync={
        "endpoints": [{"name": "crm", "url": crm.url, "secret": SECRET,
                       "timeout_seconds": 0.5, "batch_size": 50}],
        "retry_initial_seconds": 0.2, "retry_max_seconds": 0.8, "poll_interval_seconds": 0.05})
    client = await make_client(config)
    relay = client.app[keys.SYNC].relays[0]
    crm.status = 503
    started, texts = time.monotonic(), 0
    while time.monotonic() - started < 3.0:  # about 50 commits a second, each a wake-up
        response = await client.post("/webhooks/twilio/sms", data={
            "MessageSid": f"SM{texts:032d}", "From": f"+1212555{texts % 100:04d}",
            "To": "12345", "Body": "hello"})
        assert response.status == 200
        texts += 1
        await asyncio.sleep(0.02)
    attempts = crm.requests
    # 0.1–0.2, 0.2–0.4, then 0.4–0.8 s apart: at most about 9 in 3 s.
    assert 3 <= attempts <= 12, (attempts, texts)
    assert relay.link.state is State.DOWN and relay.failures == attempts
    status = await (await client.get("/api/v1/sync/status", headers=admin())).json()
    [endpoint] = status["endpoints"]
    assert endpoint["state"] == "down" and endpoint["consecutive_failures"] == attempts
    ready = await (await client.get("/readyz")).json()
    assert ready["crm"]["crm"]["state"] == "down"
    assert ready["degraded"] == ["CRM endpoint crm: down"]

    crm.status = 200
    crm.fail_next = 1  # the first attempt after the return meets one more error
    await eventually(lambda: len({e["id"] for e in crm.events}) >= texts, seconds=5,
                     what="every event delivered")
    assert relay.link.state is State.OK and relay.failures == 0


def test_a_failure_of_a_new_kind_starts_a_new_back_off() -> None:
    link = Link("CRM endpoint crm", trip_after=5)
    for _ in range(12):
        link.failed("HTTP 503", "unavailable")
    assert (link.failures, link.streak) == (12, 12)
    assert backoff(link.streak, 1.0, 30.0) >= 15  # at the cap
    link.failed("HTTP 500: oops", "error")  # it answers again, with a new fault
    assert (link.failures, link.streak) == (13, 1) and link.down
    assert backoff(link.streak, 1.0, 30.0) <= 1.0


def test_our_own_faults_log_one_traceback_then_one_line_each(
        caplog: pytest.LogCaptureFixture) -> None:
    faults = OwnFaults("dispatcher 12345", initial=1.0, cap=8.0)
    caplog.set_level(logging.INFO, logger="gateway.links")
    waits = [faults.failed(OSError("disk I/O error")) for _ in range(6)]
    assert all(w <= b for w, b in zip(waits, (1, 2, 4, 8, 8, 8), strict=True)), waits
    assert waits[-1] >= 4  # backed off, not a tight loop
    records = caplog.records
    assert [r.exc_info is not None for r in records] == [True] + [False] * 5
    assert "failing again (6 in a row): OSError: disk I/O error" in records[-1].getMessage()
    faults.ok()
    assert "working again after 6 failures" in caplog.records[-1].getMessage()
    assert faults.count == 0
