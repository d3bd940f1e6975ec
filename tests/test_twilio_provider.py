"""The Twilio provider: the real `twilio` library against a Twilio-shaped server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from twilio.base.exceptions import TwilioException

from gateway import keys
from gateway.config import Secret, TwilioConfig
from gateway.models import OutgoingSMS
from gateway.providers import SendError, SendErrorKind
from gateway.providers.twilio import TwilioProvider
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO, ConfigFactory, free_port
from tests.fakes.twilio_server import FakeTwilio

SMS = OutgoingSMS(to_number="+15557654321", from_number="12345", body="Hello from Acme",
                  status_callback="https://sms.example.com/webhooks/twilio/status")


def make_provider(base_url: str, **changes: Any) -> TwilioProvider:
    settings = {"account_sid": ACCOUNT_SID, "auth_token": Secret(AUTH_TOKEN),
                "api_base_url": base_url, "timeout_seconds": 2.0} | changes
    return TwilioProvider(TwilioConfig(**settings))


@contextlib.asynccontextmanager
async def started(base_url: str, **changes: Any) -> AsyncIterator[TwilioProvider]:
    provider = make_provider(base_url, **changes)
    await provider.start()
    try:
        yield provider
    finally:
        await provider.close()


async def send_error(base_url: str, **changes: Any) -> SendError:
    """Sends one message through a fresh provider and returns the error it must raise."""
    async with started(base_url, **changes) as provider:
        with pytest.raises(SendError) as caught:
            await provider.send(SMS)
    return caught.value


@pytest.fixture
async def provider(twilio_fake: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    async with started(twilio_fake.base_url) as provider:
        yield provider


async def test_send_goes_through_the_real_library(provider: TwilioProvider,
                                                  twilio_fake: FakeTwilio) -> None:
    result = await provider.send(SMS)
    assert result.provider_sid.startswith("SM") and len(result.provider_sid) == 34
    assert result.status == "queued"
    assert result.num_segments == 1
    [request] = twilio_fake.requests
    assert request.account_sid == ACCOUNT_SID
    assert request.form == {"To": SMS.to_number, "From": "12345", "Body": SMS.body,
                            "StatusCallback": SMS.status_callback}
    assert request.headers["User-Agent"].startswith("twilio-python/")


async def test_messaging_service_replaces_the_from_number(twilio_fake: FakeTwilio) -> None:
    async with started(twilio_fake.base_url, messaging_service_sid="MG" + "0" * 32) as provider:
        result = await provider.send(SMS)
    assert result.status == "accepted"
    form = twilio_fake.requests[0].form
    assert form["MessagingServiceSid"] == "MG" + "0" * 32
    assert "From" not in form


CASES = [
    ("invalid-to", dict(status=400, code=21211, message="The 'To' number is not valid."),
     SendErrorKind.REJECTED, "21211", False),
    ("stopped", dict(status=400, code=21610, message="Attempt to send to unsubscribed"),
     SendErrorKind.CONTACT_STOPPED, "21610", False),
    ("rate-limited", dict(status=429, code=20429, message="Too Many Requests"),
     SendErrorKind.RATE_LIMITED, "20429", True),
    ("server-error", dict(status=500, code=20500, message="Internal Server Error"),
     SendErrorKind.SERVER_ERROR, "20500", True),
    ("unavailable", dict(status=503, code=None, message="Service Unavailable"),
     SendErrorKind.SERVER_ERROR, None, True),
]


@pytest.mark.parametrize(("script", "kind", "code", "transient"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_errors_are_classified(provider: TwilioProvider, twilio_fake: FakeTwilio,
                                     script: dict[str, Any], kind: SendErrorKind,
                                     code: str | None, transient: bool) -> None:
    twilio_fake.then(**script)
    with pytest.raises(SendError) as caught:
        await provider.send(SMS)
    assert caught.value.kind is kind
    assert caught.value.provider_code == code
    assert caught.value.transient is transient
    assert caught.value.provider_http_status == script["status"]
    assert script["message"] in caught.value.detail
    assert len(twilio_fake.requests) == 1  # the library made one attempt; retries are ours


async def test_wrong_credentials_are_transient_so_nothing_is_dropped(
        twilio_fake: FakeTwilio) -> None:
    error = await send_error(twilio_fake.base_url, auth_token="f" * 32)
    assert error.kind is SendErrorKind.AUTH
    assert error.provider_code == "20003"
    assert error.transient


async def test_timeout_is_transient_and_flagged_for_reconciliation(
        twilio_fake: FakeTwilio) -> None:
    twilio_fake.then(delay=2.0)
    error = await send_error(twilio_fake.base_url, timeout_seconds=0.3)
    assert error.kind is SendErrorKind.TIMEOUT
    assert error.transient
    assert "0.3s" in error.detail


async def test_unreachable_provider_is_a_transient_connection_error() -> None:
    error = await send_error(f"http://127.0.0.1:{free_port()}")
    assert error.kind is SendErrorKind.CONNECTION
    assert error.transient


async def test_fake_callbacks_reach_the_app_signed(make_config: ConfigFactory,
                                                   make_client: Any,
                                                   twilio_fake: FakeTwilio) -> None:
    """End to end: the app sends through Twilio, Twilio calls back, receipts are logged."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    config = make_config(service={"public_url": public}, provider={
        "kind": "twilio", "twilio": {**TWILIO, "api_base_url": twilio_fake.base_url}})
    client = await make_client(config, port=port)
    twilio_fake.send_callbacks = True
    provider = client.app[keys.PROVIDER]
    result = await provider.send(OutgoingSMS(
        to_number="+15557654321", from_number="12345", body="Your order shipped",
        status_callback=public + "/webhooks/twilio/status"))
    for _ in range(500):
        if len(twilio_fake.callback_responses) == 2:
            break
        await asyncio.sleep(0.02)
    assert twilio_fake.callback_responses == [200, 200]
    rows = await client.app[keys.DB].fetchall(
        "SELECT provider_sid, status FROM status_callbacks ORDER BY id")
    assert [tuple(r) for r in rows] == [(result.provider_sid, "sent"),
                                        (result.provider_sid, "delivered")]


