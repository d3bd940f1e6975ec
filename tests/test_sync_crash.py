"""The CRM sync across crashes: `kill -9` a real `mcrm serve` while it delivers, restart it,
and every event still arrives, in order per profile (again only ever with the same id)."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp

from gateway.config import load_config
from gateway.simulate import signature_headers
from tests.conftest import free_port
from tests.fakes.crm_receiver import CrmReceiver
from tests.test_daemon import env, write_config

SECRET = "crm-shared-secret-0123456789"


async def start(config: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env(),
        cwd=config.parent)
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway did not become ready")


async def test_events_survive_sigkill_mid_delivery(tmp_path: Path) -> None:
    rng = random.Random(11)
    # Every answer takes 50 ms: a round of 30 events needs ~0.5 s, longer than any kill delay.
    receiver = CrmReceiver(SECRET, free_port(), slow_rate=1.0, slow_seconds=0.05)
    await receiver.start()
    port = free_port()
    config = write_config(tmp_path, port, extra=f"""
[sync]
retry_initial_seconds = 0.05
retry_max_seconds = 0.2
poll_interval_seconds = 0.05

[[sync.endpoints]]
name = "crm"
url = "{receiver.url}"
secret = "{SECRET}"
batch_size = 3
timeout_seconds = 2.0
""")
    read_config = load_config(config, environ={})
    sent = 0
    behind_at_kill = []
    try:
        for round_ in range(4):
            proc = await start(config, port)
            async with aiohttp.ClientSession() as session:
                for _ in range(30):
                    sender = f"+1212555{rng.randrange(6):04d}"
                    form = {"MessageSid": f"SM{sent}", "From": sender, "To": "12345",
                            "Body": f"message {sent}"}
                    url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
                    async with session.post(url, data=form, headers=signature_headers(
                            read_config, url, form)) as response:
                        assert response.status == 200
                    sent += 1
            if round_ < 3:
                await asyncio.sleep(rng.uniform(0.02, 0.15))  # somewhere mid-delivery
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
                behind_at_kill.append(sent - len(set(receiver.ids())))
        with sqlite3.connect(tmp_path / "data" / "mcrm.sqlite3") as db:
            expected = [r[0] for r in db.execute("SELECT event_id FROM profile_events")]
        assert len(expected) == sent
        for _ in range(400):
            if set(expected) <= set(receiver.ids()):
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await receiver.stop()
    assert set(receiver.ids()) == set(expected)  # nothing lost, nothing invented
    first: dict[str, list[int]] = collections.defaultdict(list)
    seen: set[str] = set()
    for event in receiver.events:
        if event["id"] not in seen:
            seen.add(event["id"])
            first[event["phone"]].append(event["sequence"])
    for phone, sequences in first.items():
        assert sequences == list(range(1, len(sequences) + 1)), phone
    assert receiver.bad_signatures == 0
    assert any(n > 0 for n in behind_at_kill)  # the kills did land mid-delivery
