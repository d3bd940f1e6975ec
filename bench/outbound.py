"""Outbound throughput: queue N messages and send them through the real twilio library to a
Twilio-shaped fake in its own process on 127.0.0.1, which calls back with signed receipts.

    .venv/bin/python bench/outbound.py [--messages 50000] [--throttled 1500] [--rate 100]

Prints, for the unthrottled run: messages/s from queued to accepted by the provider,
messages/s until every receipt ("sent" and "delivered") is recorded, and the peak RSS of the
gateway process. For the throttled run (a mix of 1- and 2-segment messages at --rate
segments/s): the achieved rate and the largest number of segments in any one-second window,
as the fake received them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from bisect import bisect_left
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.app import create_app
from gateway.config import parse_config
from gateway.daemon import tune_gc
from gateway.outbound import NewMessage
from gateway.sms import segment

ACCOUNT = "AC" + "0" * 32
TOKEN = "0123456789abcdef0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def start_fake(receipts: bool) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.twilio_server", "--account-sid", ACCOUNT,
         "--auth-token", TOKEN, "--callback-delay", "0.5",
         *(["--callbacks"] if receipts else [])],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def body(n: int, two_segments: bool) -> str:
    text = f"Order {n} is on its way. Track it at https://acme.example/t/{n:08d}."
    return (text + " " + "Thanks for shopping with Acme." * 4) if two_segments else text


async def run_once(folder: str, fake_url: str, messages: int, rate: float,
                   mixed: bool, receipts: bool) -> dict[str, Any]:
    with socket.socket() as sock:  # the app must know its own URL for the callbacks
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = parse_config({
        "service": {"public_url": f"http://127.0.0.1:{port}", "port": port},
        "database": {"path": str(Path(folder) / f"bench-{rate:g}.sqlite3")},
        "provider": {"kind": "twilio", "twilio": {
            "account_sid": ACCOUNT, "auth_token": TOKEN, "api_base_url": fake_url}},
        "short_codes": [{"code": "12345", "messages_per_second": rate}],
        "programs": [{"id": "orders", "name": "Orders", "short_code": "12345",
                      "kind": "transactional", "double_opt_in": False,
                      "help_text": "Acme orders: help@acme.example. STOP to end."}],
        "outbound": {"max_in_flight": 64},
        "logging": {"level": "warning"},
    }, environ={})
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    db, outbound = app[keys.DB], app[keys.OUTBOUND]
    tune_gc()  # as `mcrm serve` does once it listens
    handed: list[tuple[float, int]] = []  # (monotonic time of each hand-over, segments)
    provider = app[keys.PROVIDER]
    real_send = provider.send

    async def timed_send(sms: Any) -> Any:
        handed.append((time.monotonic(), segment(sms.body).segments))
        return await real_send(sms)

    provider.send = timed_send  # type: ignore[method-assign]

    started, cpu = time.perf_counter(), time.process_time()
    batch = 2000
    for first in range(0, messages, batch):
        await outbound.queue([
            NewMessage(f"+1415{2000000 + n:07d}", body(n, mixed and n % 2 == 1), "orders",
                       "transactional") for n in range(first, min(first + batch, messages))])
    queued = time.perf_counter() - started

    async def count(*statuses: str) -> int:
        row = await db.fetchone(
            f"SELECT COUNT(*) FROM outbound_messages WHERE status IN "
            f"({','.join('?' * len(statuses))})", statuses)
        return int(row[0]) if row else 0

    accepted_at = receipts_at = None
    accepted_cpu = receipts_cpu = float("nan")
    while receipts_at is None:
        await asyncio.sleep(0.1)
        if accepted_at is None and await count("sent", "delivered") == messages:
            accepted_at = time.perf_counter() - started
            accepted_cpu = time.process_time() - cpu
        if accepted_at is not None and not receipts:
            receipts_at = float("nan")
        elif accepted_at is not None and await count("delivered") == messages:
            receipts_at = time.perf_counter() - started
            receipts_cpu = time.process_time() - cpu
    row = await db.fetchone("SELECT COALESCE(SUM(segments), 0) FROM outbound_messages")
    segments = int(row[0]) if row else 0
    commits, writes = db.commits, db.writes
    await runner.cleanup()
    return {"queued_s": queued, "accepted_s": accepted_at, "receipts_s": receipts_at,
            "accepted_cpu": accepted_cpu, "receipts_cpu": receipts_cpu,
            "segments": segments, "commits": commits, "writes": writes, "handed": handed}


def windows(arrivals: list[tuple[float, int]]) -> tuple[float, int]:
    """(achieved segments/s, most segments in any one-second window)."""
    arrivals.sort()
    times = [t for t, _ in arrivals]
    prefix = [0]
    for _, seg in arrivals:
        prefix.append(prefix[-1] + seg)
    most = 0
    for i, t in enumerate(times):  # windows [t, t + 1) starting at each arrival
        j = bisect_left(times, t + 1.0)
        most = max(most, prefix[j] - prefix[i])
    span = times[-1] - times[0]
    # Rate over the span: every segment but the last message's arrived within it.
    return (prefix[-1] - arrivals[-1][1]) / span, most


def fetch_created(fake_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{fake_url}/fake/created") as response:
        return list(json.load(response))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--throttled", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--no-receipts", dest="receipts", action="store_false",
                        help="the fake sends no status callbacks")
    args = parser.parse_args()
    fake, fake_url = start_fake(args.receipts)
    try:
        with tempfile.TemporaryDirectory() as folder:
            if args.messages:
                result = await run_once(folder, fake_url, args.messages, 1_000_000.0,
                                        mixed=False, receipts=args.receipts)
                n = args.messages
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"unthrottled, {n} messages")
                print(f"  queued in                 {result['queued_s']:.2f} s")
                print(f"  queued -> accepted        {n / result['accepted_s']:.0f} messages/s "
                      f"({result['accepted_s']:.1f} s)")
                print(f"  queued -> every receipt   {n / result['receipts_s']:.0f} messages/s "
                      f"({result['receipts_s']:.1f} s)")
                print(f"  gateway CPU per message   {result['accepted_cpu'] / n * 1e6:.0f} µs "
                      f"until accepted, {result['receipts_cpu'] / n * 1e6:.0f} µs with "
                      "its two receipts (all threads of the gateway process)")
                print(f"  peak RSS (gateway)        {rss:.0f} MB")
                print(f"  database                  {result['writes']} writes in "
                      f"{result['commits']} commits")
                created = fetch_created(fake_url)
                sent = [c["body"] for c in created]
                print(f"  fake received             {len(sent)} messages, "
                      f"{len(sent) - len(set(sent))} duplicates")
            if args.throttled:
                # A fake of its own, without receipts to send, so that its clock is not
                # bunched up by its own work: it plays the carrier counting arrivals.
                quiet, quiet_url = start_fake(receipts=False)
                try:
                    result = await run_once(folder, quiet_url, args.throttled, args.rate,
                                            mixed=True, receipts=False)
                    created = fetch_created(quiet_url)
                finally:
                    quiet.terminate()
                arrivals = [(c["at"], segment(c["body"]).segments) for c in created]
                print(f"throttled at {args.rate:g} segments/s, {args.throttled} messages "
                      f"({result['segments']} segments, 1 and 2 per message)")
                for name, times in (("handed over", result["handed"]),
                                    ("arrived at the fake", arrivals)):
                    achieved, most = windows(times)
                    print(f"  {name:20}  {achieved:.2f} segments/s "
                          f"({(achieved / args.rate - 1) * 100:+.2f}%), most in any one-second "
                          f"window: {most}")
    finally:
        fake.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            fake.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
