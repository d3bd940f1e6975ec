"""Provider webhooks: real Twilio signatures, stored once, refused clearly, nothing lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import keys
from gateway.config import Config
from tests.conftest import TWILIO, ConfigFactory, row_counts, sample, twilio_signature

PUBLIC = "https://sms.example.com"


def inbound(sid: str = "SM" + "1" * 32, **changes: str) -> dict[str, str]:
    form = {"MessageSid": sid, "SmsSid": sid, "AccountSid": TWILIO["account_sid"],
            "From": "+15551234567", "To": "12345", "Body": "JOIN", "NumMedia": "0",
            "NumSegments": "1", "ApiVersion": "2010-04-01"}
    form.update(changes)
    return form


def status(sid: str = "SM" + "2" * 32, **changes: str) -> dict[str, str]:
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": "delivered",
            "SmsStatus": "delivered", "AccountSid": TWILIO["account_sid"],
            "To": "+15551234567", "From": "12345", "ApiVersion": "2010-04-01"}
    form.update(changes)
    return form


@pytest.fixture
def twilio_config(make_config: ConfigFactory) -> Config:
    return make_config(provider={"kind": "twilio", "twilio": TWILIO})


async def stored(client: Any, table: str) -> list[dict[str, Any]]:
    rows = await client.app[keys.DB].fetchall(f"SELECT * FROM {table} ORDER BY id")
    return [dict(r) for r in rows]


class TestSignatures:
    async def test_valid_signature_is_accepted_and_stored(self, twilio_config: Config,
                                                          make_client: Any) -> None:
        client = await make_client(twilio_config)
        form = inbound()
        response = await client.post("/webhooks/twilio/sms", data=form, headers=twilio_signature(
            PUBLIC + "/webhooks/twilio/sms", form))
        assert response.status == 200
        assert response.content_type == "text/xml"
        assert "<Response/>" in await response.text()
        [row] = await stored(client, "inbound_messages")
        assert (row["provider_sid"], row["from_number"], row["to_number"], row["body"]) == (
            form["MessageSid"], "+15551234567", "12345", "JOIN")
        assert json.loads(row["params_json"])["AccountSid"] == TWILIO["account_sid"]

    @pytest.mark.parametrize(("headers", "reason"), [
        ({}, "missing X-Twilio-Signature"),
        ({"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, "does not match"),
        (twilio_signature(PUBLIC + "/webhooks/twilio/status", inbound()), "does not match"),
        (twilio_signature("http://127.0.0.1/webhooks/twilio/sms", inbound()), "does not match"),
        (twilio_signature(PUBLIC + "/webhooks/twilio/sms", inbound(), "f" * 32),
         "does not match"),
        (twilio_signature(PUBLIC + "/webhooks/twilio/sms", inbound(Body="STOP")),
         "does not match"),
    ], ids=["missing", "garbage", "other-endpoint", "local-url", "other-token", "tampered-body"])
    async def test_bad_signature_is_refused_and_nothing_stored(
            self, twilio_config: Config, make_client: Any, headers: dict[str, str],
            reason: str) -> None:
        client = await make_client(twilio_config)
        response = await client.post("/webhooks/twilio/sms", data=inbound(), headers=headers)
        assert response.status == 403
        body = await response.json()
        assert body["error"]["code"] == "invalid_signature"
        assert reason in body["error"]["message"]
        assert await stored(client, "inbound_messages") == []

    async def test_status_callback_signed_is_stored(self, twilio_config: Config,
                                                    make_client: Any) -> None:
        client = await make_client(twilio_config)
        form = status(ErrorCode="30003", MessageStatus="undelivered")
        url = PUBLIC + "/webhooks/twilio/status"
        response = await client.post("/webhooks/twilio/status", data=form,
                                     headers=twilio_signature(url, form))
        assert response.status == 200
        [row] = await stored(client, "status_callbacks")
        assert (row["provider_sid"], row["status"], row["error_code"]) == (
            form["MessageSid"], "undelivered", "30003")

    async def test_status_callback_unsigned_is_refused(self, twilio_config: Config,
                                                       make_client: Any) -> None:
        client = await make_client(twilio_config)
        response = await client.post("/webhooks/twilio/status", data=status())
        assert response.status == 403
        assert await stored(client, "status_callbacks") == []

    async def test_query_string_is_part_of_the_signed_url(self, twilio_config: Config,
                                                          make_client: Any) -> None:
        client = await make_client(twilio_config)
        form = inbound()
        path = "/webhooks/twilio/sms?program=deals"
        response = await client.post(path, data=form,
                                     headers=twilio_signature(PUBLIC + path, form))
        assert response.status == 200

    async def test_checks_can_be_turned_off_behind_a_trusted_proxy(
            self, make_config: ConfigFactory, make_client: Any) -> None:
        config = make_config(provider={"kind": "twilio",
                                       "twilio": {**TWILIO, "validate_signatures": False}})
        client = await make_client(config)
        response = await client.post("/webhooks/twilio/sms", data=inbound())
        assert response.status == 200


class TestInbound:
    async def test_a_retried_webhook_is_stored_once(self, client: Any) -> None:
        for _ in range(3):
            response = await client.post("/webhooks/twilio/sms", data=inbound())
            assert response.status == 200
        assert len(await stored(client, "inbound_messages")) == 1
        metrics = await (await client.get("/metrics")).text()
        assert sample(metrics, "mcrm_inbound_messages_total", short_code="12345") == 1
        assert sample(metrics, "mcrm_inbound_duplicates_total") == 2

    @pytest.mark.parametrize(("raw", "e164"), [
        ("+15551234567", "+15551234567"),
        ("(555) 123-4567", "+15551234567"),
        ("+98 912 123 4567", "+989121234567"),
    ])
    async def test_sender_is_normalised_to_e164(self, client: Any, raw: str, e164: str) -> None:
        response = await client.post("/webhooks/twilio/sms", data=inbound(From=raw))
        assert response.status == 200
        [row] = await stored(client, "inbound_messages")
        assert row["from_number"] == e164

    @pytest.mark.parametrize(("form", "code", "message"), [
        (inbound(From="not-a-number"), "invalid_number", "From: cannot parse"),
        (inbound(From="+1555"), "invalid_number", "From: "),
        (inbound(To="x"), "invalid_number", "To: "),
        ({k: v for k, v in inbound().items() if k not in ("MessageSid", "SmsSid")},
         "bad_request", "missing form field MessageSid"),
        ({k: v for k, v in inbound().items() if k != "From"}, "bad_request",
         "missing form field From"),
    ], ids=["garbage-from", "short-from", "bad-to", "no-sid", "no-from"])
    async def test_malformed_input_is_refused_clearly(self, client: Any, form: dict[str, str],
                                                      code: str, message: str) -> None:
        response = await client.post("/webhooks/twilio/sms", data=form)
        assert response.status == 400
        body = await response.json()
        assert body["error"]["code"] == code
        assert message in body["error"]["message"]
        assert await stored(client, "inbound_messages") == []

    async def test_oversized_body_is_refused_with_json(self, make_config: ConfigFactory,
                                                       make_client: Any) -> None:
        client = await make_client(make_config(service={"max_body_bytes": 2048}))
        response = await client.post("/webhooks/twilio/sms", data=inbound(Body="x" * 5000))
        assert response.status == 413
        body = await response.json()
        assert body["error"]["code"] == "payload_too_large"
        assert "2048 bytes" in body["error"]["message"]
        assert await stored(client, "inbound_messages") == []

    async def test_unknown_short_code_is_stored_under_one_metric_label(self, client: Any) -> None:
        for i, to in enumerate(("99999", "88888")):
            await client.post("/webhooks/twilio/sms", data=inbound(sid=f"SM{i}", To=to))
        assert len(await stored(client, "inbound_messages")) == 2
        metrics = await (await client.get("/metrics")).text()
        assert sample(metrics, "mcrm_inbound_messages_total", short_code="other") == 2
        assert 'short_code="99999"' not in metrics

    async def test_unicode_body_is_kept_exactly(self, client: Any) -> None:
        text = "سلام 👋 ۱۲"
        await client.post("/webhooks/twilio/sms", data=inbound(Body=text))
        [row] = await stored(client, "inbound_messages")
        assert row["body"] == text

    async def test_status_callback_for_unknown_message_is_kept(self, client: Any) -> None:
        response = await client.post("/webhooks/twilio/status", data=status())
        assert response.status == 200
        assert len(await stored(client, "status_callbacks")) == 1


URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}
SMS_FORM = "MessageSid=SM9&From=%2B12125550101&To=12345&Body="
HOSTILE = [
    # (id, body, headers, status, words)
    ("raw-bytes", (SMS_FORM + "caf").encode() + b"\xe9\xff", URLENCODED, 400, "not UTF-8"),
    ("percent-latin1", (SMS_FORM + "caf%E9").encode(), URLENCODED, 400, "not UTF-8"),
    ("too-many-fields", ("&".join(f"f{i}=1" for i in range(1001)) + "&" + SMS_FORM).encode(),
     URLENCODED, 400, "more than 1000 fields"),
    ("nul", (SMS_FORM + "a%00b").encode(), URLENCODED, 400, "NUL"),
    ("json", b'{"MessageSid": "SM9"}', {"Content-Type": "application/json"}, 415,
     "must be application/x-www-form-urlencoded"),
    ("multipart", b'--x\r\nContent-Disposition: form-data; name="Body"; filename="a.txt"\r\n'
     b"\r\nhello\r\n--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 415,
     "not multipart/form-data"),
    ("cross-site-fetch", (SMS_FORM + "STOP").encode(),
     {**URLENCODED, "Sec-Fetch-Site": "cross-site"}, 403, "Sec-Fetch-Site: cross-site"),
    ("foreign-origin", (SMS_FORM + "STOP").encode(),
     {**URLENCODED, "Origin": "https://evil.example"}, 403, "https://evil.example"),
]


@pytest.mark.parametrize("path", ["/webhooks/twilio/sms", "/webhooks/twilio/status"])
@pytest.mark.parametrize(("body", "headers", "code", "words"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
async def test_hostile_webhook_bodies_are_refused_before_anything_is_read(
        client: Any, path: str, body: bytes, headers: dict[str, str], code: int,
        words: str) -> None:
    before = await row_counts(client)
    response = await client.post(path, data=body, headers=headers)
    assert response.status == code
    error = (await response.json())["error"]
    assert words in error["message"]
    assert await row_counts(client) == before


async def test_a_same_origin_or_metadata_free_post_is_a_webhook_as_before(client: Any
                                                                         ) -> None:
    for n, headers in enumerate(({}, {"Sec-Fetch-Site": "same-origin"},
                                 {"Origin": f"http://{client.server.host}:"
                                            f"{client.server.port}"})):
        response = await client.post("/webhooks/twilio/sms", data=inbound(f"SM{n}"),
                                     headers=headers)
        assert response.status == 200, await response.text()
    assert len(await stored(client, "inbound_messages")) == 3


@pytest.mark.parametrize(("path", "form"), [
    ("/webhooks/twilio/sms", inbound(Body="STOP")),
    ("/webhooks/twilio/status", status(MessageStatus="failed", ErrorCode="21610")),
])
@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl"], ids=["none", "wrong"])
async def test_sandbox_webhooks_need_the_sandbox_signature(
        client: Any, path: str, form: dict[str, str], signature: str) -> None:
    """Without it, anything on the machine could opt a customer out or fake a receipt."""
    before = await row_counts(client)
    response = await client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status == 403
    message = (await response.json())["error"]["message"]
    assert ("missing X-Twilio-Signature" in message if not signature
            else "provider.sandbox.webhook_secret" in message)
    assert await row_counts(client) == before


async def test_the_sandbox_secret_is_made_once_beside_the_database_for_its_owner_only(
        make_config: ConfigFactory, make_client: Any) -> None:
    config = make_config(provider={"kind": "sandbox", "sandbox": {"webhook_secret": ""}})
    client = await make_client(config)
    path = config.database_path().parent / "sandbox-webhook.secret"
    secret = path.read_text().strip()
    assert len(secret) >= 40 and path.stat().st_mode & 0o777 == 0o600
    form = inbound()
    url = config.service.public_url + "/webhooks/twilio/sms"
    response = await client.post("/webhooks/twilio/sms", data=form,
                                 headers=twilio_signature(url, form, secret))
    assert response.status == 200
    await client.close()
    again = await make_client(config)  # a restart keeps the same secret
    assert again.app[keys.WEBHOOK_KEY] == secret