# -- every fault of every call maps onto the closed taxonomy ---------------------------

SINCE = datetime(2000, 1, 1, tzinfo=UTC)


async def _call(provider: TwilioProvider, operation: str, fake: FakeTwilio) -> object:
    if operation == "send":
        return await provider.send(SMS)
    if operation == "lookup":
        return await provider.lookup(SMS, SINCE)
    sid = next(iter(fake.messages), "SM" + "0" * 32)
    return await provider.fetch(sid)


FAULTS = [
    # (id, fault, kind, outcome unknown for a send)
    ("503", dict(status=503), SendErrorKind.SERVER_ERROR, True),
    ("500-html", dict(status=500, body="<html>oops</html>"), SendErrorKind.SERVER_ERROR, True),
    ("405", dict(status=405), SendErrorKind.ENDPOINT, False),
    ("404-no-code", dict(status=404, body="Not Found"), SendErrorKind.ENDPOINT, False),
    ("200-not-json", dict(status=200, body="{not json"), SendErrorKind.MALFORMED, True),
    ("201-empty-object", dict(status=201, body="{}"), SendErrorKind.MALFORMED, True),
    ("reset", dict(reset=True), SendErrorKind.INTERRUPTED, True),
]


@pytest.mark.parametrize("operation", ["send", "lookup", "fetch"])
@pytest.mark.parametrize(("fault", "kind", "unknown"), [f[1:] for f in FAULTS],
                         ids=[f[0] for f in FAULTS])
