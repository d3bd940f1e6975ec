"""The consent API: status and history, consent captured elsewhere, the streamed export."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from gateway import keys
from gateway.config import Config
from tests.conftest import ConfigFactory, admin

PHONE = "+12125550101"


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(programs=[
        {"id": "deals", "name": "Acme Deals", "short_code": "12345", "keywords": ["JOIN"],
         "help_text": "Acme Deals help"},
        {"id": "alerts", "name": "Acme Alerts", "short_code": "12345", "kind": "transactional",
         "help_text": "Acme Alerts help"}])


async def post(client: Any, body: Any) -> tuple[int, Any]:
    response = await client.post("/api/v1/consent", headers=admin(), json=body)
    return response.status, await response.json()


EVIDENCE = {"form_url": "https://acme.example/join", "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0", "terms_shown": "4 msgs/wk, STOP to end"}


async def test_web_form_opt_in_with_evidence_then_show(client: Any) -> None:
    status, body = await post(client, {"phone": "(212) 555-0101", "program": "deals",
                                       "action": "opt_in", "source": "web_form",
                                       "evidence": EVIDENCE})
    assert status == 201 and body["status"] == "opted_in" and body["phone"] == PHONE
    response = await client.get(f"/api/v1/consent/{PHONE}", headers=admin())
    shown = await response.json()
    assert {p["program"]: p["status"] for p in shown["programs"]} == {
        "deals": "opted_in", "alerts": "none"}
    [event] = shown["history"]
    assert (event["kind"], event["source"], event["evidence"]) == (
        "opt_in_confirmed", "web_form", EVIDENCE)
    assert shown["programs"][0]["opt_in_event_id"] == event["id"]


async def test_double_opt_in_queues_the_confirmation_request(client: Any) -> None:
    status, body = await post(client, {"phone": PHONE, "program": "deals", "action": "opt_in",
                                       "evidence": EVIDENCE, "double_opt_in": True})
    assert status == 201 and body["status"] == "pending"
    row = await client.app[keys.DB].fetchone(
        "SELECT to_number, status, purpose, body FROM outbound_messages WHERE id = ?",
        (body["queued_message_id"],))
    assert (row["to_number"], row["status"], row["purpose"]) == (PHONE, "queued",
                                                                 "transactional")
    assert "reply Y to confirm" in row["body"]
    await client.post("/webhooks/twilio/sms", data={
        "MessageSid": "SM1", "From": PHONE, "To": "12345", "Body": "Y"})
    status, body = await post(client, {"phone": PHONE, "program": "deals", "action": "opt_in",
                                       "evidence": EVIDENCE, "double_opt_in": True})
    assert (status, body["status"], body["queued_message_id"]) == (200, "opted_in", None)


@pytest.mark.parametrize(("body", "message"), [
    ({"phone": PHONE, "program": "deals", "action": "opt_in"}, "an opt-in needs evidence"),
    ({"phone": PHONE, "program": "nope", "action": "opt_out"}, "not a configured program"),
    ({"phone": "12", "program": "deals", "action": "opt_out"}, "phone:"),
    ({"phone": PHONE, "program": "deals", "action": "maybe"}, "action: use opt_in or opt_out"),
    ({"phone": PHONE, "program": "deals", "action": "opt_out", "source": "psychic"},
     "source: use one of"),
    ([], "the body must be a JSON object"),
])
async def test_bad_requests(client: Any, body: Any, message: str) -> None:
    status, answer = await post(client, body)
    assert status == 400
    assert message in answer["error"]["message"]
    assert await client.app[keys.DB].fetchall("SELECT * FROM consent_events") == []


async def test_export_streams_every_event(client: Any) -> None:
    await post(client, {"phone": PHONE, "program": "deals", "action": "opt_in",
                        "source": "web_form", "evidence": EVIDENCE})
    await post(client, {"phone": "+12125550102", "program": "alerts", "action": "opt_in",
                        "source": "store", "evidence": {"clerk": "17"}})
    await client.post("/webhooks/twilio/sms", data={
        "MessageSid": "SM1", "From": PHONE, "To": "12345", "Body": "STOP"})
    response = await client.get("/api/v1/consent/export?program=deals", headers=admin())
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["phone"], r["kind"], r["source"]) for r in rows] == [
        (PHONE, "opt_in_confirmed", "web_form"), (PHONE, "opt_out", "keyword")]
    assert rows[1]["inbound_text"] == "STOP" and "unsubscribed" in rows[1]["reply_text"]
    assert json.loads(rows[0]["evidence"]) == EVIDENCE
    response = await client.get("/api/v1/consent/export?format=jsonl&since=2000-01-01",
                                headers=admin())
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert len(lines) == 4 and lines[1]["evidence"] == {"clerk": "17"}
    response = await client.get("/api/v1/consent/export?since=yesterday", headers=admin())
    assert response.status == 400


async def test_review_list_and_resolution(client: Any) -> None:
    for sid, body in (("SM1", "cancel my order 5512"), ("SM2", "stop by tomorrow?")):
        await client.post("/webhooks/twilio/sms", data={
            "MessageSid": sid, "From": PHONE, "To": "12345", "Body": body})
    response = await client.get("/api/v1/consent/review", headers=admin())
    first, second = (await response.json())["review"]
    assert (first["phone"], first["text"]) == (PHONE, "cancel my order 5512")

    response = await client.post(f"/api/v1/consent/review/{first['id']}", headers=admin(),
                                 json={"resolution": "opt_out"})
    assert response.status == 200
    assert len((await response.json())["consent_event_ids"]) == 2  # deals and alerts
    shown = await (await client.get(f"/api/v1/consent/{PHONE}", headers=admin())).json()
    assert {p["status"] for p in shown["programs"]} == {"opted_out"}
    assert shown["history"][0]["inbound_text"] == "cancel my order 5512"
    response = await client.post(f"/api/v1/consent/review/{first['id']}", headers=admin(),
                                 json={"resolution": "dismiss"})
    assert response.status == 409
    response = await client.post(f"/api/v1/consent/review/{second['id']}", headers=admin(),
                                 json={"resolution": "dismiss"})
    assert (await response.json())["consent_event_ids"] == []
    remaining = await (await client.get("/api/v1/consent/review", headers=admin())).json()
    assert remaining["review"] == []
    response = await client.post("/api/v1/consent/review/999", headers=admin(),
                                 json={"resolution": "dismiss"})
    assert response.status == 404
    response = await client.post(f"/api/v1/consent/review/{second['id']}", headers=admin(),
                                 json={"resolution": "maybe"})
    assert response.status == 400
