"""Versioned schema migrations shipped in the package as ``migrations/NNNN_name.sql``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import aiosqlite

from whaled.clock import now_ms
from whaled.errors import WhaledError

__all__ = ["Migration", "MigrationError", "apply_migrations", "available_migrations", "current_version"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(WhaledError, RuntimeError):
    """The database schema is newer than this whaled, or a migration failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("whaled.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


async def current_version(conn: aiosqlite.Connection) -> int:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
    )
    async with conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def apply_migrations(conn: aiosqlite.Connection) -> list[int]:
    """Apply every migration newer than the database, each in its own transaction; return their versions.

    :raises MigrationError: when the database was migrated by a newer whaled.
    """
    version = await current_version(conn)
    migrations = available_migrations()
    latest = migrations[-1].version if migrations else 0
    if version > latest:
        raise MigrationError(
            f"database schema version {version} is newer than this whaled supports ({latest}); "
            "upgrade whaled or restore a backup"
        )
    applied = []
    for migration in migrations:
        if migration.version <= version:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
                (migration.version, migration.name, now_ms()),
            )
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        applied.append(migration.version)
    return applied


def _split_statements(sql: str) -> list[str]:
    # Migrations hold plain DDL without triggers, so a semicolon at the end of a line ends a statement.
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if "".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements
