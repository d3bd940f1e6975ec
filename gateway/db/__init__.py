"""The only place that talks SQL: an SQLite file in WAL mode, written through group commits.

One aiosqlite commit per row tops out near 3,400 rows/s on our machines, while one commit
per batch reaches hundreds of thousands; so every write is a small function handed to
``Database.write``, many of them share one transaction (each in its own savepoint, so one
failing write does not undo its neighbours), and each caller is answered only after the
commit that holds its write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.db.migrate import migrate
from gateway.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = aiosqlite.Row


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact JSON for a TEXT column (one encoder: json.dumps with options builds one per
    call, which shows on the import path)."""
    return _ENCODER.encode(value)


def marks(items: Sequence[object]) -> str:
    """`?,?,?` for an IN (…) list of `items`."""
    return ",".join("?" * len(items))


class DatabaseClosed(RuntimeError):
    """A write arrived after shutdown began."""


class Tx:
    """The connection as a write function sees it: inside an open transaction.

    Every call is one trip to the database thread (no separate cursor close or fetch): on
    the hot paths a message takes a dozen statements, and the trips are what cost.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the last inserted row id (0 when nothing was inserted)."""
        cursor = await self._conn.execute(sql, params)
        return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0

    async def update(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an UPDATE or DELETE; returns how many rows it changed."""
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._conn.execute_fetchall(sql, params)
        return next(iter(rows), None)  # type: ignore[arg-type]

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))  # type: ignore[arg-type]


_Job = tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]


class Database:
    """A writer connection fed by a group-commit task, and a reader connection for queries."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 max_batch: int) -> None:
        self._writer, self._reader = writer, reader
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._closing = False
        self._committer = asyncio.create_task(self._commit_loop(), name="db-committer")
        self.commits = 0
        self.writes = 0

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000,
                   max_batch: int = 500) -> Database:
        """Open (creating if needed) and migrate the database file at `path`."""
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            writer = await _connect(path, busy_timeout_ms)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the database {path}: {exc}") from exc
        try:
            await migrate(writer)
            reader = await _connect(path, busy_timeout_ms)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, max_batch)

    @property
    def running(self) -> bool:
        return not self._closing and not self._committer.done()

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` inside a shared transaction; returns its result once that is committed."""
        if self._closing:
            raise DatabaseClosed("the database is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, future))
        # shield: a caller that gives up must not cancel a write others share a commit with.
        return await asyncio.shield(future)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await Tx(self._reader).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await Tx(self._reader).fetchone(sql, params)

    async def ping(self) -> None:
        """Raises when the file cannot be read (readiness probe)."""
        await self.fetchone("SELECT 1")

    async def checkpoint(self, attempts: int = 20) -> bool:
        """Copy the WAL into the main file and truncate it, so that data overwritten in the
        file (an erasure) no longer survives in old WAL frames. True when it completed."""
        for _ in range(attempts):
            row = await self.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
            if row is not None and row[0] == 0:
                return True
            await asyncio.sleep(0.05)
        log.warning("WAL checkpoint did not complete (the database is busy): overwritten data "
                    "stays in the -wal file until the next checkpoint")
        return False

    async def close(self) -> None:
        """Finish every write already handed in, then close both connections."""
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._committer
        await self._reader.close()
        await self._writer.close()

    async def _commit_loop(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                    break
                batch.append(job)
            await self._commit(batch)

    async def _commit(self, batch: list[_Job]) -> None:
        if len(batch) == 1:
            await self._commit_one(*batch[0])
            return
        tx = Tx(self._writer)
        outcomes: list[tuple[bool, Any]] = []
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            for fn, _future in batch:
                await self._writer.execute("SAVEPOINT w")
                try:
                    result = await fn(tx)
                except Exception as exc:
                    await self._writer.execute("ROLLBACK TO w")
                    await self._writer.execute("RELEASE w")
                    outcomes.append((False, exc))
                else:
                    await self._writer.execute("RELEASE w")
                    outcomes.append((True, result))
            await self._writer.execute("COMMIT")
        except Exception as exc:  # the commit itself failed: nobody's write is durable
            log.exception("group commit of %d writes failed", len(batch))
            with contextlib.suppress(Exception):
                await self._writer.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        self.commits += 1
        self.writes += len(batch)
        for (_fn, future), (ok, value) in zip(batch, outcomes, strict=True):
            _settle(future, ok, value)

    async def _commit_one(self, fn: Callable[[Tx], Awaitable[Any]],
                          future: asyncio.Future[Any]) -> None:
        """A write alone in its commit needs no savepoint: two trips fewer when idle."""
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(Tx(self._writer))
            except Exception as exc:
                await self._writer.execute("ROLLBACK")
                ok, value = False, exc
            else:
                await self._writer.execute("COMMIT")
                ok, value = True, result
        except Exception as exc:  # BEGIN or COMMIT failed
            log.exception("commit of a write failed")
            with contextlib.suppress(Exception):
                await self._writer.execute("ROLLBACK")
            ok, value = False, exc
        self.commits += 1
        self.writes += 1
        _settle(future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # nobody waits any more (the caller was cancelled)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def _connect(path: str | Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = aiosqlite.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives power loss, not just a crash; group commit pays for it.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        # Erased personal data must not linger in free pages of the file.
        await conn.execute("PRAGMA secure_delete = ON")
    except BaseException:
        await conn.close()
        raise
    return conn
