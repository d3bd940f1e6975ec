"""The only place that talks SQL: an SQLite file in WAL mode, written through group commits.

One aiosqlite commit per row tops out near 3,400 rows/s on our machines, while one commit
per batch reaches hundreds of thousands; so every write is a small function handed to
``Database.write``, many of them share one transaction (each in its own savepoint, so one
failing write does not undo its neighbours), and each caller is answered only after the
commit that holds its write. The batch runs on a writer thread in one trip (write functions
await only their ``Tx``, whose calls never suspend); reads go through aiosqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.db.migrate import migrate
from gateway.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B")
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
    """The connection as a write function sees it: inside an open transaction, on the writer
    thread. The methods are coroutines so that write functions read like the rest of the
    code, but they never suspend: a whole group commit runs in one go on that thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._buffers: dict[object, tuple[Any, Callable[[Tx, Any], Awaitable[None]]]] = {}

    def buffer(self, key: object, factory: Callable[[], B],
               flush: Callable[[Tx, B], Awaitable[None]]) -> B:
        """Work to write at the end of the current write function (before its savepoint is
        released), so that many small changes become a few statements; `flush(tx, buffer)`
        writes it then, or earlier when someone calls `flush(key)` to read the rows."""
        found = self._buffers.get(key)
        if found is None:
            found = self._buffers[key] = (factory(), flush)
        return found[0]  # type: ignore[no-any-return]

    async def flush(self, key: object = None) -> None:
        """Write buffered work now: `key`'s, or all of it."""
        for name in [key] if key is not None else list(self._buffers):
            found = self._buffers.pop(name, None)
            if found is not None:
                await found[1](self, found[0])

    def discard(self) -> None:
        """Forget buffered work (its write function failed and is being rolled back)."""
        self._buffers.clear()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the last inserted row id (0 when nothing was inserted)."""
        return _last_id(self._conn.execute(sql, params))

    async def update(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an UPDATE or DELETE; returns how many rows it changed."""
        return self._conn.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self._conn.execute(sql, params).fetchall())


class _Reader:
    """Queries on the reader connection (aiosqlite: its own thread, one trip a query)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._conn.execute_fetchall(sql, params)
        return next(iter(rows), None)  # type: ignore[arg-type]

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))  # type: ignore[arg-type]


_Job = tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]
_Request = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]


class _Session:
    """A transaction held open on the writer thread for a write function that also awaits
    other things (an atomic import reading its file): its statements cross one by one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.requests: queue.SimpleQueue[_Request | bool] = queue.SimpleQueue()
        self.begun: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()


