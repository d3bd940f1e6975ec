"""Versioned schema migrations, applied in order at start-up, each in its own transaction.

Files are ``migrations/NNNN_name.sql``; the applied versions are kept in
``schema_migrations``. Running twice changes nothing, and a database written by a newer
version of the gateway is refused rather than misread.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import aiosqlite

from gateway.errors import SchemaError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("gateway.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migration files are not numbered 1..n without gaps: {versions}")
    return found


async def migrate(conn: aiosqlite.Connection,
                  migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing; returns the versions applied now."""
    migrations = known_migrations() if migrations is None else migrations
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    async with conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaError(
            f"the database is at schema version {current}, but this version of mcrm-gateway "
            f"knows only up to {latest}: it was written by a newer release. Upgrade the "
            "gateway, or restore a backup made before the upgrade.")
    applied = []
    for migration in migrations:
        if migration.version <= current:
            continue
        now = datetime.now(UTC).isoformat()
        try:
            await conn.executescript(
                "BEGIN IMMEDIATE;\n" + migration.sql + "\n;"
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES "
                f"({migration.version}, '{migration.name}', '{now}');\nCOMMIT;")
        except Exception as exc:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise SchemaError(
                f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
        log.info("applied schema migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied
