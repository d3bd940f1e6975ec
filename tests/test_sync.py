"""CRM sync: every profile event reaches the receiver, in order per profile, signed, once per
event id, through outages, slowness and errors; dead letters and their replay."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from consent import ConsentEvent, Kind
from gateway import keys
from gateway.config import Config, SyncConfig, SyncEndpointConfig
from gateway.db import sync as sync_sql
from gateway.metrics import GatewayMetrics
from gateway.sync import SyncRelay, sign, verify
from tests.conftest import ConfigFactory, admin, eventually, free_port, sample
from tests.fakes.crm_receiver import CrmReceiver

SECRET = "crm-shared-secret-0123456789"


def sync_config(make_config: ConfigFactory, url: str, **settings: Any) -> Config:
    endpoint = {"name": "crm", "url": url, "secret": SECRET, "timeout_seconds": 0.5,
                "batch_size": 20}
    endpoint.update(settings.pop("endpoint", {}))
    other = settings.pop("other", {})
    return make_config(sync={"endpoints": [endpoint], "retry_initial_seconds": 0.02,
                             "retry_max_seconds": 0.2, "poll_interval_seconds": 0.05,
                             **settings}, **other)


@pytest.fixture
async def receiver() -> AsyncIterator[CrmReceiver]:
    crm = CrmReceiver(SECRET, free_port())
    yield crm
    await crm.stop()


async def text(client: Any, sid: str, sender: str, body: str) -> None:
    response = await client.post("/webhooks/twilio/sms", data={
        "MessageSid": sid, "From": sender, "To": "12345", "Body": body})
    assert response.status == 200


async def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def all_event_ids(client: Any) -> list[str]:
    rows = await client.app[keys.DB].fetchall("SELECT event_id FROM profile_events ORDER BY id")
    return [r[0] for r in rows]


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"events":[]}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == "sha256=" + expected
    assert verify(SECRET, "1700000000", body, "sha256=" + expected)
    assert not verify(SECRET, "1700000001", body, "sha256=" + expected)
    assert not verify("other-secret-0123456789", "1700000000", body, "sha256=" + expected)


def test_backoff_doubles_up_to_the_maximum_and_honours_retry_after(config: Config) -> None:

    settings = SyncConfig(retry_initial_seconds=1.0, retry_max_seconds=8.0)
    endpoint = SyncEndpointConfig(name="crm", url="http://x", secret=SECRET)  # type: ignore
    relay = SyncRelay(None, None, None, endpoint, settings, GatewayMetrics())  # type: ignore
    delays = []
    for failures in range(1, 7):
        relay.link.streak = failures
        delays.append(relay._backoff(None))
    bounds = [1, 2, 4, 8, 8, 8]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bounds, strict=True)), delays
    assert 5.0 <= relay._backoff(5.0) <= 8.0  # Retry-After: 5 is waited at least
    assert relay._backoff(3600.0) <= 8.0  # but never beyond the maximum


async def test_events_arrive_signed_in_order_with_the_current_profile(
        make_config: ConfigFactory, make_client: Any, receiver: CrmReceiver) -> None:
    await receiver.start()
    client = await make_client(sync_config(make_config, receiver.url))
    await text(client, "SM1", "+12125550101", "JOIN")
    response = await client.patch("/api/v1/profiles/+12125550101", headers=admin(),
                                  json={"first_name": "Ada", "add_tags": ["vip"]})
    assert response.status == 200
    await text(client, "SM2", "+12125550101", "thanks")
    await wait_for(lambda: len(receiver.events) == 3)
    assert [e["type"] for e in receiver.events] == ["message.in", "profile.updated",
                                                    "message.in"]
    assert [e["sequence"] for e in receiver.events] == [1, 2, 3]
    first = receiver.events[0]
    assert first["phone"] == "+12125550101"
    assert first["data"]["body"] == "JOIN"
    assert first["profile"]["derived_time_zones"] == ["America/New_York"]
    last = receiver.events[-1]["profile"]  # the profile as it is when sent
    assert (last["first_name"], last["tags"], last["counters"]["inbound"]) == (
        "Ada", ["vip"], 2)
    assert receiver.events[1]["data"]["changes"]["first_name"] == {"old": None, "new": "Ada"}
    assert receiver.bad_signatures == 0
    assert receiver.ids() == await all_event_ids(client)


async def test_every_event_arrives_through_outage_slowness_and_errors(
        make_config: ConfigFactory, make_client: Any, receiver: CrmReceiver) -> None:
    """The acceptance scenario: down for a while, then slow, then failing sometimes, while
    customers text and a campaign sends (with the sandbox's receipts)."""
    client = await make_client(sync_config(
        make_config, receiver.url, endpoint={"batch_size": 4}, other={"programs": [{
            "id": "deals", "name": "Deals", "short_code": "12345", "keywords": ["DEALS"],
            "help_text": "Deals: reply STOP to cancel.", "quiet_hours": "always"}]}))
    senders = [f"+1212555{n:04d}" for n in range(8)]
    app = client.app

    async def opt_in(tx: Any) -> None:
        for sender in senders:
            await app[keys.CONSENT].ledger.record(tx, ConsentEvent(
                phone=sender, program_id="deals", kind=Kind.OPT_IN_CONFIRMED,
                source="web_form", occurred_at=app[keys.CLOCK].now(),
                evidence={"form_url": "https://acme.example/join"}))

    async def customers_text(rounds: int, prefix: str) -> None:
        for r in range(rounds):
            for n, sender in enumerate(senders):
                await text(client, f"SM{prefix}{r}x{n}", sender, f"{prefix} message {r}")
            await client.patch(f"/api/v1/profiles/{senders[r % 8]}", headers=admin(),
                               json={"attributes": {"round": f"{prefix}{r}"}})

    await app[keys.DB].write(opt_in)
    created = await (await client.post("/api/v1/campaigns", headers=admin(), json={
        "name": "Sale", "program": "deals", "template": "Hi {first_name|there}: 20% off"})
                     ).json()
    scheduled = await client.post(f"/api/v1/campaigns/{created['id']}/schedule",
                                  headers=admin(), json={"now": True})
    assert scheduled.status == 200
    await customers_text(3, "down")  # the receiver is not even listening
    await asyncio.sleep(0.3)
    status = (await (await client.get("/api/v1/sync/status", headers=admin())).json())
    assert status["endpoints"][0]["backlog"] == len(await all_event_ids(client))
    assert "cannot reach" in status["endpoints"][0]["last_error"]

    # Slower than the sender's 0.5 s timeout: it gives up, the receiver still processes.
    receiver.slow_next, receiver.slow_rate, receiver.slow_seconds = 2, 0.3, 0.8
    await receiver.start()
    await customers_text(3, "slow")
    await wait_for(lambda: receiver.slow >= 2)
    receiver.slow_rate, receiver.fail_next, receiver.fail_rate = 0.0, 2, 0.3
    await customers_text(3, "flaky")

    async def campaign_done() -> bool:
        stats = await (await client.get(f"/api/v1/campaigns/{created['id']}/stats",
                                        headers=admin())).json()
        return bool(stats["delivered"] == len(senders))

    await eventually(campaign_done, seconds=20, what="campaign delivered")
    expected = await all_event_ids(client)
    await wait_for(lambda: set(expected) <= set(receiver.ids()), seconds=30)
    await wait_for(lambda: receiver.in_flight == 0)

    assert receiver.bad_signatures == 0
    counts = collections.Counter(receiver.ids())
    assert set(counts) == set(expected)  # nothing lost, nothing invented
    assert receiver.failures >= 2 and receiver.slow >= 2  # the weather really was bad
    assert sum(counts.values()) > len(counts)  # so some batches came twice, same ids
    first_seen: dict[str, int] = {}
    order: dict[str, list[int]] = collections.defaultdict(list)
    for event in receiver.events:
        if event["id"] not in first_seen:
            first_seen[event["id"]] = event["sequence"]
            order[event["phone"]].append(event["sequence"])
    for phone, sequences in order.items():
        assert sequences == sorted(sequences), f"out of order for {phone}"
        assert sequences == list(range(1, len(sequences) + 1))
    status = (await (await client.get("/api/v1/sync/status", headers=admin())).json())
    assert status["endpoints"][0]["dead_letters"] == 0
    types = collections.Counter({e["id"]: e["type"] for e in receiver.events}.values())
    assert types["campaign.queued"] == types["message.out"] == len(senders)
    assert types["message.status"] >= len(senders)  # sent, delivered


async def test_undeliverable_events_become_dead_letters_and_can_be_replayed(
        make_config: ConfigFactory, make_client: Any, receiver: CrmReceiver) -> None:
    receiver.status = 500
    await receiver.start()
    config = sync_config(make_config, receiver.url, max_age_hours=0.3 / 3600)  # 0.3 s
    client = await make_client(config)
    for n in range(3):
        await text(client, f"SM{n}", f"+1212555010{n}", "hello")
    await wait_for(lambda: receiver.requests >= 3)
    await asyncio.sleep(0.4)

    async def status() -> dict[str, Any]:
        body = await (await client.get("/api/v1/sync/status", headers=admin())).json()
        return body["endpoints"][0]

    for _ in range(100):
        if (await status())["dead_letters"] == 3:
            break
        await asyncio.sleep(0.05)
    current = await status()
    assert current["dead_letters"] == 3 and current["backlog"] == 0
    assert current["last_error"].startswith("HTTP 500")
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_sync_dead_letters", endpoint="crm") == 3

    listed = await (await client.get("/api/v1/sync/dead-letters", headers=admin())).json()
    assert [d["phone"] for d in listed["dead_letters"]] == [
        "+12125550100", "+12125550101", "+12125550102"]
    assert receiver.events == []

    receiver.status = 200
    response = await client.post("/api/v1/sync/dead-letters/replay", headers=admin(),
                                 json={"endpoint": "crm"})
    assert (await response.json()) == {"replayed": 3}
    await wait_for(lambda: len(receiver.events) == 3)
    assert receiver.ids() == await all_event_ids(client)
    assert (await status())["dead_letters"] == 0


async def test_replay_refuses_an_unknown_endpoint(make_config: ConfigFactory,
                                                  make_client: Any,
                                                  receiver: CrmReceiver) -> None:
    client = await make_client(sync_config(make_config, receiver.url))
    response = await client.post("/api/v1/sync/dead-letters/replay", headers=admin(),
                                 json={"endpoint": "nope"})
    assert response.status == 400
    assert "not a configured sync endpoint" in (await response.json())["error"]["message"]


async def test_a_new_endpoint_receives_the_whole_history(
        make_config: ConfigFactory, make_client: Any, receiver: CrmReceiver) -> None:
    plain = make_config()
    first = await make_client(plain)
    await text(first, "SM1", "+12125550101", "before the CRM was connected")
    await first.close()
    await receiver.start()
    await make_client(sync_config(make_config, receiver.url))
    await wait_for(lambda: len(receiver.events) == 1)
    assert receiver.events[0]["data"]["body"] == "before the CRM was connected"


async def test_a_relay_survives_an_error_on_our_side(
        make_config: ConfigFactory, make_client: Any, receiver: CrmReceiver,
        monkeypatch: pytest.MonkeyPatch) -> None:

    original, calls = sync_sql.next_events, {"n": 0}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database hiccup")
        return await original(*args, **kwargs)

    monkeypatch.setattr(sync_sql, "next_events", flaky)
    await receiver.start()
    client = await make_client(sync_config(make_config, receiver.url))
    await text(client, "SM1", "+12125550101", "hello")
    await wait_for(lambda: len(receiver.events) == 1)
    assert calls["n"] >= 2
    assert (await client.get("/readyz")).status == 200
