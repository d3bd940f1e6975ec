"""A real `mcrm serve` for end-to-end tests: its config file (Twilio pointed at the fake),
its environment, starting it as a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from gateway.config import Config, load_config
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, eventually


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
