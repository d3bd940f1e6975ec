"""The outbound pipeline end to end: API → queue → dispatcher → real twilio library → the
Twilio-shaped fake on loopback → signed receipts back into the gateway."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway import keys, messages_cli
from gateway.clock import FrozenClock
from gateway.outbound import NewMessage
from gateway.outbound.dispatcher import Dispatcher
from tests.conftest import (
    ConfigFactory,
    admin,
    eventually,
    free_port,
    on_the_fake,
    sample,
    twilio_signature,
)
from tests.fakes.twilio_server import FakeTwilio

PHONE = "+12125550147"  # New York


@pytest.fixture
def start(make_config: ConfigFactory, make_client: Any, fake: FakeTwilio
          ) -> Callable[..., Any]:
    """The gateway on its own public URL (so the fake's callbacks reach it), sending to the
    fake through the real twilio library."""

    async def go(clock: Any = None, **changes: Any) -> Any:
        port = free_port()
        raw: dict[str, Any] = {
            **on_the_fake(fake, port, timeout=0.5, rate=1000),
            "outbound": {"reconcile_after_seconds": 0.3, "retry_initial_seconds": 0.05,
                         "retry_max_seconds": 0.2}}
        for key, value in changes.items():
            raw[key] = raw.get(key, {}) | value if isinstance(value, dict) else value
        return await make_client(make_config(**raw), port=port, clock=clock)

    return go


async def send(client: Any, body: str = "Your code is 1234", to: str = PHONE,
               **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/messages", headers=admin(), json={
        "to": to, "body": body, "program": "deals", **extra})
    assert response.status == 202, await response.text()
    return dict(await response.json())


async def message(client: Any, message_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/v1/messages/{message_id}", headers=admin())
    assert response.status == 200
    return dict(await response.json())


async def status_is(client: Any, message_id: int, *statuses: str) -> bool:
    return (await message(client, message_id))["status"] in statuses


def bodies(fake: FakeTwilio) -> list[str]:
    return [r.form["Body"] for r in fake.created]


async def test_one_off_message_goes_once_and_its_receipts_land_in_the_log(
        start: Any, fake: FakeTwilio) -> None:
    client = await start()
    queued = await send(client)
    assert (queued["status"], queued["encoding"], queued["segments"]) == (
        "queued", "GSM-7", 1)
    await eventually(lambda: status_is(client, queued["id"], "delivered"), what="delivered")
    shown = await message(client, queued["id"])
    [request] = fake.created
    assert request.form["To"] == PHONE and request.form["From"] == "12345"
    assert request.form["StatusCallback"].endswith(f"/webhooks/twilio/status?outbound="
                                                   f"{queued['id']}")
    assert shown["provider_sid"] in fake.messages
    assert [e["event"] for e in shown["events"]] == ["queued", "sending", "sent"]
    assert [r["status"] for r in shown["receipts"]] == ["sent", "delivered"]
    assert shown["attempts"] == 1 and shown["sent_at"]


@pytest.mark.parametrize(("payload", "message"), [
    ({"body": ""}, "body: a message needs some text"),
    ({"body": "x" * 1601}, "1601 characters, more than the 1600"),
    ({"program": "nope"}, "program: unknown program 'nope'"),
    ({"to": "12"}, "to:"),
    ({"purpose": "marketing"}, "marketing goes out through campaigns"),
    ({"validity_seconds": 0}, "validity_seconds"),
    ({"colour": "red"}, "colour: unknown field"),
])
async def test_a_message_that_cannot_go_is_refused_when_queued(
        start: Any, fake: FakeTwilio, payload: dict[str, Any], message: str) -> None:
    client = await start()
    response = await client.post("/api/v1/messages", headers=admin(), json={
        "to": PHONE, "body": "hello", "program": "deals", **payload})
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]
    listing = await (await client.get("/api/v1/messages", headers=admin())).json()
    assert listing["messages"] == []


async def test_encoding_and_segments_are_stored(start: Any, fake: FakeTwilio) -> None:
    client = await start()
    gsm = await send(client, "a" * 161)
    ucs = await send(client, "Merci ☺ " * 10)
    assert (gsm["encoding"], gsm["segments"]) == ("GSM-7", 2)
    assert (ucs["encoding"], ucs["segments"]) == ("UCS-2", 2)


async def test_500_then_429_are_retried_with_back_off_and_the_message_goes_once(
        start: Any, fake: FakeTwilio) -> None:
    fake.then(status=500, code=20500, message="Internal Server Error")
    fake.then(status=429, code=20429, message="Too Many Requests")
    client = await start()
    queued = await send(client)
    await eventually(lambda: status_is(client, queued["id"], "delivered"), what="delivered")
    assert len(fake.requests) == 3 and bodies(fake) == ["Your code is 1234"]
    shown = await message(client, queued["id"])
    events = [e["event"] for e in shown["events"]]
    # 500: the outcome is unknown, so the message is looked up (not found) before a resend.
    assert events == ["queued", "sending", "outcome_unknown", "retry", "sending", "retry",
                      "sending", "sent"]
    retries = [e for e in shown["events"] if e["event"] == "retry"]
    assert retries[1]["error_code"] == "20429"
    assert shown["attempts"] == 3
    limiter = client.app[keys.OUTBOUND].dispatchers["12345"].limiter
    assert limiter.current_rate() == 500  # a 429 slows the short code down for a while


async def test_a_timeout_the_provider_did_accept_is_found_and_not_sent_again(
        start: Any, fake: FakeTwilio) -> None:
    fake.then(delay=0.8)  # longer than the client's 0.5 s timeout; Twilio accepts it anyway
    client = await start(outbound={"reconcile_after_seconds": 1.5})
    queued = await send(client)
    await eventually(lambda: status_is(client, queued["id"], "sent", "delivered"),
                     what="sent")
    shown = await message(client, queued["id"])
    assert len(fake.requests) == 1
    assert shown["provider_sid"] == next(iter(fake.messages))
    assert "outcome_unknown" in [e["event"] for e in shown["events"]]


async def test_a_500_after_acceptance_is_found_by_the_look_up(start: Any,
                                                             fake: FakeTwilio) -> None:
    fake.then(status=500, code=20500, message="oops", accept=True)
    client = await start()
    queued = await send(client)
    await eventually(lambda: status_is(client, queued["id"], "sent", "delivered"))
    assert len(fake.requests) == 1 and len(fake.created) == 1


async def test_a_permanent_error_is_final_and_keeps_the_providers_words(
        start: Any, fake: FakeTwilio) -> None:
    fake.then(status=400, code=21211, message="The 'To' number is not a valid phone number.")
    client = await start()
    queued = await send(client)
    await eventually(lambda: status_is(client, queued["id"], "failed"))
    shown = await message(client, queued["id"])
    assert shown["error_code"] == "21211"
    assert shown["error_message"].endswith("The 'To' number is not a valid phone number.")
    assert len(fake.requests) == 1


async def test_21610_at_send_time_records_a_carrier_opt_out(start: Any,
                                                            fake: FakeTwilio) -> None:
    fake.then(status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    client = await start()
    first = await send(client)
    await eventually(lambda: status_is(client, first["id"], "failed"))
    history = await (await client.get(f"/api/v1/consent/{PHONE}", headers=admin())).json()
    assert [(e["kind"], e["source"]) for e in history["history"]] == [("opt_out", "carrier")]
    later = await send(client, "another")
    await eventually(lambda: status_is(client, later["id"], "cancelled"))
    assert (await message(client, later["id"]))["reason"] == "opted_out"
    assert len(fake.requests) == 1


async def test_an_opt_out_while_messages_are_queued_cancels_them_within_a_second(
        start: Any, fake: FakeTwilio) -> None:
    client = await start(short_codes=[{"code": "12345", "messages_per_second": 2}])
    ids = [(await send(client, f"notice {i}"))["id"] for i in range(6)]
    await eventually(lambda: len(fake.created) >= 2, what="two sent")
    form = {"MessageSid": "SM" + uuid.uuid4().hex, "From": PHONE, "To": "12345",
            "Body": "STOP"}
    public = client.app[keys.CONFIG].service.public_url
    arrived = time.monotonic()
    response = await client.post("/webhooks/twilio/sms", data=form,
                                 headers=twilio_signature(public + "/webhooks/twilio/sms", form))
    assert response.status == 200
    for message_id in ids:
        await eventually(lambda m=message_id: status_is(client, m, "cancelled", "sent",
                                                        "delivered"))
    statuses = [(await message(client, i))["status"] for i in ids]
    assert statuses.count("cancelled") >= 3, statuses
    late = [r.at - arrived for r in fake.created if r.at > arrived]
    assert late == [] or max(late) < 1.0
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_opt_out_block_seconds_count") == 1
    assert sample(metrics, "mcrm_opt_out_block_seconds_bucket", le="1.0") == 1


async def test_replies_go_before_campaign_traffic(start: Any, fake: FakeTwilio) -> None:
    client = await start(short_codes=[{"code": "12345", "messages_per_second": 1}])
    outbound = client.app[keys.OUTBOUND]
    await outbound.queue([NewMessage(PHONE, f"campaign {i}", "deals", "transactional",
                                     campaign_id="c1") for i in range(3)]
                         + [NewMessage(PHONE, "your answer", "deals", "reply")])
    await eventually(lambda: len(fake.created) >= 2, what="two sent")
    assert bodies(fake)[:2] == ["your answer", "campaign 0"]


async def test_receipts_move_forward_only_and_all_are_kept(start: Any,
                                                          fake: FakeTwilio) -> None:
    fake.send_callbacks = False
    client = await start()
    queued = await send(client)
    await eventually(lambda: status_is(client, queued["id"], "sent"))
    sid = next(iter(fake.messages))
    public = client.app[keys.CONFIG].service.public_url
    url = f"{public}/webhooks/twilio/status?outbound={queued['id']}"
    for status, code in (("delivered", None), ("sent", None), ("delivered", None),
                         ("undelivered", "30003")):
        form = {"MessageSid": sid, "MessageStatus": status, "To": PHONE, "From": "12345",
                **({"ErrorCode": code} if code else {})}
        response = await client.post(f"/webhooks/twilio/status?outbound={queued['id']}",
                                     data=form, headers=twilio_signature(url, form))
        assert response.status == 200
    shown = await message(client, queued["id"])
    assert shown["status"] == "delivered"  # neither the late "sent" nor a second final
    assert [r["status"] for r in shown["receipts"]] == ["delivered", "sent", "delivered",
                                                        "undelivered"]
    unknown = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    response = await client.post("/webhooks/twilio/status", data=unknown, headers=(
        twilio_signature(f"{public}/webhooks/twilio/status", unknown)))
    assert response.status == 200
    forged = {"MessageSid": sid, "MessageStatus": "failed"}
    response = await client.post("/webhooks/twilio/status", data=forged,
                                 headers={"X-Twilio-Signature": "AAAA"})
    assert response.status == 403
    count = await client.app[keys.DB].fetchone(
        "SELECT COUNT(*) FROM status_callbacks WHERE status = 'failed'")
    assert count is not None and count[0] == 0


async def test_quiet_hours_defer_marketing_and_release_it_in_the_morning(
        start: Any, fake: FakeTwilio) -> None:
    night = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 02:00 in New York
    clock = FrozenClock(night)
    client = await start(clock=clock)
    await client.post("/api/v1/consent", headers=admin(), json={
        "phone": PHONE, "program": "deals", "action": "opt_in", "source": "web_form",
        "evidence": {"form_url": "https://acme.example/join"}})
    outbound = client.app[keys.OUTBOUND]
    [mid] = await outbound.queue([NewMessage(PHONE, "Deal of the day", "deals", "marketing")])
    await eventually(lambda: status_is(client, mid, "deferred"))
    shown = await message(client, mid)
    assert shown["reason"] == "quiet_hours"
    assert shown["next_attempt_at"] == "2026-11-24T13:00:00.000000+00:00"  # 08:00 local
    # Deferred, never dropped: the default validity counts from when it may go.
    assert shown["expires_at"] == "2026-11-24T17:00:00.000000+00:00"
    assert fake.requests == []
    clock.advance(timedelta(hours=6, seconds=1))
    outbound.wake()
    await eventually(lambda: status_is(client, mid, "sent", "delivered"))
    shown = await message(client, mid)
    assert shown["consent_event_id"] is not None  # the opt-in that allowed it
    assert bodies(fake) == ["Deal of the day"]


async def test_a_message_that_cannot_go_in_its_validity_expires(start: Any,
                                                               fake: FakeTwilio) -> None:
    clock = FrozenClock(datetime(2026, 11, 24, 7, 0, tzinfo=UTC))
    client = await start(clock=clock)
    await client.post("/api/v1/consent", headers=admin(), json={
        "phone": PHONE, "program": "deals", "action": "opt_in", "source": "web_form",
        "evidence": {"form_url": "https://acme.example/join"}})
    [mid] = await client.app[keys.OUTBOUND].queue([NewMessage(
        PHONE, "Flash sale, 1 hour only", "deals", "marketing", validity=timedelta(hours=1))])
    await eventually(lambda: status_is(client, mid, "expired"))
    assert (await message(client, mid))["reason"] == "quiet_hours"
    assert fake.requests == []


async def test_the_log_is_filtered_and_paginated(start: Any, fake: FakeTwilio) -> None:
    client = await start()
    for i in range(5):
        await send(client, f"n{i}", to="+12125550100" if i % 2 else PHONE)
    page = await (await client.get("/api/v1/messages?limit=2&phone=%2B12125550147",
                                   headers=admin())).json()
    assert [m["body"] for m in page["messages"]] == ["n4", "n2"]
    rest = await (await client.get(
        f"/api/v1/messages?limit=2&phone=%2B12125550147&cursor={page['next_cursor']}",
        headers=admin())).json()
    assert [m["body"] for m in rest["messages"]] == ["n0"] and rest["next_cursor"] is None
    bad = await client.get("/api/v1/messages?status=lost", headers=admin())
    assert bad.status == 400


async def test_queue_status_projects_the_time_to_drain(start: Any, fake: FakeTwilio) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    client = await start(short_codes=[{"code": "12345", "messages_per_second": 2}])
    await client.app[keys.OUTBOUND].queue(
        [NewMessage(PHONE, "x", "deals", "transactional", not_before=later)] * 3
        + [NewMessage(PHONE, "y" * 200, "deals", "transactional")] * 10)  # 2 segments each
    body = await (await client.get("/api/v1/queue", headers=admin())).json()
    [code] = body["short_codes"]
    assert (code["short_code"], code["deferred"], code["segments_per_second"]) == (
        "12345", 3, 2)
    assert 16 <= code["segments_waiting"] <= 20
    assert code["drain_seconds"] == code["segments_waiting"] / 2


async def test_a_double_opt_in_request_is_sent_through_the_pipeline(start: Any,
                                                                   fake: FakeTwilio) -> None:
    client = await start()
    response = await client.post("/api/v1/consent", headers=admin(), json={
        "phone": PHONE, "program": "deals", "action": "opt_in", "source": "web_form",
        "double_opt_in": True, "evidence": {"form_url": "https://acme.example/join"}})
    assert response.status == 201
    queued = (await response.json())["queued_message_id"]
    await eventually(lambda: status_is(client, queued, "sent", "delivered"))
    [request] = fake.created
    assert request.form["Body"].startswith("Deals: reply Y to confirm")
    assert (await message(client, queued))["purpose"] == "transactional"


async def test_messages_show_and_tail_print_the_log(start: Any, fake: FakeTwilio,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    client = await start()
    config = client.app[keys.CONFIG]
    first = await send(client, "first one")
    await eventually(lambda: status_is(client, first["id"], "delivered"))
    assert await messages_cli.show(config, first["id"]) == 0
    shown = capsys.readouterr().out
    assert f"message #{first['id']}  delivered" in shown
    assert "body          first one" in shown
    for line in ("queued", "sending: attempt=1", "sent: provider_sid=SM", "receipt sent",
                 "receipt delivered"):
        assert line in shown
    follower = asyncio.create_task(messages_cli.tail(config, lines=3, follow=True,
                                                     interval=0.05))
    await eventually(lambda: "receipt delivered" in capsys.readouterr().out
                     or follower.done())
    second = await send(client, "second one")
    seen: list[str] = []

    def printed() -> bool:
        seen.append(capsys.readouterr().out)
        return f"#{second['id']} +1212***0147 receipt delivered" in "".join(seen)

    await eventually(printed, what="the follower prints the new message's receipts")
    assert f"#{second['id']} +1212***0147 queued" in "".join(seen)
    follower.cancel()
    assert await follower == 0


async def test_every_message_sent_lands_on_the_recipients_profile(start: Any,
                                                                 fake: FakeTwilio) -> None:
    client = await start()
    queued = await send(client, "Your table is ready")
    await eventually(lambda: status_is(client, queued["id"], "delivered"))
    profile = await (await client.get(f"/api/v1/profiles/{PHONE}", headers=admin())).json()
    assert profile["counters"]["outbound"] == 1
    assert profile["counters"]["delivered"] == 1
    assert profile["last_outbound_at"]
    timeline = await (await client.get(f"/api/v1/profiles/{PHONE}/timeline",
                                       headers=admin())).json()
    types = [e["type"] for e in timeline["events"]]
    assert types == ["message.out", "message.status", "message.status"]
    out = timeline["events"][0]["data"]
    assert (out["message_id"], out["body"], out["provider_sid"]) == (
        queued["id"], "Your table is ready", next(iter(fake.messages)))
    assert [e["sequence"] for e in timeline["events"]] == [1, 2, 3]


async def test_a_timeout_the_provider_did_not_accept_is_sent_again_once(
        start: Any, fake: FakeTwilio) -> None:
    fake.then(delay=0.8, status=500, code=20500, message="gave up")  # answered too late
    client = await start(outbound={"reconcile_after_seconds": 1.0})
    queued = await send(client)
    await eventually(lambda: status_is(client, queued["id"], "sent", "delivered"))
    shown = await message(client, queued["id"])
    assert [e["event"] for e in shown["events"]][:5] == [
        "queued", "sending", "outcome_unknown", "retry", "sending"]
    assert shown["events"][2]["detail"]["error"] == "timeout"
    assert len(fake.requests) == 2 and len(fake.created) == 1


def test_back_off_doubles_with_jitter_up_to_the_cap(make_config: ConfigFactory) -> None:
    config = make_config(outbound={"retry_initial_seconds": 2, "retry_max_seconds": 30})
    dispatcher = Dispatcher(
        short_code="12345", db=None, provider=None, rules=None, carrier=None,  # type: ignore[arg-type]
        profiles=None, clock=None, config=config.outbound, limiter=None,  # type: ignore[arg-type]
        limiters=lambda _: [], watch=None, metrics=None, status_url="")  # type: ignore[arg-type]
    for attempt, full in ((1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)):
        delays = {dispatcher.backoff(attempt).total_seconds() for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered: a crowd of retries does not come back at once


async def test_a_programs_own_rate_paces_its_messages(start: Any, fake: FakeTwilio) -> None:
    client = await start(programs=[{"id": "deals", "name": "Deals", "short_code": "12345",
                                    "keywords": ["DEALS"], "messages_per_second": 4,
                                    "help_text": "Deals: reply STOP to cancel."}])
    await client.app[keys.OUTBOUND].queue(
        [NewMessage(PHONE, f"n{i}", "deals", "transactional") for i in range(6)])
    await eventually(lambda: len(fake.created) == 6)
    times = sorted(r.at for r in fake.created)
    assert times[-1] - times[0] >= 1.0  # 6 at 4 a second, from a short code allowed 1000


async def test_the_sandbox_sends_and_answers_with_receipts(client: Any) -> None:
    """The default set-up (no account): the same pipeline, the sandbox as the carrier."""
    queued = await send(client, "sandbox hello")
    await eventually(lambda: status_is(client, queued["id"], "delivered"))
    shown = await message(client, queued["id"])
    assert shown["provider"] == "sandbox"
    assert [r["status"] for r in shown["receipts"]] == ["sent", "delivered"]
    listing = await (await client.get("/api/v1/sandbox/messages", headers=admin())).json()
    assert [m["body"] for m in listing["messages"]] == ["sandbox hello"]


async def test_nothing_reaches_an_erased_number(start: Any, fake: FakeTwilio) -> None:
    client = await start()
    await client.post("/api/v1/consent", headers=admin(), json={
        "phone": PHONE, "program": "deals", "action": "opt_in", "source": "web_form",
        "evidence": {"form_url": "https://acme.example/join"}})
    response = await client.delete(f"/api/v1/profiles/{PHONE}", headers=admin())
    assert response.status == 200
    ids = await client.app[keys.OUTBOUND].queue([
        NewMessage(PHONE, "Deal of the day", "deals", "marketing"),
        NewMessage(PHONE, "Your order shipped", "deals", "transactional")])
    for mid in ids:
        await eventually(lambda m=mid: status_is(client, m, "cancelled"))
        assert (await message(client, mid))["reason"] == "opted_out"
    assert fake.requests == []
