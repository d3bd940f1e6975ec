"""Crash safety: `mcrm serve` killed with SIGKILL at random moments while it sends 2,000
messages to the Twilio fake; after the last restart the fake has each message exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from pathlib import Path

from gateway.clock import SystemClock
from gateway.db import Database
from gateway.outbound import NewMessage, Outbox
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, eventually, free_port
from tests.daemon import read, serve, write_config
from tests.fakes.twilio_server import FakeTwilio

MESSAGES = 2000
KILLS = 4


def config_file(folder: Path, port: int, fake_url: str) -> Path:
    return write_config(folder, port, fake_url, rate=500, rest="""
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
""")


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


async def test_sigkill_while_sending_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path) -> None:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, latency=0.02)  # requests stay in flight a bit
    await fake.start()
    try:
        config = config_file(tmp_path, free_port(), fake.base_url)
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
