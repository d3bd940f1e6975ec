"""Inbound webhook throughput: signed Twilio webhooks into the real app on 127.0.0.1.

    .venv/bin/python bench/webhooks.py [MESSAGES] [CONCURRENCY]

Each webhook is verified, stored, put on the profile (timeline and CRM sync outbox), run
through the consent keywords and answered after its group commit. The client runs in a
second process. Prints webhooks/s, latency percentiles and how many writes shared a commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from gateway import keys
from gateway.app import create_app
from gateway.config import parse_config

TOKEN = "0123456789abcdef0123456789abcdef"


async def run(messages: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = parse_config({
            "service": {"public_url": "https://sms.example.com"},
            "database": {"path": str(Path(folder) / "bench.sqlite3")},
            "provider": {"kind": "twilio", "twilio": {
                "account_sid": "AC" + "0" * 32, "auth_token": TOKEN}},
            "short_codes": [{"code": "12345"}],
            "programs": [{"id": "deals", "name": "Deals", "short_code": "12345",
                          "keywords": ["JOIN"], "help_text": "Deals: help@x.example, STOP"}],
            "logging": {"level": "warning"},
        }, environ={})
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
        validator = RequestValidator(TOKEN)
        forms = []
        for n in range(messages):
            form = {"MessageSid": f"SM{n:032d}", "From": f"+1415{2000000 + n % 5000:07d}",
                    "To": "12345", "Body": "JOIN" if n % 10 == 0 else f"hello {n}"}
            signature = validator.compute_signature(
                "https://sms.example.com/webhooks/twilio/sms", form)
            forms.append((form, signature))
        db = app[keys.DB]
        commits_before, writes_before = db.commits, db.writes
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            elapsed, latencies = await loop.run_in_executor(pool, client_process, url, forms,
                                                            concurrency)
        commits, writes = db.commits - commits_before, db.writes - writes_before
        stored = await db.fetchone("SELECT COUNT(*) FROM inbound_messages")
        await runner.cleanup()
    latencies.sort()
    print(f"{messages:,} signed inbound webhooks, {concurrency} concurrent: "
          f"{messages / elapsed:,.0f} webhooks/s")
    print(f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
    print(f"{writes:,} writes in {commits:,} commits ({writes / max(commits, 1):.1f} per commit)"
          f"; {stored[0] if stored else 0:,} messages stored")


def client_process(url: str, forms: list[tuple[dict[str, str], str]], concurrency: int
                   ) -> tuple[float, list[float]]:
    return asyncio.run(_client(url, forms, concurrency))


async def _client(url: str, forms: list[tuple[dict[str, str], str]], concurrency: int
                  ) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[dict[str, str], str]] = asyncio.Queue()
    for item in forms:
        queue.put_nowait(item)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            form, signature = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(url, data=form,
                                    headers={"X-Twilio-Signature": signature}) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
                    int(sys.argv[2]) if len(sys.argv) > 2 else 50))
