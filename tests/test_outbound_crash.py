"""Crash safety: `mcrm serve` killed with SIGKILL at random moments while it sends 2,000
messages to the Twilio fake; after the last restart the fake has each message exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

from gateway.clock import SystemClock
from gateway.config import Config, load_config
from gateway.db import Database
from gateway.outbound import NewMessage, Outbox
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, eventually, free_port
from tests.fakes.twilio_server import FakeTwilio

MESSAGES = 2000
KILLS = 4


def write_config(folder: Path, port: int, fake_url: str) -> Path:
    path = folder / "config.toml"
    path.write_text(f"""
[service]
port = {port}
public_url = "http://127.0.0.1:{port}"

[database]
path = "mcrm.sqlite3"

[provider]
kind = "twilio"
[provider.twilio]
account_sid = "{ACCOUNT_SID}"
auth_token = "env:TEST_TWILIO_TOKEN"
api_base_url = "{fake_url}"
timeout_seconds = 2.0

[[short_codes]]
code = "12345"
messages_per_second = 500

[[programs]]
id = "alerts"
name = "Alerts"
short_code = "12345"
kind = "transactional"
double_opt_in = false
help_text = "Acme alerts: help@acme.example. Reply STOP to cancel."

[outbound]
reconcile_after_seconds = 0.5
retry_initial_seconds = 0.1
retry_max_seconds = 0.5
""", encoding="utf-8")
    return path


def read(config_path: Path) -> Config:
    return load_config(config_path, environ={"TEST_TWILIO_TOKEN": AUTH_TOKEN})


async def queue_all(config_path: Path) -> None:
    config = read(config_path)
    db = await Database.open(config.database_path())
    try:
        outbox = Outbox(config)
        await db.write(lambda tx: outbox.queue_many(tx, [
            NewMessage(f"+1415555{n:04d}", f"crash test #{n}", "alerts", "transactional")
            for n in range(MESSAGES)], SystemClock().now()))
    finally:
        await db.close()


async def serve(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("a") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config),
            stdout=out, stderr=out, cwd=config.parent,
            env={**os.environ, "TEST_TWILIO_TOKEN": AUTH_TOKEN, "PYTHONUNBUFFERED": "1"})


async def test_sigkill_while_sending_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path) -> None:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, latency=0.02)  # requests stay in flight a bit
    await fake.start()
    try:
        config = write_config(tmp_path, free_port(), fake.base_url)
        await queue_all(config)
        rng = random.Random(20261123)
        log = tmp_path / "serve.log"
        for kill in range(KILLS):
            proc = await serve(config, log)
            floor = len(fake.created)
            await eventually(lambda f=floor: len(fake.created) > f, seconds=30,
                             what=f"sending after start #{kill + 1}")
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert len(fake.created) < MESSAGES, "killed too late to prove anything"
        proc = await serve(config, log)
        try:
            await eventually(lambda: len(fake.created) >= MESSAGES, seconds=60,
                             what="every message sent")
            await asyncio.sleep(1.0)  # anything sent twice would arrive by now
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        counts = Counter(r.form["Body"] for r in fake.created)
        assert set(counts) == {f"crash test #{n}" for n in range(MESSAGES)}
        assert [body for body, n in counts.items() if n > 1] == []
        db = await Database.open(read(config).database_path())
        try:
            rows = await db.fetchall("SELECT status, COUNT(*) FROM outbound_messages"
                                     " GROUP BY status")
            found = await db.fetchone("SELECT COUNT(*) FROM outbound_events"
                                      " WHERE event = 'sent' AND detail LIKE '%provider_sid%'")
        finally:
            await db.close()
        assert {r[0]: r[1] for r in rows} == {"sent": MESSAGES}
        assert found is not None and found[0] == MESSAGES
        assert "were being sent when the gateway stopped" in log.read_text()
    finally:
        await fake.close()
