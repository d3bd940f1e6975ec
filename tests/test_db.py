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