async def test_every_fault_of_every_call_is_a_send_error(
        provider: TwilioProvider, twilio_fake: FakeTwilio, operation: str,
        fault: dict[str, Any], kind: SendErrorKind, unknown: bool) -> None:
    await provider.send(SMS)  # a message the look-up and the fetch can find
    resource = {"send": "create", "lookup": "list", "fetch": "fetch"}[operation]
    twilio_fake.fail(resource, **fault)
    if operation != "send" and fault.get("status") == 201:
        twilio_fake.fail(resource, **(fault | {"status": 200}))  # a read answers 200
    with pytest.raises(SendError) as caught:
        await _call(provider, operation, twilio_fake)
    error = caught.value
    if operation == "lookup" and fault.get("body") == "{}":
        assert error.kind is SendErrorKind.MALFORMED  # a page with no records in it
    else:
        assert error.kind is kind, error
    assert error.transient
    if operation == "send":
        assert error.outcome_unknown is unknown
    assert str(error)  # says what happened
    twilio_fake.heal()
    assert await _call(provider, operation, twilio_fake)  # and the next call works


@pytest.mark.parametrize("operation", ["send", "lookup", "fetch"])
async def test_a_refused_connection_is_a_connection_error(twilio_fake: FakeTwilio,
                                                         operation: str) -> None:
    async with started(twilio_fake.base_url) as provider:
        await provider.send(SMS)
        await twilio_fake.go_away()
        with pytest.raises(SendError) as caught:
            await _call(provider, operation, twilio_fake)
        assert caught.value.kind is SendErrorKind.CONNECTION
        assert not caught.value.outcome_unknown  # never reached Twilio: safe to resend
        await twilio_fake.come_back()
        assert await _call(provider, operation, twilio_fake)


@pytest.mark.parametrize("operation", ["send", "lookup", "fetch"])
async def test_a_tls_failure_is_a_connection_error(twilio_fake: FakeTwilio,
                                                  operation: str) -> None:
    # https:// to a server that speaks plain HTTP: the handshake fails.
    https = twilio_fake.base_url.replace("http://", "https://")
    async with started(https) as provider:
        with pytest.raises(SendError) as caught:
            await _call(provider, operation, twilio_fake)
    assert caught.value.kind is SendErrorKind.CONNECTION
    assert caught.value.transient


@pytest.mark.parametrize("operation", ["send", "lookup", "fetch"])
@pytest.mark.parametrize("exception", [RuntimeError("boom"), TwilioException("odd"),
                                       KeyError("sid")], ids=["RuntimeError",
                                                              "TwilioException", "KeyError"])
async def test_anything_else_a_call_raises_is_a_transient_error_naming_its_class(
        provider: TwilioProvider, twilio_fake: FakeTwilio, operation: str,
        exception: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise exception

    monkeypatch.setattr(provider._http, "request", broken)
    with pytest.raises(SendError) as caught:
        await _call(provider, operation, twilio_fake)
    error = caught.value
    assert error.transient
    if isinstance(exception, TwilioException):
        assert error.kind is SendErrorKind.MALFORMED and "odd" in str(error)
    else:
        assert error.kind is SendErrorKind.UNEXPECTED
        assert type(exception).__name__ in str(error)
        assert error.outcome_unknown  # a send that raised may have gone


async def test_fetch_reads_the_status_twilio_holds(provider: TwilioProvider,
                                                   twilio_fake: FakeTwilio) -> None:
    sent = await provider.send(SMS)
    status = await provider.fetch(sent.provider_sid)
    assert (status.sid, status.status, status.final) == (sent.provider_sid, "queued", False)
    twilio_fake.messages[sent.provider_sid].update(status="undelivered", error_code=30003)
    status = await provider.fetch(sent.provider_sid)
    assert (status.status, status.error_code, status.final) == ("undelivered", "30003", True)
    with pytest.raises(SendError) as caught:
        await provider.fetch("SM" + "f" * 32)
    assert caught.value.kind is SendErrorKind.ENDPOINT  # 404 20404: not ours to say more
