"""``whaled db migrate|backup|vacuum|stats``: schema upgrades, online copies, compaction and figures."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from whaled.config import Settings
from whaled.errors import WhaledError
from whaled.lock import InstanceLock
from whaled.ops.common import (
    emit,
    emit_json,
    file_size,
    format_bytes,
    format_ms,
    read_only,
    require_database,
    table_exists,
)
from whaled.store import Database

__all__ = ["BackupError", "cmd_db_backup", "cmd_db_migrate", "cmd_db_stats", "cmd_db_vacuum"]


class BackupError(WhaledError, RuntimeError):
    """A backup could not be written; the message names the path and what to change."""


def _connect(path: Path, busy_timeout_ms: int, *, read_only: bool = False) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + ("?mode=ro" if read_only else "")
    return sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None)


def _schema_version(path: Path, busy_timeout_ms: int) -> int:
    """Return the schema version of the database at ``path``, 0 when it is missing or never migrated."""
    if not path.is_file():
        return 0
    with closing(_connect(path, busy_timeout_ms, read_only=True)) as conn:
        try:
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


async def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Create the database if needed and apply pending migrations, with the daemon stopped."""
    store = settings.store
    with InstanceLock(store.path):
        before = await asyncio.to_thread(_schema_version, store.path, store.busy_timeout_ms)
        db = await Database.open(store.path, busy_timeout_ms=store.busy_timeout_ms, readers=1)
        try:
            rows = await db.fetchall("SELECT version, name FROM schema_migrations ORDER BY version")
        finally:
            await db.close()
    latest = int(rows[-1]["version"]) if rows else 0
    if latest == before:
        emit(f"database {store.path} is at schema version {latest}, the latest; nothing to migrate")
        return 0
    emit(f"database {store.path} migrated from schema version {before} to {latest}:")
    for row in rows:
        if row["version"] > before:
            emit(f"  {row['version']:04d} {row['name']}")
    return 0


def _backup_target(requested: Path, source: Path, *, force: bool) -> Path:
    target = requested / f"whaled-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.db" if requested.is_dir() else requested
    if not target.parent.is_dir():
        raise BackupError(f"folder {str(target.parent)!r} for the backup does not exist; create it first")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"backup target {str(target)!r} is the live database; choose another path")
    if target.exists() and not force:
        raise BackupError(f"backup target {str(target)!r} already exists; choose another path or pass --force")
    return target


def _write_backup(source: Path, target: Path, busy_timeout_ms: int) -> None:
    """Copy ``source`` with SQLite's online backup into a side file, check it, then rename it to ``target``."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with (
            closing(_connect(source, busy_timeout_ms, read_only=True)) as src,
            closing(sqlite3.connect(partial, isolation_level=None)) as dst,
        ):
            # One step (pages=-1) copies a consistent snapshot under one read transaction; in WAL mode the
            # daemon keeps writing meanwhile.
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"the copy of {str(source)!r} failed its integrity check ({verdict}); nothing was kept")
        with partial.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {str(source)!r} to {str(target)!r} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


async def cmd_db_backup(args: argparse.Namespace, settings: Settings) -> int:
    """Write a consistent copy of the database to PATH (a file, or a folder for a timestamped name)."""
    source = require_database(settings)
    target = _backup_target(Path(args.path), source, force=args.force)
    started = time.monotonic()
    await asyncio.to_thread(_write_backup, source, target, settings.store.busy_timeout_ms)
    elapsed = time.monotonic() - started
    emit(f"backup of {source} written to {target}: {format_bytes(file_size(target))} in {elapsed:.1f} s, integrity ok")
    return 0


def _database_bytes(path: Path) -> int:
    return file_size(path) + file_size(path.with_name(path.name + "-wal"))


def _vacuum(path: Path, busy_timeout_ms: int) -> None:
    with closing(_connect(path, busy_timeout_ms)) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA optimize")


async def cmd_db_vacuum(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the database file to return free pages to the file system, with the daemon stopped."""
    path = require_database(settings)
    with InstanceLock(path):
        before = _database_bytes(path)
        started = time.monotonic()
        try:
            await asyncio.to_thread(_vacuum, path, settings.store.busy_timeout_ms)
        except sqlite3.Error as exc:
            raise WhaledError(
                f"vacuum of {str(path)!r} failed: {exc}; it needs free disk space about the size of the database"
            ) from exc
        after = _database_bytes(path)
    elapsed = time.monotonic() - started
    emit(
        f"vacuumed {path}: {format_bytes(before)} before, {format_bytes(after)} after "
        f"({format_bytes(max(before - after, 0))} freed) in {elapsed:.1f} s"
    )
    return 0


async def _scalar(conn: aiosqlite.Connection, sql: str) -> Any:
    async with conn.execute(sql) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def _collect_stats(conn: aiosqlite.Connection, path: Path) -> dict[str, Any]:
    async with conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ) as cursor:
        tables = [row[0] for row in await cursor.fetchall()]
    counts = {name: int(await _scalar(conn, f'SELECT count(*) FROM "{name}"')) for name in tables}
    version = await _scalar(conn, "SELECT max(version) FROM schema_migrations") if "schema_migrations" in counts else 0
    page_size = int(await _scalar(conn, "PRAGMA page_size"))
    stats: dict[str, Any] = {
        "path": str(path),
        "size_bytes": file_size(path),
        "wal_bytes": file_size(path.with_name(path.name + "-wal")),
        "page_size": page_size,
        "pages": int(await _scalar(conn, "PRAGMA page_count")),
        "free_pages": int(await _scalar(conn, "PRAGMA freelist_count")),
        "journal_mode": await _scalar(conn, "PRAGMA journal_mode"),
        "schema_version": version or 0,
        "rows": counts,
    }
    if await table_exists(conn, "events"):
        async with conn.execute("SELECT min(id), max(id), min(created_ms), max(created_ms) FROM events") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        stats["events"] = {"first_id": row[0], "last_id": row[1], "oldest_ms": row[2], "newest_ms": row[3]}
    if await table_exists(conn, "trades"):
        async with conn.execute("SELECT min(created_at_ms), max(created_at_ms) FROM trades") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        stats["trades"] = {"oldest_ms": row[0], "newest_ms": row[1]}
    return stats


def _print_stats(stats: dict[str, Any]) -> None:
    free_pct = 100 * stats["free_pages"] / stats["pages"] if stats["pages"] else 0.0
    emit(f"database        {stats['path']}")
    emit(
        f"size            {format_bytes(stats['size_bytes'])} (WAL {format_bytes(stats['wal_bytes'])}), "
        f"{stats['pages']} pages of {stats['page_size']} B, {free_pct:.1f}% free"
    )
    emit(f"journal mode    {stats['journal_mode']}")
    emit(f"schema version  {stats['schema_version']}")
    events = stats.get("events")
    if events is not None and events["last_id"] is not None:
        emit(
            f"events          ids {events['first_id']} to {events['last_id']}, "
            f"{format_ms(events['oldest_ms'])} to {format_ms(events['newest_ms'])}"
        )
    trades = stats.get("trades")
    if trades is not None and trades["newest_ms"] is not None:
        emit(f"trades          {format_ms(trades['oldest_ms'])} to {format_ms(trades['newest_ms'])}")
    emit("rows")
    for name, count in stats["rows"].items():
        emit(f"  {name:<22} {count:>12,}")


async def cmd_db_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Print file sizes, schema version, event range and row counts; read-only."""
    async with read_only(settings) as conn:
        stats = await _collect_stats(conn, settings.store.path)
    if args.json:
        emit_json(stats)
    else:
        _print_stats(stats)
    return 0
