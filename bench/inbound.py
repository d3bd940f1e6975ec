"""Inbound throughput with the keyword router: signed Twilio webhooks into the real app on
127.0.0.1, the example configuration's keywords and survey, the client in another process.

    .venv/bin/python bench/inbound.py [--messages 20000] [--concurrency 50] [--rate 1000]

Each customer texts, in order: JOIN, Y, HELP, FEEDBACK, yes, 8, STOP, and something no
keyword matches; customers are interleaved so that one customer's texts are far apart.
Prints webhooks/s and p50/p99 latency flat out, p50/p99 at a steady --rate, and the same
flat-out run against a bare aiohttp handler that answers every request with a static TwiML
reply (what the HTTP layer alone costs), with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import statistics
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator
from webhooks import client_process  # bench/webhooks.py: the same flat-out client

from gateway import keys
from gateway.app import create_app
from gateway.config import parse_config
from gateway.daemon import tune_gc

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://sms.example.com"
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ("JOIN", "Y", "HELP", "FEEDBACK", "yes", "8", "STOP", "what time is it")
STATIC_TWIML = ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
                "Thanks!</Message></Response>")


def forms(messages: int, prefix: str = "SM", first_customer: int = 0
          ) -> list[tuple[dict[str, str], str]]:
    validator = RequestValidator(TOKEN)
    customers = max(1, messages // len(SCRIPT))
    out = []
    for n in range(messages):
        step, customer = divmod(n, customers)
        form = {"MessageSid": f"{prefix}{n:032d}",
                "From": f"+1415{3000000 + first_customer + customer:07d}",
                "To": "12345", "Body": SCRIPT[step % len(SCRIPT)], "NumSegments": "1"}
        out.append((form, validator.compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)))
    return out


def config(folder: str) -> Any:
    raw = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    raw["service"]["public_url"] = PUBLIC
    raw["database"]["path"] = str(Path(folder) / "bench.sqlite3")
    raw["provider"] = {"kind": "twilio", "twilio": {"account_sid": "AC" + "0" * 32,
                                                    "auth_token": TOKEN}}
    raw["inbound"]["max_auto_replies"] = 1000
    raw["logging"]["level"] = "warning"
    raw["api"]["tokens"] = ["bench-token-0123456789"]
    return parse_config(raw, environ={})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/webhooks/twilio/sms"


def paced_process(url: str, items: list[tuple[dict[str, str], str]], rate: float
                  ) -> list[float]:
    return asyncio.run(_paced(url, items, rate))


async def _paced(url: str, items: list[tuple[dict[str, str], str]], rate: float
                 ) -> list[float]:
    """One request every 1/rate seconds, whatever the answers' latency."""
    latencies: list[float] = []

    async def one(session: aiohttp.ClientSession, form: dict[str, str], sig: str) -> None:
        started = time.perf_counter()
        async with session.post(url, data=form, headers={"X-Twilio-Signature": sig}) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as session:
        tasks = []
        start = time.perf_counter()
        for i, (form, sig) in enumerate(items):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, form, sig)))
        await asyncio.gather(*tasks)
    return latencies


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (f"p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("forkserver")
    items = forms(args.messages)
    # Other message ids and customers than the flat-out run.
    paced_items = forms(min(args.messages, int(args.rate * 10)), "SX", 500_000)
    with tempfile.TemporaryDirectory() as folder, \
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        app = create_app(config(folder))
        runner, url = await serve(app)
        tune_gc()
        db = app[keys.DB]
        cpu = time.process_time()
        elapsed, latencies = await loop.run_in_executor(pool, client_process, url, items,
                                                        args.concurrency)
        cpu = time.process_time() - cpu
        stored = await db.fetchone("SELECT COUNT(*) FROM inbound_messages")
        replies = await db.fetchone("SELECT COUNT(*) FROM outbound_messages")
        rate = args.messages / elapsed
        print(f"gateway, {args.messages:,} signed webhooks, {args.concurrency} concurrent: "
              f"{rate:,.0f} webhooks/s, {percentiles(latencies)}")
        print(f"  {stored[0] if stored else 0:,} messages stored, "
              f"{replies[0] if replies else 0:,} replies; {db.writes:,} writes in "
              f"{db.commits:,} commits; gateway CPU {cpu / args.messages * 1e6:.0f} µs "
              f"per webhook ({cpu / elapsed:.2f} cores)")
        paced = await loop.run_in_executor(pool, paced_process, url, paced_items, args.rate)
        print(f"gateway at a steady {args.rate:,.0f} webhooks/s for "
              f"{len(paced_items) / args.rate:.0f} s: {percentiles(paced)}")
        await runner.cleanup()

        bare = web.Application()

        async def static(request: web.Request) -> web.Response:
            await request.post()
            return web.Response(text=STATIC_TWIML, content_type="text/xml")

        bare.router.add_post("/webhooks/twilio/sms", static)
        runner, url = await serve(bare)
        bare_cpu = time.process_time()
        bare_elapsed, bare_latencies = await loop.run_in_executor(
            pool, client_process, url, items, args.concurrency)
        bare_cpu = time.process_time() - bare_cpu
        await runner.cleanup()
    bare_rate = args.messages / bare_elapsed
    print(f"bare aiohttp handler, static TwiML: {bare_rate:,.0f} webhooks/s, "
          f"{percentiles(bare_latencies)}; CPU {bare_cpu / args.messages * 1e6:.0f} µs per "
          f"request ({bare_cpu / bare_elapsed:.2f} cores)")
    print(f"gateway / bare: {rate / bare_rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
