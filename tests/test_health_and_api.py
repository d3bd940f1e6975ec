"""Health, readiness, metrics, admin authentication, JSON errors and the OpenAPI document."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest

from gateway import keys
from gateway.app import create_app
from gateway.config import Config
from gateway.http.openapi import SPEC
from gateway.models import OutgoingSMS
from gateway.outbound import NewMessage
from tests.conftest import ADMIN_TOKEN, ConfigFactory, admin, sample


async def test_healthz(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_when_everything_runs(client: Any) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "worker:sandbox-receipts": "ok",
                              "worker:outbound:12345": "ok", "worker:campaigns": "ok"}
    assert body["degraded"] == [] and body["crm"] == {}
    sandbox = body["providers"]["sandbox"]
    assert sandbox["state"] == "ok"
    assert {op: link["state"] for op, link in sandbox["operations"].items()} == {
        "send": "ok", "lookup": "ok", "fetch": "ok"}


async def test_readyz_fails_when_a_worker_stops(client: Any) -> None:
    await client.app[keys.WORKERS].stop("sandbox-receipts")
    workers = client.app[keys.WORKERS]
    workers.start("sandbox-receipts", _crash)
    for _ in range(10):
        if not workers.status()["sandbox-receipts"]:
            break
        await _tick()
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "not_ready"
    assert body["checks"]["worker:sandbox-receipts"] == "stopped"


async def test_readyz_fails_when_the_database_is_gone(client: Any) -> None:
    await client.app[keys.DB].close()
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["database"].startswith("unreachable")


async def test_readyz_fails_while_shutting_down(client: Any) -> None:
    client.app[keys.LIFECYCLE].stopping = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert "shutting down" in (await response.json())["error"]["message"]


async def test_metrics_in_prometheus_text_format(client: Any) -> None:
    await client.post("/webhooks/twilio/sms", data={
        "MessageSid": "SM" + "9" * 32, "From": "+15551234567", "To": "12345", "Body": "HI"})

    later = client.app[keys.CLOCK].now() + timedelta(hours=1)
    await client.app[keys.OUTBOUND].queue([
        NewMessage("+15551234567", f"later {i}", "deals", "transactional", not_before=later)
        for i in range(3)])
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert "# TYPE mcrm_inbound_messages_total counter" in text
    assert sample(text, "mcrm_inbound_messages_total", short_code="12345") == 1
    assert "# TYPE mcrm_webhook_duration_seconds histogram" in text
    assert sample(text, "mcrm_webhook_duration_seconds_count", endpoint="sms") == 1
    assert sample(text, "mcrm_webhook_duration_seconds_bucket", endpoint="sms", le="+Inf") == 1
    assert sample(text, "mcrm_outbound_deferred", short_code="12345") == 3
    assert sample(text, "mcrm_outbound_messages", status="deferred") == 3
    # What operators expect from any Prometheus target, from the official client library.
    assert (sample(text, "process_resident_memory_bytes") or 0) > 10_000_000
    assert (sample(text, "process_open_fds") or 0) > 0
    assert sample(text, "python_gc_collections_total", generation="0") is not None
    for line in text.splitlines():  # every sample line parses
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+Inf-]+', line), line


class TestAdminAuth:
    @pytest.mark.parametrize(("headers", "message"), [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing bearer token"),
        ({"Authorization": "Bearer "}, "missing bearer token"),
        (admin("wrong-token-wrong-token"), "invalid bearer token"),
        (admin(ADMIN_TOKEN + "x"), "invalid bearer token"),
    ], ids=["none", "basic", "empty", "wrong", "longer"])
    async def test_refused_with_json_401(self, client: Any, headers: dict[str, str],
                                         message: str) -> None:
        response = await client.get("/api/v1/programs", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"] == {"code": "unauthorized", "message": body["error"]["message"]}
        assert message in body["error"]["message"]

    async def test_accepted_with_a_configured_token(self, client: Any) -> None:
        response = await client.get("/api/v1/programs", headers=admin())
        assert response.status == 200
        body = await response.json()
        assert body["programs"][0]["id"] == "deals"
        assert body["short_codes"] == [{"code": "12345", "messages_per_second": 10.0}]

    async def test_any_of_several_tokens(self, make_config: ConfigFactory,
                                         make_client: Any) -> None:
        client = await make_client(make_config(api={"tokens": ["a" * 20, "b" * 20]}))
        for token in ("a" * 20, "b" * 20):
            assert (await client.get("/api/v1/programs", headers=admin(token))).status == 200

    async def test_no_tokens_means_api_disabled(self, make_config: ConfigFactory,
                                                make_client: Any) -> None:
        client = await make_client(make_config(api={"tokens": []}))
        response = await client.get("/api/v1/programs", headers=admin())
        assert response.status == 401
        assert "no api.tokens are configured" in (await response.json())["error"]["message"]

    async def test_webhooks_and_health_need_no_token(self, client: Any) -> None:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/metrics")).status == 200


class TestJsonErrors:
    async def test_unknown_path(self, client: Any) -> None:
        response = await client.get("/nowhere")
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"

    async def test_wrong_method(self, client: Any) -> None:
        response = await client.get("/webhooks/twilio/sms")
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"]["code"] == "method_not_allowed"

    async def test_bad_query_parameter(self, client: Any) -> None:
        response = await client.get("/api/v1/sandbox/messages?limit=abc", headers=admin())
        assert response.status == 400
        assert "limit" in (await response.json())["error"]["message"]


async def test_sandbox_messages_are_listed_newest_first(client: Any) -> None:
    provider = client.app[keys.PROVIDER]
    for text in ("first", "second"):
        await provider.send(OutgoingSMS(to_number="+15557654321", from_number="12345",
                                        body=text))
    await provider.send(OutgoingSMS(to_number="+15550000000", from_number="12345", body="x"))
    response = await client.get("/api/v1/sandbox/messages?to=(555)%20765-4321",
                                headers=admin())
    assert response.status == 200
    bodies = [m["body"] for m in (await response.json())["messages"]]
    assert bodies == ["second", "first"]


def test_openapi_describes_every_api_route(config: Config) -> None:
    app = create_app(config)
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/")
              and r.method != "HEAD"}
    described = {(method, path) for path, ops in SPEC["paths"].items() for method in ops}
    assert routes, "no API routes found"
    assert routes - described == set(), "routes missing from gateway/http/openapi.py"
    assert described - routes == set(), "described routes that do not exist"
    assert SPEC["openapi"].startswith("3.1")


async def test_openapi_is_served(client: Any) -> None:
    response = await client.get("/api/v1/openapi.json", headers=admin())
    assert response.status == 200
    assert (await response.json())["paths"].keys() == SPEC["paths"].keys()


async def _crash() -> None:
    raise RuntimeError("boom")


async def _tick() -> None:
    await asyncio.sleep(0.01)
