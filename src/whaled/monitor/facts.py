"""The reads behind the health conditions, and the write probe that shows the database takes writes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite

from whaled.store import Database, StoreError

__all__ = ["PROBE_KEY", "StoreFacts", "probe_write", "read_store_facts"]

# The meta row the write probe updates; nothing reads it.
PROBE_KEY = "monitor.write_probe_ms"

# The job_runs_job index (job, started_ms) serves this from the newest run backwards.
_LAST_SUCCESS = (
    "SELECT finished_ms FROM job_runs WHERE job = ? AND outcome = 'success' ORDER BY started_ms DESC LIMIT 1"
)
_OUTBOX_DUE = "SELECT count(*), min(next_attempt_ms) FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?"
_OUTBOX_SENDING = "SELECT count(*), min(updated_ms) FROM outbox WHERE status = 'sending'"
_STUCK_WORKFLOWS = (
    "SELECT count(*), min(updated_ms) FROM workflows WHERE status IN ('pending', 'running') AND updated_ms < ?"
)
_OLDEST_STUCK = (
    "SELECT id FROM workflows WHERE status IN ('pending', 'running') AND updated_ms < ? ORDER BY updated_ms LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What one check reads from the store.

    ``outbox_oldest_due_ms`` is the earliest of the due times of pending deliveries and the claim times of
    deliveries left in ``sending``; both should be gone within one pass of the sender.
    """

    last_success_ms: dict[str, int]
    outbox_due: int
    outbox_oldest_due_ms: int | None
    workflows_stuck: int
    oldest_stuck_workflow_id: int | None
    oldest_stuck_updated_ms: int | None


async def _one(conn: aiosqlite.Connection, sql: str, parameters: tuple[object, ...]) -> sqlite3.Row | None:
    async with conn.execute(sql, parameters) as cursor:
        row: sqlite3.Row | None = await cursor.fetchone()
        return row


def _earliest(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


async def read_store_facts(db: Database, job_names: Iterable[str], now_ms: int, stuck_before_ms: int) -> StoreFacts:
    """Read the facts of one check on one pooled reader.

    :param stuck_before_ms: a pending or running workflow last updated before this time is stuck.
    :raises sqlite3.Error: or :class:`~whaled.store.StoreError` when the database cannot be read.
    """
    last_success: dict[str, int] = {}
    async with db.reader() as conn:
        for name in job_names:
            row = await _one(conn, _LAST_SUCCESS, (name,))
            if row is not None and row[0] is not None:
                last_success[name] = int(row[0])
        due = await _one(conn, _OUTBOX_DUE, (now_ms,))
        sending = await _one(conn, _OUTBOX_SENDING, ())
        stuck = await _one(conn, _STUCK_WORKFLOWS, (stuck_before_ms,))
        oldest = await _one(conn, _OLDEST_STUCK, (stuck_before_ms,)) if stuck is not None and stuck[0] else None
    due_count = int(due[0]) if due else 0
    if sending:
        due_count += int(sending[0])
    return StoreFacts(
        last_success_ms=last_success,
        outbox_due=due_count,
        outbox_oldest_due_ms=_earliest(due[1] if due else None, sending[1] if sending else None),
        workflows_stuck=int(stuck[0]) if stuck else 0,
        oldest_stuck_workflow_id=int(oldest[0]) if oldest is not None else None,
        oldest_stuck_updated_ms=stuck[1] if stuck else None,
    )


async def probe_write(db: Database, now_ms: int, timeout_s: float) -> str | None:
    """Commit one small write; return None on success, or why it failed.

    The probe waits for the write lock like every writer, so a unit of work that holds it longer than
    ``timeout_s`` also counts as a failure: no other write could commit in that time either.
    """
    try:
        async with asyncio.timeout(timeout_s):
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (PROBE_KEY, str(now_ms)),
                )
    except TimeoutError:
        return f"a write did not commit within {timeout_s:g} s"
    except (sqlite3.Error, StoreError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