class _SessionTx(Tx):
    """`Tx` for a session: each call is one trip to the writer thread."""

    def __init__(self, session: _Session, loop: asyncio.AbstractEventLoop) -> None:
        self._session, self._loop = session, loop
        self._buffers = {}

    async def _run(self, call: Callable[[sqlite3.Connection], Any]) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._session.requests.put((call, future))
        return await future

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(await self._run(lambda c: _last_id(c.execute(sql, params))))

    async def update(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(await self._run(lambda c: c.execute(sql, params).rowcount))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        items = list(rows)
        await self._run(lambda c: c.executemany(sql, items))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = await self._run(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._run(lambda c: c.execute(sql, params).fetchall()))


def _last_id(cursor: sqlite3.Cursor) -> int:
    return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0


class Database:
    """A writer thread that runs group commits, and a reader connection for queries.

    Write functions are handed to the writer thread and run there back to back, each in its
    own savepoint, the whole batch in one transaction: one trip across threads per batch, not
    one per statement (which, with the event loop busy, is what bounded every write path).
    """

    def __init__(self, writer: sqlite3.Connection, reader: aiosqlite.Connection,
                 max_batch: int) -> None:
        self._writer_conn, self._reader = writer, reader
        self._read = _Reader(reader)
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | _Session | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._thread = threading.Thread(target=self._writer_loop, name="db-writer",
                                        daemon=True)
        self._thread.start()
        self.commits = 0
        self.writes = 0

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000,
                   max_batch: int = 500) -> Database:
        """Open (creating if needed) and migrate the database file at `path`."""
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            migrator = await _connect(path, busy_timeout_ms)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the database {path}: {exc}") from exc
        try:
            await migrate(migrator)
        finally:
            await migrator.close()
        writer = _connect_writer(path, busy_timeout_ms)
        try:
            reader = await _connect(path, busy_timeout_ms)
        except BaseException:
            writer.close()
            raise
        return cls(writer, reader, max_batch)

    @property
    def running(self) -> bool:
        return not self._closing and self._thread.is_alive()

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` inside a shared transaction; returns its result once that is committed.

        `fn` may await only its `Tx` (it runs on the writer thread, in one go)."""
        if self._closing:
            raise DatabaseClosed("the database is shutting down")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, future))
        # shield: a caller that gives up must not cancel a write others share a commit with.
        return await asyncio.shield(future)

    async def write_session(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` alone in one transaction that it may keep open while it awaits other
        things (e.g. the rest of a file to import); all or nothing. Other writes wait."""
        if self._closing:
            raise DatabaseClosed("the database is shutting down")
        session = _Session(self._loop)
        self._jobs.put(session)
        await session.begun
        tx = _SessionTx(session, self._loop)
        try:
            result = await fn(tx)
            await tx.flush()
        except BaseException:
            session.requests.put(False)
            with contextlib.suppress(Exception):
                await asyncio.shield(session.ended)
            raise
        session.requests.put(True)
        await asyncio.shield(session.ended)
        return result

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._read.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self._read.fetchone(sql, params)

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
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        await self._reader.close()

    # -- the writer thread ---------------------------------------------------------------

    def _writer_loop(self) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                if isinstance(first, _Session):
                    self._serve(first)
                    continue
                batch: list[_Job] = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    if isinstance(job, _Session):  # after this batch, on its own
                        self._jobs.put(job)
                        break
                    batch.append(job)
                outcomes = self._commit(batch)
                self.commits += 1
                self.writes += len(batch)
                self._loop.call_soon_threadsafe(_settle_all, batch, outcomes)
                if stop:
                    return
        finally:
            self._writer_conn.close()

    def _serve(self, session: _Session) -> None:
        conn, post = self._writer_conn, self._loop.call_soon_threadsafe
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            post(_settle, session.begun, False, exc)
            return
        post(_settle, session.begun, True, None)
        while True:
            request = session.requests.get()
            if isinstance(request, bool):
                try:
                    conn.execute("COMMIT" if request else "ROLLBACK")
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        conn.execute("ROLLBACK")
                    post(_settle, session.ended, False, exc)
                else:
                    post(_settle, session.ended, True, None)
                self.commits += 1
                self.writes += 1
                return
            call, future = request
            try:
                result = call(conn)
            except Exception as exc:
                post(_settle, future, False, exc)
            else:
                post(_settle, future, True, result)

    def _commit(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        conn, tx = self._writer_conn, Tx(self._writer_conn)
        single = len(batch) == 1  # alone in its commit: no savepoint needed
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _future in batch:
                if not single:
                    conn.execute("SAVEPOINT w")
                try:
                    result = _drive(fn(tx))
                    if tx._buffers:
                        _drive(tx.flush())
                except Exception as exc:
                    tx.discard()
                    conn.execute("ROLLBACK" if single else "ROLLBACK TO w")
                    if not single:
                        conn.execute("RELEASE w")
                    outcomes.append((False, exc))
                else:
                    if not single:
                        conn.execute("RELEASE w")
                    outcomes.append((True, result))
            if conn.in_transaction:
                conn.execute("COMMIT")
        except Exception as exc:  # the commit itself failed: nobody's write is durable
            log.exception("group commit of %d writes failed", len(batch))
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        return outcomes


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a write function's coroutine to its end: it never suspends (see Tx)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a database write function awaited something other than its Tx")


def _settle_all(batch: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    for (_fn, future), (ok, value) in zip(batch, outcomes, strict=True):
        _settle(future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # nobody waits any more (the caller was cancelled)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # FULL: a commit survives power loss, not just a crash; group commit pays for it.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    # Erased personal data must not linger in free pages of the file.
    "PRAGMA secure_delete = ON",
)


def _connect_writer(path: str | Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        for pragma in _PRAGMAS:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


async def _connect(path: str | Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = aiosqlite.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
    except BaseException:
        await conn.close()
        raise
    return conn
