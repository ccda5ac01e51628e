"""Helpers shared by the operations commands: output, read-only database access, formatting."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from whaled.config import Settings
from whaled.errors import WhaledError

__all__ = [
    "DatabaseMissingError",
    "emit",
    "emit_json",
    "file_size",
    "format_bytes",
    "format_ms",
    "read_only",
    "require_database",
    "table_exists",
]


class DatabaseMissingError(WhaledError, FileNotFoundError):
    """The configured database file does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"database {str(path)!r} not found; check store.path in the configuration, "
            "or create it with `whaled db migrate` (the daemon also creates it at its first start)"
        )


def emit(text: str = "") -> None:
    """Write one line of command output to stdout."""
    print(text)  # noqa: T201 (command output)


def emit_json(data: Any) -> None:
    emit(json.dumps(data, indent=2, default=str))


def require_database(settings: Settings) -> Path:
    """Return the configured database path, or raise :class:`DatabaseMissingError` when the file is missing."""
    path = settings.store.path
    if not path.is_file():
        raise DatabaseMissingError(path)
    return path


@asynccontextmanager
async def read_only(settings: Settings) -> AsyncIterator[aiosqlite.Connection]:
    """Open the database read-only: no migration, no file created, safe beside a running daemon."""
    path = require_database(settings)
    conn = await aiosqlite.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout={int(settings.store.busy_timeout_ms)}")
        yield conn
    finally:
        await conn.close()


async def table_exists(conn: aiosqlite.Connection, name: str) -> bool:
    async with conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) as cursor:
        return await cursor.fetchone() is not None


def format_ms(value: int | None) -> str:
    """Render Unix milliseconds as UTC ISO 8601 to the second, or ``-``."""
    if value is None:
        return "-"
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="seconds")


def format_bytes(size: int) -> str:
    """Render a byte count with a binary unit: ``512 B``, ``3.4 MiB``."""
    amount, unit = float(size), "B"
    for larger in ("KiB", "MiB", "GiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, larger
    return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"


def file_size(path: Path) -> int:
    """Return the size of ``path`` in bytes, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
