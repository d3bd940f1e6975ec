"""Storage: a real SQLite file, versioned migrations, group commit with isolated failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import pytest

from gateway.db import Database, DatabaseClosed, Tx
from gateway.db.migrate import Migration, known_migrations, migrate
from gateway.errors import SchemaError


async def test_open_creates_file_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "mcrm.sqlite3"
    db = await Database.open(path, busy_timeout_ms=1234)
    try:
        assert path.exists()
        row = await db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
        row = await db.fetchone("PRAGMA foreign_keys")
        assert row is not None and row[0] == 1
        row = await db.fetchone("PRAGMA busy_timeout")
        assert row is not None and row[0] == 1234
    finally:
        await db.close()


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "mcrm.sqlite3"
    for _ in range(3):
        db = await Database.open(path)
        rows = await db.fetchall("SELECT version, name FROM schema_migrations ORDER BY version")
        await db.close()
    assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in known_migrations()]
    async with aiosqlite.connect(path) as conn:
        assert await migrate(conn) == []


async def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "mcrm.sqlite3"
    db = await Database.open(path)
    await db.write(lambda tx: tx.execute(
        "INSERT INTO schema_migrations VALUES (999, 'from_the_future', '2030-01-01')"))
    await db.close()
    with pytest.raises(SchemaError, match=r"schema version 999.*knows only up to"):
        await Database.open(path)


async def test_failed_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    broken = [Migration(1, "ok", "CREATE TABLE a (x INTEGER);"),
              Migration(2, "broken",
                        "CREATE TABLE b (y INTEGER); INSERT INTO nowhere VALUES (1);")]
    async with aiosqlite.connect(tmp_path / "m.sqlite3", isolation_level=None) as conn:
        with pytest.raises(SchemaError, match="migration 0002_broken failed"):
            await migrate(conn, broken)
        async with conn.execute("SELECT name FROM sqlite_master WHERE type='table'") as cur:
            tables = {r[0] for r in await cur.fetchall()}
        async with conn.execute("SELECT version FROM schema_migrations") as cur:
            versions = [r[0] for r in await cur.fetchall()]
    assert "a" in tables and "b" not in tables
    assert versions == [1]


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "mcrm.sqlite3")

    def insert(i: int) -> Callable[[Tx], Awaitable[int]]:
        async def run(tx: Tx) -> int:
            return await tx.execute(
                "INSERT INTO status_callbacks (provider, provider_sid, status, received_at,"
                " params_json) VALUES ('t', ?, 'sent', 'now', '{}')", (f"SM{i}",))
        return run

    try:
        ids = await asyncio.gather(*(db.write(insert(i)) for i in range(300)))
        assert len(set(ids)) == 300
        assert db.writes == 300
        assert db.commits < 300 / 10  # shared commits, not one per write
        # Committed means visible from another connection to the same file.
        with sqlite3.connect(tmp_path / "mcrm.sqlite3") as other:
            assert other.execute("SELECT COUNT(*) FROM status_callbacks").fetchone()[0] == 300
    finally:
        await db.close()


async def test_a_failing_write_does_not_undo_its_neighbours(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "mcrm.sqlite3")

    async def good(tx: Tx) -> None:
        await tx.execute("INSERT INTO status_callbacks (provider, provider_sid, status,"
                         " received_at, params_json) VALUES ('t', 'good', 'sent', 'now', '{}')")

    async def bad(tx: Tx) -> None:
        await tx.execute("INSERT INTO status_callbacks (provider, provider_sid, status,"
                         " received_at, params_json) VALUES ('t', 'bad', 'sent', 'now', '{}')")
        raise ValueError("refused halfway")

    try:
        results = await asyncio.gather(db.write(good), db.write(bad), db.write(good),
                                       return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ValueError)
        rows = await db.fetchall("SELECT provider_sid FROM status_callbacks")
        assert sorted(r[0] for r in rows) == ["good", "good"]
    finally:
        await db.close()


async def test_close_finishes_queued_writes_then_refuses_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "mcrm.sqlite3"
    db = await Database.open(path)
    pending = [asyncio.ensure_future(db.write(lambda tx, i=i: tx.execute(
        "INSERT INTO status_callbacks (provider, provider_sid, status, received_at,"
        " params_json) VALUES ('t', ?, 'sent', 'now', '{}')", (f"SM{i}",)))) for i in range(50)]
    await asyncio.sleep(0)
    await db.close()
    await asyncio.gather(*pending)
    with pytest.raises(DatabaseClosed):
        await db.write(lambda tx: tx.execute("SELECT 1"))
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT COUNT(*) FROM status_callbacks").fetchone()[0] == 50


async def test_a_failing_write_alone_leaves_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "mcrm.sqlite3")

    async def half(tx: Tx) -> None:
        await tx.execute("INSERT INTO status_callbacks (provider, provider_sid, status,"
                         " received_at, params_json) VALUES ('t', 'x', 'sent', 'now', '{}')")
        raise ValueError("refused halfway")

    try:
        with pytest.raises(ValueError, match="halfway"):
            await db.write(half)
        assert await db.fetchall("SELECT * FROM status_callbacks") == []
        assert await db.write(lambda tx: tx.execute(
            "INSERT INTO status_callbacks (provider, provider_sid, status, received_at,"
            " params_json) VALUES ('t', 'y', 'sent', 'now', '{}')")) > 0
    finally:
        await db.close()


async def _insert_sids(tx: Tx, sids: list[str]) -> None:
    await tx.executemany("INSERT INTO status_callbacks (provider, provider_sid, status,"
                         " received_at, params_json) VALUES ('t', ?, 'sent', 'now', '{}')",
                         [(sid,) for sid in sids])


async def test_buffered_work_is_written_at_the_end_of_its_write_only(tmp_path: Path) -> None:
    """A write function's buffer is flushed before its savepoint is released; a failing
    neighbour's buffer is dropped with the rest of that write, in the same commit."""
    db = await Database.open(tmp_path / "mcrm.sqlite3")
    flushes: list[list[str]] = []

    async def flush(tx: Tx, sids: list[str]) -> None:
        flushes.append(list(sids))
        await _insert_sids(tx, sids)

    def buffered(name: str, fail: bool = False) -> Callable[[Tx], Awaitable[int]]:
        async def run(tx: Tx) -> int:
            for i in range(3):
                tx.buffer("sids", list, flush).append(f"{name}{i}")
            row = await tx.fetchone("SELECT COUNT(*) FROM status_callbacks"
                                    " WHERE provider_sid LIKE ?", (f"{name}%",))
            if fail:
                raise ValueError("refused after buffering")
            return int(row[0]) if row else -1
        return run

    try:
        results = await asyncio.gather(
            db.write(buffered("a")), db.write(buffered("b", fail=True)),
            db.write(buffered("c")), return_exceptions=True)
        assert results[0] == 0 and results[2] == 0  # nothing written before the end
        assert isinstance(results[1], ValueError)
        assert db.commits == 1  # all three shared one commit
        rows = await db.fetchall("SELECT provider_sid FROM status_callbacks ORDER BY id")
        assert [r[0] for r in rows] == ["a0", "a1", "a2", "c0", "c1", "c2"]
        assert flushes == [["a0", "a1", "a2"], ["c0", "c1", "c2"]]  # b's never flushed
    finally:
        await db.close()


async def test_flushing_early_writes_the_buffer_once(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "mcrm.sqlite3")

    async def run(tx: Tx) -> int:
        tx.buffer("sids", list, _insert_sids).extend(["x1", "x2"])
        await tx.flush("sids")  # someone needs the rows now
        row = await tx.fetchone("SELECT COUNT(*) FROM status_callbacks")
        tx.buffer("sids", list, _insert_sids).append("x3")
        return int(row[0]) if row else -1

    try:
        assert await db.write(run) == 2
        rows = await db.fetchall("SELECT provider_sid FROM status_callbacks ORDER BY id")
        assert [r[0] for r in rows] == ["x1", "x2", "x3"]
        # A session (a write that awaits other things) flushes at its end as well.
        assert await db.write_session(run) == 5
        assert len(await db.fetchall("SELECT 1 FROM status_callbacks")) == 6
    finally:
        await db.close()
