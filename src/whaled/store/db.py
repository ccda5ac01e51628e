"""The SQLite database: one write connection, a pool of read-only connections, and commit notifications.

Every write is one unit of work inside ``async with db.transaction() as tx`` (``BEGIN IMMEDIATE``) on the
single write connection, serialised by a lock. Readers take a connection from the pool with
``async with db.reader() as conn`` and must not keep it across an ``await`` on the network.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from whaled.errors import WhaledError
from whaled.log import store_logger as logger
from whaled.store.events import EventNotifier, append_event
from whaled.store.migrate import apply_migrations

__all__ = ["Database", "StoreError", "Transaction"]

T = TypeVar("T")


class StoreError(WhaledError, RuntimeError):
    """The database cannot be opened or used."""


class Transaction:
    """One unit of work on the write connection; events appended here are announced after the commit."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.last_event_id = 0
        self.events_appended = 0

    async def execute(self, sql: str, parameters: Any = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, parameters)

    async def executemany(self, sql: str, rows: Any) -> aiosqlite.Cursor:
        return await self.conn.executemany(sql, rows)

    async def fetchall(self, sql: str, parameters: Any = ()) -> list[sqlite3.Row]:
        # One round trip to the connection's thread, where execute + fetchall + close would take three.
        return list(await self.conn.execute_fetchall(sql, parameters))

    async def fetchone(self, sql: str, parameters: Any = ()) -> sqlite3.Row | None:
        rows = await self.conn.execute_fetchall(sql, parameters)
        return next(iter(rows), None)

    async def append_event(
        self,
        topic: str,
        type_: str,
        payload: dict[str, Any],
        *,
        wallet: str | None = None,
        market_id: int | None = None,
    ) -> int:
        event_id = await append_event(self.conn, topic, type_, payload, wallet=wallet, market_id=market_id)
        self.note_events(event_id, 1)
        return event_id

    def note_events(self, last_id: int, count: int) -> None:
        """Record events appended by a bulk statement, so that they are announced after the commit."""
        self.last_event_id = max(self.last_event_id, last_id)
        self.events_appended += count


