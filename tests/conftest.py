"""Shared fixtures: real config objects, a real SQLite file, the production app on loopback."""

from __future__ import annotations

import asyncio
import copy
import inspect
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator
from yarl import URL

from gateway import keys
from gateway.app import create_app
from gateway.clock import Clock
from gateway.config import Config, parse_config
from tests.fakes.twilio_server import FakeTwilio

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789"
SANDBOX_SECRET = "sandbox-webhook-secret-0123456789"

BASE: dict[str, Any] = {
    "service": {"host": "127.0.0.1", "port": 0, "public_url": "https://sms.example.com"},
    "database": {"path": "mcrm.sqlite3"},
    "phone": {"default_region": "US"},
    "provider": {"kind": "sandbox", "sandbox": {"receipt_delay_seconds": 0.05,
                                                "webhook_secret": SANDBOX_SECRET}},
    "short_codes": [{"code": "12345", "messages_per_second": 10}],
    "programs": [{"id": "deals", "name": "Deals", "short_code": "12345",
                  "keywords": ["DEALS"], "help_text": "Deals: reply STOP to cancel."}],
    "api": {"tokens": [ADMIN_TOKEN]},
}

TWILIO: dict[str, Any] = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


async def eventually(condition: Callable[[], Awaitable[bool] | bool], seconds: float = 10.0,
                     what: str = "condition") -> None:
    """Wait until `condition` holds (polling); fails the test after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {seconds}s")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ConfigFactory = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Builds a checked Config whose database lives in this test's tmp_path."""

    def build(**changes: Any) -> Config:
        raw = merge(BASE, changes)
        raw["database"]["path"] = str(tmp_path / raw["database"]["path"])
        return parse_config(raw, file=str(tmp_path / "config.toml"), environ={})

    return build


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


class CarrierClient(TestClient):  # type: ignore[type-arg]
    """A test client that posts to the webhooks as the sandbox's carrier does: a form given
    as a dict, with no X-Twilio-Signature of its own, is signed with the sandbox's secret
    (as `mcrm simulate` signs it). Twilio configurations sign in the tests themselves."""

    def post(self, path: str, **kwargs: Any) -> Any:  # type: ignore[override]
        config = self.app[keys.CONFIG] if self.app is not None else None
        data, headers = kwargs.get("data"), dict(kwargs.get("headers") or {})
        if (config is not None and config.provider.kind == "sandbox"
                and path.startswith("/webhooks/") and isinstance(data, dict)
                and "X-Twilio-Signature" not in headers):
            url = config.service.public_url.rstrip("/") + str(URL(path))  # as it goes out
            headers |= twilio_signature(url, {k: str(v) for k, v in data.items()},
                                        SANDBOX_SECRET)
            kwargs["headers"] = headers
        return super().post(path, **kwargs)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Any]]:
    """Starts the production app on 127.0.0.1 for a config; closes whatever it started."""
    clients: list[TestClient[Any, Any]] = []

    async def start(config: Config, port: int | None = None, clock: Clock | None = None
                    ) -> TestClient[Any, Any]:
        server = TestServer(create_app(config, clock=clock), host="127.0.0.1", port=port)
        client: TestClient[Any, Any] = CarrierClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def client(config: Config, make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    return await make_client(config)


@pytest.fixture
async def twilio_fake() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    """The Twilio fake that also calls back with signed "sent" and "delivered" receipts."""
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, send_callbacks=True)
    await fake.start()
    yield fake
    await fake.close()


def on_the_fake(fake: FakeTwilio, port: int, *, timeout: float, rate: float
                ) -> dict[str, Any]:
    """Config for a gateway on its own public URL (so the fake's callbacks reach it),
    sending to `fake` through the real twilio library."""
    return {
        "service": {"public_url": f"http://127.0.0.1:{port}"},
        "provider": {"kind": "twilio", "twilio": {
            "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
            "api_base_url": fake.base_url, "timeout_seconds": timeout}},
        "short_codes": [{"code": "12345", "messages_per_second": rate}]}


def twilio_signature(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    """The headers Twilio would send: `url` is the public URL the app is configured with."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


async def row_counts(client: Any) -> dict[str, int]:
    """Rows in every table: what a refused request must leave as it was."""
    db = client.app[keys.DB]
    tables = [r[0] for r in await db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: (await db.fetchone(f"SELECT COUNT(*) FROM {t}"))[0] for t in tables}


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """One sample's value in a /metrics page (parsed as Prometheus parses it), or None."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
