"""A real `mcrm serve` for end-to-end tests: its config file (Twilio pointed at the fake),
its environment, starting it as a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from consent import Consent, ConsentEvent, Kind
from gateway.clock import SystemClock
from gateway.config import Config, load_config
from gateway.db import Database
from gateway.profiles import ProfileStore
from tests.conftest import ACCOUNT_SID, ADMIN_TOKEN, AUTH_TOKEN, eventually

#: What a web form's opt-in carries as proof.
EVIDENCE = {"form_url": "https://acme.example/join", "ip": "203.0.113.7"}


def write_config(folder: Path, port: int, fake_url: str, *, rate: int, rest: str,
                 reads: float = 1000) -> Path:
    """config.toml in `folder`: the service on `port`, Twilio at `fake_url`, one short code
    (12345) at `rate`, look-ups and status fetches at `reads` per second, then `rest`
    (programs and any other section)."""
    path = folder / "config.toml"
    path.write_text(f"""
[service]
port = {port}
public_url = "http://127.0.0.1:{port}"

[database]
path = "mcrm.sqlite3"

[provider]
kind = "twilio"
reads_per_second = {reads}
[provider.twilio]
account_sid = "{ACCOUNT_SID}"
auth_token = "env:TEST_TWILIO_TOKEN"
api_base_url = "{fake_url}"
timeout_seconds = 2.0

[[short_codes]]
code = "12345"
messages_per_second = {rate}
{rest}""", encoding="utf-8")
    return path


def read(config_path: Path) -> Config:
    return load_config(config_path, environ={"TEST_TWILIO_TOKEN": AUTH_TOKEN})


def environment() -> dict[str, str]:
    return {**os.environ, "TEST_TWILIO_TOKEN": AUTH_TOKEN, "PYTHONUNBUFFERED": "1"}


async def serve(config: Path, log: Path, *, wait: bool = False) -> asyncio.subprocess.Process:
    """`mcrm serve` with its output appended to `log`; `wait`: until it answers /healthz."""
    with log.open("a") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config),
            stdout=out, stderr=out, cwd=config.parent, env=environment())
    if wait:
        port = read(config).service.port

        async def up() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.get(
                        f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, seconds=20, what="the gateway answering")
    return proc


async def seed(config_path: Path, consents: list[tuple[str, str, Kind]],
               evidence: dict[str, str] | None = None) -> None:
    """Consent as the ledger records it, written before the gateway starts."""
    config = read(config_path)
    db = await Database.open(config.database_path())
    try:
        consent = Consent(config, ProfileStore())
        now = SystemClock().now() - timedelta(minutes=5)

        async def write(tx: Any) -> None:
            for phone, program, kind in consents:
                await consent.ledger.record(tx, ConsentEvent(
                    phone=phone, program_id=program, kind=kind, source="web_form",
                    occurred_at=now, evidence=evidence or EVIDENCE))

        await db.write(write)
    finally:
        await db.close()


async def mcrm(config: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=config.parent,
        env=environment())
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"mcrm {' '.join(args)}: {err.decode()}"
    return out.decode()


async def post(config: Path, path: str, body: Any, method: str = "POST") -> Any:
    port = read(config).service.port
    async with aiohttp.ClientSession() as session, session.request(
            method, f"http://127.0.0.1:{port}{path}", json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status in (200, 201, 202), await response.text()
        return await response.json()


async def api(config: Path, path: str) -> Any:
    port = read(config).service.port
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}{path}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status == 200
        return await response.json()
