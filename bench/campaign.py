"""Push campaigns at scale: audiences of 100,000 and 1,000,000 opted-in profiles, sent through
the real twilio library to a Twilio-shaped fake in its own process, unthrottled.

    .venv/bin/python bench/campaign.py [--sizes 100000,1000000] [--segment]

For each size, in a fresh gateway process (so that peak memory is that size's alone):
time to materialise the audience (the run fixing its recipients), time to queue and send
all of it, messages/s accepted by the fake, and the gateway's peak RSS. The profiles and
their opt-ins are seeded straight into SQLite first (the seeding is not measured). With
--segment the audience is a segment (a tag that half of the profiles have).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import keys  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.daemon import tune_gc  # noqa: E402
from gateway.db import Database  # noqa: E402

ACCOUNT = "AC" + "0" * 32
TOKEN = "0123456789abcdef0123456789abcdef"
STAMP = "2026-01-01T00:00:00.000000+00:00"


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.twilio_server", "--account-sid", ACCOUNT,
         "--auth-token", TOKEN], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def seed(path: Path, size: int) -> None:
    """`size` profiles opted in to `deals` (every other one tagged vip), as plain rows."""
    asyncio.run(_migrate(path))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany(
            "INSERT INTO profiles (phone, first_name, tags_json, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            ((f"+1415{2000000 + n:07d}", f"Name{n}", '["vip"]' if n % 2 else "[]", STAMP,
              STAMP) for n in range(size)))
        conn.executemany(
            "INSERT INTO consent_events (id, phone, program_id, kind, source, occurred_at,"
            " evidence_json) VALUES (?, ?, 'deals', 'imported', 'import', ?, ?)",
            ((n + 1, f"+1415{2000000 + n:07d}", STAMP, '{"file":"bench"}')
             for n in range(size)))
        conn.executemany(
            "INSERT INTO consent_status (phone, program_id, status, since, last_event_id,"
            " opt_in_event_id) VALUES (?, 'deals', 'opted_in', ?, ?, ?)",
            ((f"+1415{2000000 + n:07d}", STAMP, n + 1, n + 1) for n in range(size)))
    conn.close()


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


async def run_size(db_path: Path, fake_url: str, size: int, segment: bool) -> dict[str, Any]:
    """The measured part, in its own process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = parse_config({
        "service": {"public_url": f"http://127.0.0.1:{port}", "port": port},
        "database": {"path": str(db_path)},
        "provider": {"kind": "twilio", "twilio": {
            "account_sid": ACCOUNT, "auth_token": TOKEN, "api_base_url": fake_url}},
        "short_codes": [{"code": "12345", "messages_per_second": 1_000_000}],
        "programs": [{"id": "deals", "name": "Deals", "short_code": "12345",
                      "help_text": "Acme deals: help@acme.example. STOP to end.",
                      "quiet_hours": "always"}],
        "outbound": {"max_in_flight": 64},
        "campaigns": {"batch_size": 1000, "queue_ahead": 4000},
        "logging": {"level": "warning"},
    }, environ={})
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tune_gc()
    service, db = app[keys.CAMPAIGNS], app[keys.DB]
    campaign = await service.create({
        "name": "Bench", "program": "deals",
        "template": "Hi {first_name|there}, 20% off this weekend at Acme. STOP to end.",
        **({"audience": {"tag": "vip"}} if segment else {})})
    started = time.perf_counter()
    await service.schedule(campaign.id, {"now": True})
    materialised = None
    while True:
        runs = await service.runs(campaign.id)
        if runs and runs[0]["status"] != "materialising":
            materialised = time.perf_counter() - started
            audience = runs[0]["audience"]
            break
        await asyncio.sleep(0.02)
    while True:
        if (await service.get(campaign.id)).status == "completed":
            break
        await asyncio.sleep(0.5)
    done = time.perf_counter() - started
    row = await db.fetchone("SELECT COUNT(*), SUM(status = 'sent') FROM outbound_messages"
                            " WHERE campaign_id = ?", (campaign.id,))
    await runner.cleanup()
    return {"size": size, "audience": audience, "materialise_s": materialised,
            "total_s": done, "messages": int(row[0]) if row else 0,
            "sent": int(row[1] or 0) if row else 0,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--segment", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("DB", "FAKE", "SIZE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        db, fake_url, size = args.child
        print(json.dumps(asyncio.run(run_size(Path(db), fake_url, int(size), args.segment))))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        fake, fake_url = start_fake()
        try:
            with tempfile.TemporaryDirectory() as folder:
                db = Path(folder) / "bench.sqlite3"
                t = time.perf_counter()
                seed(db, size)
                print(f"seeded {size} profiles in {time.perf_counter() - t:.1f} s "
                      f"(not measured)", flush=True)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(db), fake_url, str(size),
                     *(["--segment"] if args.segment else [])],
                    check=True, capture_output=True, text=True, cwd=ROOT)
                result = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            fake.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                fake.wait(5)
        results.append(result)
        send_s = result["total_s"] - result["materialise_s"]
        print(f"audience {result['audience']} of {size} profiles")
        print(f"  materialised in           {result['materialise_s']:.2f} s "
              f"({result['audience'] / result['materialise_s']:.0f} recipients/s)")
        print(f"  queued and sent in        {send_s:.1f} s "
              f"({result['sent'] / send_s:.0f} messages/s accepted by the fake)")
        print(f"  messages                  {result['messages']} ({result['sent']} sent)")
        print(f"  peak RSS (gateway)        {result['rss_mb']:.0f} MB", flush=True)
    if len(results) > 1:
        first, last = results[0]["rss_mb"], results[-1]["rss_mb"]
        print(f"peak RSS, largest vs smallest: {last:.0f} MB vs {first:.0f} MB "
              f"({(last / first - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
