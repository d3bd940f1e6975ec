"""How long 100,000 CSV rows take to import into a fresh database (issue: under 10 s).

    .venv/bin/python bench/import_profiles.py [ROWS]

Prints rows, seconds and rows/s for a plain import and for an atomic one.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.db import Database
from gateway.profile_import import import_profiles, parse_mapping
from gateway.profiles import ProfileStore

MAPPING = "Mobile=phone,First=first_name,Last=last_name,Age=attributes.age:integer," \
          "Joined=attributes.joined:date"


def make_csv(rows: int) -> list[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Mobile", "First", "Last", "email", "tags", "Age", "Joined", "City"])
    for i in range(rows):
        writer.writerow([f"+1415{2000000 + i:07d}", f"Name{i}", f"Last{i}",
                         f"user{i}@example.com", "vip;beta" if i % 3 == 0 else "beta",
                         str(20 + i % 50), f"2026-01-{1 + i % 28:02d}", "San Francisco"])
    return out.getvalue().splitlines(keepends=True)


async def run(rows: int, atomic: bool, in_worker: bool = True) -> float:
    lines = make_csv(rows)
    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(Path(folder) / "bench.sqlite3")
        store = ProfileStore(default_region="US")
        started = time.perf_counter()
        report = await import_profiles(db, store, lines, fmt="csv", at=datetime.now(UTC),
                                       mapping=parse_mapping(MAPPING), atomic=atomic,
                                       in_worker=in_worker)
        elapsed = time.perf_counter() - started
        await db.close()
    assert report.created == rows, report.to_dict()
    return elapsed


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for atomic, in_worker in ((False, True), (True, True), (False, False)):
        elapsed = asyncio.run(run(rows, atomic, in_worker))
        mode = ("atomic" if atomic else "batched") + (
            ", checked in a worker process" if in_worker else ", checked inline")
        print(f"import {rows:,} rows ({mode}): {elapsed:.2f} s, {rows / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()
