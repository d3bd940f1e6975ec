"""Consent through the real webhooks: keywords answered inline, retries answered the same,
carrier opt-outs from receipts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway import keys
from gateway.config import Config
from tests.conftest import ConfigFactory, sample

PHONE = "+12125550101"


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(programs=[
        {"id": "deals", "name": "Acme Deals", "short_code": "12345", "keywords": ["JOIN"],
         "help_text": "Acme Deals help: help@acme.example", "frequency": "4 msgs/wk"},
        {"id": "alerts", "name": "Acme Alerts", "short_code": "12345", "keywords": ["ALERTS"],
         "kind": "transactional", "help_text": "Acme Alerts help"}])


async def text(client: Any, sid: str, body: str) -> str:
    response = await client.post("/webhooks/twilio/sms", data={
        "MessageSid": sid, "From": PHONE, "To": "12345", "Body": body})
    assert response.status == 200
    assert response.content_type == "text/xml"
    return str(await response.text())


async def status_of(client: Any, program: str) -> str:
    consent = client.app[keys.CONSENT]
    state = await consent.ledger.state(client.app[keys.DB], PHONE, program)
    return str(state.status)


async def test_join_confirm_stop_through_the_webhook(client: Any) -> None:
    answer = await text(client, "SM1", "JOIN")
    assert ">Acme Deals: reply Y to confirm" in answer
    assert "Msg &amp; data rates may apply" in answer  # escaped for XML
    assert await status_of(client, "deals") == "pending"
    await text(client, "SM2", "Y")
    assert await status_of(client, "deals") == "opted_in"
    answer = await text(client, "SM3", "stop")
    assert answer.count("<Message ") == 1
    assert "Acme Deals, Acme Alerts: you are unsubscribed" in answer
    assert await status_of(client, "deals") == "opted_out"
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_consent_events_total", kind="opt_out", program="deals",
                  source="keyword") == 1
    rows = await client.app[keys.DB].fetchall(
        "SELECT to_number, status, purpose, program_id, in_reply_to FROM outbound_messages"
        " ORDER BY id")
    assert [tuple(r)[:3] for r in rows] == [(PHONE, "sent", "reply")] * 3


async def test_a_retried_webhook_gets_the_same_answer_and_changes_nothing(client: Any) -> None:
    first = await text(client, "SM1", "JOIN")
    again = await text(client, "SM1", "JOIN")
    assert again == first
    db = client.app[keys.DB]
    assert len(await db.fetchall("SELECT * FROM consent_events")) == 1
    assert len(await db.fetchall("SELECT * FROM outbound_messages")) == 1


async def test_ordinary_texts_get_no_reply(client: Any) -> None:
    assert "<Response/>" in await text(client, "SM1", "what time do you open?")


async def test_carrier_opt_out_from_a_receipt(client: Any) -> None:
    await text(client, "SM1", "ALERTS")
    assert await status_of(client, "alerts") == "opted_in"
    response = await client.post("/webhooks/twilio/status", data={
        "MessageSid": "SMx", "MessageStatus": "failed", "ErrorCode": "21610", "To": PHONE,
        "From": "12345"})
    assert response.status == 200
    assert await status_of(client, "alerts") == "opted_out"
    history = await client.app[keys.CONSENT].ledger.history(client.app[keys.DB], PHONE)
    assert [(e.kind, e.source) for e in history][-2:] == [("opt_out", "carrier")] * 2
    assert history[-1].evidence["provider_sid"] == "SMx"


async def test_receipts_of_inline_replies_land_on_the_reply(client: Any) -> None:

    answer = await text(client, "SM1", "HELP")
    [action] = re.findall(r'<Message action="([^"]+)"', answer)
    assert action.startswith("https://sms.example.com/webhooks/twilio/status?outbound=")
    path = action.removeprefix("https://sms.example.com")
    for status in ("sent", "delivered", "sent"):  # the late "sent" must not move it back
        response = await client.post(path, data={
            "MessageSid": "SMreply1", "MessageStatus": status, "To": PHONE, "From": "12345"})
        assert response.status == 200
    row = await client.app[keys.DB].fetchone(
        "SELECT provider, provider_sid, status FROM outbound_messages")
    assert tuple(row) == ("twilio", "SMreply1", "delivered")
    callbacks = await client.app[keys.DB].fetchall("SELECT status FROM status_callbacks")
    assert [r[0] for r in callbacks] == ["sent", "delivered", "sent"]  # all kept
    response = await client.post("/webhooks/twilio/status?outbound=abc", data={
        "MessageSid": "SMx", "MessageStatus": "sent"})
    assert response.status == 400
