"""The store on a real SQLite file: single writer, pooled readers, commit notifications."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from whaled.store import Database


async def fill_events(db: Database, count: int) -> None:
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO events (topic, type, payload, created_ms) VALUES ('test', 'test.row', ?, 0)",
            [(f'{{"n":{n}}}',) for n in range(count)],
        )


async def test_cancelled_reads_never_serve_stale_data(tmp_path: Path) -> None:
    """A query cancelled part way used to go back to the pool with its read snapshot still open."""
    db = await Database.open(tmp_path / "whaled.db", readers=4)
    try:
        await fill_events(db, 5000)
        rng = random.Random(3)

        async def long_read() -> None:
            async with db.reader() as conn, conn.execute("SELECT id, payload FROM events ORDER BY id") as cursor:
                rows = await cursor.fetchmany(50)
                while rows:
                    rows = await cursor.fetchmany(50)

        for round_number in range(40):
            tasks = [asyncio.create_task(long_read()) for _ in range(8)]
            for _ in range(rng.randint(1, 20)):
                await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('round', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(round_number),),
                )
            seen = await asyncio.gather(*(db.fetchone("SELECT value FROM meta WHERE key = 'round'") for _ in range(4)))
            assert [row["value"] if row else None for row in seen] == [str(round_number)] * 4
            assert len(db._all_readers) <= 4
    finally:
        await db.close()


async def test_reader_pool_bounded_under_concurrency(db: Database) -> None:
    await fill_events(db, 100)
    results = await asyncio.gather(*(db.fetchall("SELECT count(*) FROM events") for _ in range(50)))
    assert {row[0][0] for row in results} == {100}
    assert len(db._all_readers) <= 4


async def test_readers_are_read_only(db: Database) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        async with db.reader() as conn:
            await conn.execute("DELETE FROM events")


async def test_write_in_thread_commits_and_notifies(db: Database) -> None:
    """Relies on aiosqlite's private Connection._execute; this fails first if an upgrade removes it."""

    def unit(conn: sqlite3.Connection) -> tuple[int, int]:
        cursor = conn.execute("INSERT INTO events (topic, type, payload, created_ms) VALUES ('t', 't.x', '{}', 0)")
        assert cursor.lastrowid is not None
        return cursor.lastrowid, cursor.lastrowid

    waiter = asyncio.create_task(db.events.wait_beyond(0, timeout_s=5))
    event_id = await db.write_in_thread(unit)
    assert await waiter is True
    assert db.events.last_id == event_id
    row = await db.fetchone("SELECT count(*) FROM events")
    assert row is not None
    assert row[0] == 1


async def test_write_in_thread_rolls_back_on_error(db: Database) -> None:
    def unit(conn: sqlite3.Connection) -> tuple[None, int]:
        conn.execute("INSERT INTO events (topic, type, payload, created_ms) VALUES ('t', 't.x', '{}', 0)")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.write_in_thread(unit)
    row = await db.fetchone("SELECT count(*) FROM events")
    assert row is not None
    assert row[0] == 0


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.append_event("t", "t.x", {})
            raise RuntimeError("stop")
    row = await db.fetchone("SELECT count(*) FROM events")
    assert row is not None
    assert row[0] == 0
    assert db.events.last_id == 0
