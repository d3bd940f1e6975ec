"""Provider faults, in process: look-ups never hold sending up, sends back off through an
outage and resume when it ends, unknown outcomes follow the operator's policy, and receipts
that never came are fetched. The real twilio library against the Twilio fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway import keys
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ConfigFactory,
    admin,
    eventually,
    free_port,
    on_the_fake,
    sample,
)
from tests.fakes.twilio_server import FakeTwilio

PHONE = "+12125550147"


@pytest.fixture
async def quiet_fake() -> AsyncIterator[FakeTwilio]:
    """A fake that sends no receipts: as if they were all lost."""
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def start(make_config: ConfigFactory, make_client: Any) -> Callable[..., Any]:
    async def go(fake: FakeTwilio, *, outbound: dict[str, Any] | None = None,
                 provider: dict[str, Any] | None = None, rate: float = 50) -> Any:
        port = free_port()
        raw = on_the_fake(fake, port, timeout=0.5, rate=rate)
        raw["provider"] |= {"probe_max_seconds": 1.0} | (provider or {})
        raw["outbound"] = {"reconcile_after_seconds": 0.3, "retry_initial_seconds": 0.2,
                           "retry_max_seconds": 0.8} | (outbound or {})
        return await make_client(make_config(**raw), port=port)

    return go


async def send(client: Any, body: str, to: str = PHONE) -> int:
    response = await client.post("/api/v1/messages", headers=admin(), json={
        "to": to, "body": body, "program": "deals"})
    assert response.status == 202, await response.text()
    return int((await response.json())["id"])


async def shown(client: Any, message_id: int) -> dict[str, Any]:
    return dict(await (await client.get(f"/api/v1/messages/{message_id}",
                                        headers=admin())).json())


async def status_of(client: Any, message_id: int) -> str:
    return str((await shown(client, message_id))["status"])


async def status_is(client: Any, message_id: int, status: str) -> bool:
    return await status_of(client, message_id) == status


def created(fake: FakeTwilio, body: str) -> int:
    return sum(1 for r in fake.created if r.form["Body"] == body)


async def test_a_failing_list_never_holds_up_sending(start: Any, fake: FakeTwilio) -> None:
    fake.then(status=500, code=20500, message="oops")  # the first send's outcome is unknown
    fake.fail("list", status=503)
    # A message's own look-up back-off may grow long; the link's probes (at most 1 s apart
    # here) are what find out that the list is back.
    client = await start(fake, outbound={"retry_max_seconds": 30})
    unknown = await send(client, "the unknown one")
    await eventually(lambda: len(fake.requests) == 1, what="the first hand-over")
    began = time.monotonic()
    ids = [await send(client, f"later #{n}", f"+1212555{n:04d}") for n in range(20)]
    for message_id in ids:
        await eventually(lambda m=message_id: status_is(client, m, "delivered"),
                         seconds=5, what="later messages delivered while the list fails")
    assert time.monotonic() - began < 5
    await asyncio.sleep(2.0)
    # Look-ups back off (0.1–0.2 s, 0.2–0.4 s …), then probe at most 1 s apart: no storm.
    looked = len(fake.calls["list"])
    assert 3 <= looked <= 12, looked
    link = client.app[keys.OUTBOUND].health.lookup
    assert link.state.value in ("degraded", "down") and link.failures == looked
    assert await status_of(client, unknown) == "sending"
    events = [e["event"] for e in (await shown(client, unknown))["events"]]
    assert events[:3] == ["queued", "sending", "outcome_unknown"]
    assert "lookup_failed" in events

    fake.heal("list")
    await eventually(lambda: status_is(client, unknown, "delivered"), seconds=2.5,
                     what="the unknown one resolved once the list works")
    assert created(fake, "the unknown one") == 1  # not found at the provider: sent once
    assert link.state.value == "ok"


async def test_sends_back_off_through_an_outage_and_resume_when_it_ends(
        start: Any, fake: FakeTwilio) -> None:
    client = await start(fake, rate=20)
    fake.fail(status=503)  # every resource: the provider is down
    ids = [await send(client, f"outage #{n}", f"+1415555{n:04d}") for n in range(30)]
    health = client.app[keys.OUTBOUND].health
    await eventually(lambda: health.send.down, seconds=5, what="the send link down")
    ready = await (await client.get("/readyz")).json()
    assert ready["providers"]["twilio"]["operations"]["send"]["state"] == "down"
    assert "provider twilio: down" in ready["degraded"]
    [queue] = (await (await client.get("/api/v1/queue", headers=admin())).json())[
        "short_codes"]
    assert queue["provider_state"] == "down" and queue["drain_seconds"] is None
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_provider_state", operation="send", provider="twilio") == 2
    assert sample(metrics, "mcrm_provider_breaker_trips_total", operation="send",
                  provider="twilio") == 1
    tripped = len(fake.calls["create"])
    await asyncio.sleep(3.0)
    probes = len(fake.calls["create"]) - tripped
    # Down: one probe at a time, 0.5–1 s apart; not 30 messages each retrying.
    assert 2 <= probes <= 7, probes

    fake.heal()
    healed = time.monotonic()
    for message_id in ids:
        await eventually(lambda m=message_id: status_is(client, m, "delivered"),
                         seconds=15, what="every message delivered after the outage")
    first = min(r.at for r in fake.created)
    assert first - healed < 2.0  # sending resumed within the probe interval
    assert all(created(fake, f"outage #{n}") == 1 for n in range(30))
    assert health.send.state.value == "ok"
    for message_id in ids:
        message = await shown(client, message_id)
        assert message["status"] == "delivered" and message["error_code"] is None


@pytest.mark.parametrize("policy", ["give_up", "resend"])
async def test_an_outcome_unknown_too_long_follows_the_policy(
        start: Any, quiet_fake: FakeTwilio, policy: str) -> None:
    quiet_fake.then(status=500, code=20500, message="oops")  # not accepted in fact
    quiet_fake.fail("list", status=503)
    client = await start(quiet_fake, outbound={"unknown_outcome_minutes": 0.03,
                                               "unknown_outcome": policy})
    message_id = await send(client, "unknowable")
    final = "failed" if policy == "give_up" else "sent"
    await eventually(lambda: status_is(client, message_id, final), seconds=10,
                     what=f"the policy ({policy}) applied")
    message = await shown(client, message_id)
    if policy == "give_up":
        assert message["reason"] == "outcome_unknown"
        assert "given up, never sent twice" in message["error_message"]
        assert created(quiet_fake, "unknowable") == 0  # at most once
    else:
        assert created(quiet_fake, "unknowable") == 1  # at least once: sent again
        retry = next(e for e in message["events"] if e["event"] == "retry")
        assert "sent again" in retry["detail"]["message"]


async def test_a_given_up_message_that_went_after_all_is_moved_on_by_its_receipt(
        start: Any, fake: FakeTwilio) -> None:
    fake.callback_delay = 2.5  # the receipts come after the give-up
    fake.then(status=500, code=20500, message="oops", accept=True)
    fake.fail("list", status=503)
    client = await start(fake, outbound={"unknown_outcome_minutes": 0.02})
    message_id = await send(client, "went after all")
    await eventually(lambda: status_is(client, message_id, "failed"), seconds=5)
    await eventually(lambda: status_is(client, message_id, "delivered"), seconds=5,
                     what="the receipt proves it went")
    assert created(fake, "went after all") == 1
    assert (await shown(client, message_id))["provider_sid"] in fake.messages


async def test_receipts_that_never_came_are_fetched_from_the_provider(
        start: Any, quiet_fake: FakeTwilio) -> None:
    client = await start(quiet_fake, outbound={"receipt_check_after_seconds": 0.3,
                                               "receipt_recheck_max_seconds": 0.6})
    ids = [await send(client, f"receipt #{n}", f"+1646555{n:04d}") for n in range(6)]
    await eventually(lambda: len(quiet_fake.created) == 6)
    by_body = {m["body"]: sid for sid, m in quiet_fake.messages.items()}
    # The carrier delivered four and failed one; the sixth stays "sent" at the carrier.
    for n in range(4):
        quiet_fake.messages[by_body[f"receipt #{n}"]]["status"] = "delivered"
    quiet_fake.messages[by_body["receipt #4"]].update(status="undelivered", error_code=30005)
    quiet_fake.messages[by_body["receipt #5"]]["status"] = "sent"
    for n in range(4):
        await eventually(lambda n=n: status_is(client, ids[n], "delivered"), seconds=5,
                         what="the fetched status recorded")
    await eventually(lambda: status_is(client, ids[4], "undelivered"), seconds=5)
    undelivered = await shown(client, ids[4])
    assert undelivered["error_code"] == "30005"
    [receipt] = undelivered["receipts"]
    assert receipt["params"]["Source"] == "status fetch"
    await asyncio.sleep(1.5)
    # Not final: fetched again at doubling intervals (0.3, 0.6, 0.6 … s), not in a loop.
    fetches = len(quiet_fake.calls["fetch"])
    assert await status_of(client, ids[5]) == "sent"
    assert fetches <= 6 + 1 + 6, fetches
    [queue] = (await (await client.get("/api/v1/queue", headers=admin())).json())[
        "short_codes"]
    assert queue["awaiting_receipt"] == 1
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_outbound_awaiting_receipt", short_code="12345") == 1
    quiet_fake.messages[by_body["receipt #5"]]["status"] = "delivered"
    await eventually(lambda: status_is(client, ids[5], "delivered"), seconds=5)
    # The receipts reached the timeline (and so the CRM) like any callback.
    profile = await (await client.get("/api/v1/profiles/+16465550000/timeline",
                                      headers=admin())).json()
    assert "message.status" in [e["type"] for e in profile["events"]]