class Database:
    """The store. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000, readers: int = 4) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.events = EventNotifier()
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # At most ``readers`` connections are lent at once; idle ones wait in ``_idle_readers``.
        self._reader_slots = asyncio.Semaphore(readers)
        self._idle_readers: list[aiosqlite.Connection] = []
        self._all_readers: set[aiosqlite.Connection] = set()
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_ms: int = 5000, readers: int = 4) -> Database:
        """Open (creating if needed) the database at ``path`` and apply pending migrations."""
        db = cls(path, busy_timeout_ms=busy_timeout_ms, readers=readers)
        try:
            await db._open_writer()
        except (sqlite3.Error, OSError) as exc:
            await db.close()
            raise StoreError(f"cannot open database {str(path)!r}: {exc}") from exc
        return db

    async def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._writer = conn
        conn.row_factory = sqlite3.Row
        await self._configure(conn)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        applied = await apply_migrations(conn)
        if applied:
            logger.info("Database %s migrated to version %d", self.path, applied[-1])
        conn.isolation_level = "IMMEDIATE"
        row = await (await conn.execute("SELECT coalesce(max(id), 0) FROM events")).fetchone()
        self.events.last_id = int(row[0]) if row else 0

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")

    async def _open_reader(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await self._configure(conn)
        self._all_readers.add(conn)
        return conn

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StoreError(f"database {str(self.path)!r} is not open; call Database.open() first")
        return self._writer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Run one unit of work in one transaction on the write connection.

        The lock makes this connection the only writer of the process. The transaction itself opens as
        ``BEGIN IMMEDIATE`` right before the first write statement (sqlite3's implicit transactions with
        ``isolation_level="IMMEDIATE"``), which saves a round trip to the connection's thread per unit.
        """
        async with self._write_lock:
            conn = self.writer
            tx = Transaction(conn)
            try:
                yield tx
            except BaseException:
                await asyncio.shield(conn.rollback())
                raise
            await asyncio.shield(conn.commit())
        if tx.events_appended:
            self.events.publish(tx.last_event_id)

    async def write_in_thread(self, function: Callable[[sqlite3.Connection], tuple[T, int]]) -> T:
        """Run ``function`` as one unit of work on the write connection's own thread, in one round trip.

        ``function(conn)`` runs between ``BEGIN IMMEDIATE`` and ``COMMIT`` (or ``ROLLBACK`` if it raises) and
        returns ``(result, last_event_id)``, with 0 when it appended no event. Hot paths use this instead of
        :meth:`transaction`, whose every statement is a round trip to that thread.
        """

        def unit_of_work(conn: sqlite3.Connection) -> tuple[T, int]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcome = function(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return outcome

        async with self._write_lock:
            # NOTE: aiosqlite (0.20 to 0.22) has no public call to run a function on its thread; its private
            # ``_execute`` does. tests/test_store.py fails first if a new aiosqlite drops it.
            execute: Callable[..., Awaitable[tuple[T, int]]] = self.writer._execute
            result, last_event_id = await asyncio.shield(execute(unit_of_work, self.writer._conn))
        if last_event_id:
            self.events.publish(last_event_id)
        return result

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        """Lend a read-only connection from the pool. Each statement reads the latest commit.

        A connection whose borrower raised or was cancelled is closed rather than reused: a query stopped
        part way can leave its statement open, and with it a read snapshot that hides later commits and
        keeps the WAL from being checkpointed.
        """
        async with self._reader_slots:
            conn = self._idle_readers.pop() if self._idle_readers else await self._open_pooled_reader()
            try:
                yield conn
            except BaseException:
                self._discard_reader(conn)
                raise
            if conn.in_transaction:
                await conn.rollback()
            self._idle_readers.append(conn)

    async def _open_pooled_reader(self) -> aiosqlite.Connection:
        # A borrower cancelled while the connection opens must not leak it: the opening finishes anyway,
        # and the connection joins the idle pool.
        opening = asyncio.ensure_future(self._open_reader())
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(self._keep_opened_reader)
            raise

    def _keep_opened_reader(self, opening: asyncio.Future[aiosqlite.Connection]) -> None:
        if opening.cancelled() or opening.exception() is not None:
            return
        conn = opening.result()
        if len(self._all_readers) > self._reader_count:
            self._discard_reader(conn)
        else:
            self._idle_readers.append(conn)

    def _discard_reader(self, conn: aiosqlite.Connection) -> None:
        self._all_readers.discard(conn)
        # The close waits behind the stopped query on the connection's thread; it must not be cancelled.
        task = asyncio.get_running_loop().create_task(conn.close(), name="whaled-store-close-reader")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def fetchall(self, sql: str, parameters: Any = ()) -> list[sqlite3.Row]:
        """Run one read query on a pooled reader, reading every row in one round trip."""
        async with self.reader() as conn:
            return list(await conn.execute_fetchall(sql, parameters))

    async def fetchone(self, sql: str, parameters: Any = ()) -> sqlite3.Row | None:
        """Run one read query and return its first row; the statement is always stepped to its end."""
        rows = await self.fetchall(sql, parameters)
        return rows[0] if rows else None

    async def maintain(self) -> tuple[int, int, int] | None:
        """Run ``PRAGMA optimize`` and a truncating WAL checkpoint; return the checkpoint's figures.

        The figures are (busy, WAL frames, frames checkpointed), as SQLite reports them.
        """
        async with self._write_lock:
            conn = self.writer
            await conn.execute("PRAGMA optimize")
            async with conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cursor:
                row = await cursor.fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    async def close(self) -> None:
        """Close the readers, then the writer. Safe to call twice."""
        readers, self._all_readers = self._all_readers, set()
        self._idle_readers = []
        for conn in readers:
            await conn.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        self.events.close()
