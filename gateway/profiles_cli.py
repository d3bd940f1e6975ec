"""`mcrm profiles import|erase`: work on the database file directly (the daemon may run)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TextIO

from consent import Consent
from consent.imports import consent_writer
from gateway.clock import SystemClock
from gateway.config import Config
from gateway.db import Database
from gateway.profile_import import (
    ImportReport,
    import_profiles,
    parse_mapping,
)
from gateway.profiles import ProfileStore


@contextlib.asynccontextmanager
async def _open(config: Config) -> AsyncIterator[tuple[Database, ProfileStore]]:
    db = await Database.open(config.database_path(),
                             busy_timeout_ms=config.database.busy_timeout_ms,
                             max_batch=config.database.max_batch)
    store = ProfileStore(default_region=config.phone.default_region)
    try:
        yield db, store
    finally:
        await db.close()


class _Progress:
    """Rows checked so far, with how much of the file has been read when its size is known.

    On a terminal one line is rewritten; otherwise a line every 5,000 rows, and the last.
    """

    EVERY = 5000

    def __init__(self, stream: TextIO, size: int | None, tty: bool) -> None:
        self.stream, self.size, self.tty = stream, size, tty
        self.handle: io.TextIOBase | None = None
        self._printed = 0

    def __call__(self, rows: int, done: bool) -> None:
        if not self.tty and not done and rows - self._printed < self.EVERY:
            return
        self._printed = rows
        share = ""
        if self.size and self.handle is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                done_bytes = self.handle.buffer.tell()  # type: ignore[attr-defined]
                share = f" ({min(done_bytes / self.size, 1.0):.0%} of the file read)"
        end = "\r" if self.tty and not done else "\n"
        print(f"checked {rows:,} rows{share}", end=end, file=self.stream, flush=True)


def _lines(handle: TextIO) -> Iterator[str]:
    yield from handle


def import_file(config: Config, args: argparse.Namespace) -> int:
    fmt = args.format or ("jsonl" if args.file.endswith((".jsonl", ".ndjson")) else "csv")
    show = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        size = None if args.file == "-" else os.path.getsize(args.file)
        handle: TextIO = sys.stdin if args.file == "-" else open(  # noqa: SIM115
            args.file, encoding="utf-8-sig", newline="")
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    progress = _Progress(sys.stderr, size, sys.stderr.isatty()) if show else None
    if progress is not None:
        progress.handle = handle  # type: ignore[assignment]
    try:
        report = asyncio.run(_import(config, handle, fmt, args, progress, size))
    except UnicodeDecodeError as exc:
        print(f"error: {args.file} is not UTF-8 text: {exc}", file=sys.stderr)
        return 2
    finally:
        if handle is not sys.stdin:
            handle.close()
    for line, message in report.errors:
        print(f"{args.file}:{line}: {message}", file=sys.stderr)
    if report.invalid > len(report.errors):
        print(f"... and {report.invalid - len(report.errors)} more invalid rows",
              file=sys.stderr)
    verdict = "imported" if report.applied else "nothing imported (--atomic)"
    print(f"{verdict}: {report.rows} rows, {report.valid} valid, {report.invalid} invalid, "
          f"{report.duplicates_merged} duplicates merged; {report.created} created, "
          f"{report.updated} updated, {report.unchanged} unchanged")
    return 0 if report.applied and not report.invalid else 1


async def _import(config: Config, handle: TextIO, fmt: str, args: argparse.Namespace,
                  progress: _Progress | None, size: int | None) -> ImportReport:
    async with _open(config) as (db, store):
        consent = Consent(config, store)
        return await import_profiles(
            db, store, _lines(handle), fmt=fmt, at=SystemClock().now(),
            mapping=parse_mapping(args.map), atomic=args.atomic, progress=progress,
            size_hint=size,
            consent_writer=consent_writer(consent.ledger),
            programs=frozenset(consent.catalog.programs))


async def erase(config: Config, raw_phone: str) -> int:
    async with _open(config) as (db, store):
        phone = store.normalise(raw_phone)
        event_id = await db.write(lambda tx: store.erase(tx, phone, SystemClock().now()))
        await db.checkpoint()
    print(f"erased {phone}: personal data removed, number suppressed (event {event_id})")
    return 0
