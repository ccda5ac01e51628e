"""The workflow tables: runs (``workflows``) and their journal of step results (``workflow_steps``).

Writes take a :class:`~whaled.store.Transaction` on the single write connection; reads use the pool.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from whaled.store import Database, Transaction
from whaled.store.events import dump_payload

__all__ = [
    "TERMINAL",
    "JournalEntry",
    "RunStatus",
    "WorkflowRun",
    "cancel_run",
    "count_by_status",
    "fail_run",
    "insert_run",
    "journal_step",
    "list_runs",
    "prune_finished",
    "read_journal",
    "read_run",
    "read_status",
    "reset_for_retry",
    "set_status",
    "unfinished_ids",
]

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
TERMINAL: tuple[RunStatus, ...] = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    position: int
    name: str
    result: Any
    attempts: int
    started_ms: int
    finished_ms: int


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    id: int
    name: str
    version: int
    step_names: list[str]
    idempotency_key: str | None
    status: RunStatus
    input: dict[str, Any]
    next_step: int
    error: str | None
    created_ms: int
    updated_ms: int
    finished_ms: int | None
    journal: list[JournalEntry] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: sqlite3.Row, journal: list[JournalEntry] | None = None) -> WorkflowRun:
        return cls(
            id=row["id"],
            name=row["name"],
            version=row["version"],
            step_names=json.loads(row["step_names"]),
            idempotency_key=row["idempotency_key"],
            status=row["status"],
            input=json.loads(row["input"]),
            next_step=row["next_step"],
            error=row["error"],
            created_ms=row["created_ms"],
            updated_ms=row["updated_ms"],
            finished_ms=row["finished_ms"],
            journal=journal or [],
        )


async def insert_run(
    tx: Transaction,
    name: str,
    version: int,
    step_names: list[str],
    input_: dict[str, Any],
    idempotency_key: str | None,
    now: int,
) -> tuple[int, bool]:
    """Insert a pending run; return ``(id, created)``. An existing key returns that run with False."""
    cursor = await tx.execute(
        "INSERT INTO workflows (name, version, step_names, idempotency_key, status, input, created_ms, updated_ms) "
        "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        (name, version, json.dumps(step_names), idempotency_key, dump_payload(input_), now, now),
    )
    if cursor.rowcount == 1 and cursor.lastrowid is not None:
        return cursor.lastrowid, True
    row = await tx.fetchone("SELECT id FROM workflows WHERE idempotency_key = ?", (idempotency_key,))
    assert row is not None
    return int(row["id"]), False


async def read_journal(db: Database, workflow_id: int) -> list[JournalEntry]:
    rows = await db.fetchall(
        "SELECT position, name, result, attempts, started_ms, finished_ms FROM workflow_steps "
        "WHERE workflow_id = ? ORDER BY position",
        (workflow_id,),
    )
    return [
        JournalEntry(
            position=row["position"],
            name=row["name"],
            result=json.loads(row["result"]),
            attempts=row["attempts"],
            started_ms=row["started_ms"],
            finished_ms=row["finished_ms"],
        )
        for row in rows
    ]


async def read_run(db: Database, workflow_id: int, *, with_journal: bool = True) -> WorkflowRun | None:
    row = await db.fetchone("SELECT * FROM workflows WHERE id = ?", (workflow_id,))
    if row is None:
        return None
    journal = await read_journal(db, workflow_id) if with_journal else None
    return WorkflowRun.from_row(row, journal)


async def list_runs(
    db: Database, *, status: RunStatus | None = None, name: str | None = None, limit: int = 50
) -> list[WorkflowRun]:
    """List runs, newest first."""
    sql = "SELECT * FROM workflows WHERE (? IS NULL OR status = ?) AND (? IS NULL OR name = ?) ORDER BY id DESC LIMIT ?"
    rows = await db.fetchall(sql, (status, status, name, name, limit))
    return [WorkflowRun.from_row(row) for row in rows]


async def unfinished_ids(db: Database, *, statuses: tuple[RunStatus, ...] = ("pending", "running")) -> list[int]:
    marks = ",".join("?" * len(statuses))
    rows = await db.fetchall(f"SELECT id FROM workflows WHERE status IN ({marks}) ORDER BY id", statuses)
    return [int(row["id"]) for row in rows]


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, count(*) AS n FROM workflows GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def journal_step(
    tx: Transaction,
    workflow_id: int,
    entry: JournalEntry,
    *,
    last: bool,
) -> bool:
    """Journal one step result and advance the run; return False when the run is no longer running.

    The result is journaled even for a run cancelled meanwhile, because the step's effect has happened.
    """
    await tx.execute(
        "INSERT INTO workflow_steps (workflow_id, position, name, result, attempts, started_ms, finished_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            workflow_id,
            entry.position,
            entry.name,
            _dump_result(entry.result),
            entry.attempts,
            entry.started_ms,
            entry.finished_ms,
        ),
    )
    now = entry.finished_ms
    cursor = await tx.execute(
        "UPDATE workflows SET next_step = ?, updated_ms = ?, "
        "status = CASE WHEN ? THEN 'succeeded' ELSE status END, "
        "finished_ms = CASE WHEN ? THEN ? ELSE finished_ms END "
        "WHERE id = ? AND status = 'running'",
        (entry.position + 1, now, last, last, now, workflow_id),
    )
    if cursor.rowcount == 1:
        return True
    await tx.execute(
        "UPDATE workflows SET next_step = ?, updated_ms = ? WHERE id = ?", (entry.position + 1, now, workflow_id)
    )
    return False


def _dump_result(result: Any) -> str:
    return json.dumps(result, default=_decimal_text, separators=(",", ":"), ensure_ascii=False)


def _decimal_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"a step result cannot hold {type(value).__name__}; return JSON types or Decimal")


async def read_status(tx: Transaction, workflow_id: int) -> RunStatus | None:
    row = await tx.fetchone("SELECT status FROM workflows WHERE id = ?", (workflow_id,))
    return None if row is None else row["status"]


async def set_status(
    tx: Transaction, workflow_id: int, status: RunStatus, now: int, *, error: str | None = None
) -> None:
    finished = now if status in TERMINAL else None
    await tx.execute(
        "UPDATE workflows SET status = ?, error = ?, updated_ms = ?, finished_ms = ? WHERE id = ?",
        (status, error, now, finished, workflow_id),
    )


async def fail_run(tx: Transaction, workflow_id: int, now: int, error: str) -> None:
    """Mark a pending or running run failed; a run cancelled meanwhile stays cancelled."""
    await tx.execute(
        "UPDATE workflows SET status = 'failed', error = ?, updated_ms = ?, finished_ms = ? "
        "WHERE id = ? AND status IN ('pending', 'running')",
        (error, now, now, workflow_id),
    )


async def cancel_run(tx: Transaction, workflow_id: int, now: int) -> bool:
    """Cancel a pending or running run; return False when it had already finished."""
    cursor = await tx.execute(
        "UPDATE workflows SET status = 'cancelled', error = 'cancelled by the operator', updated_ms = ?, "
        "finished_ms = ? WHERE id = ? AND status IN ('pending', 'running')",
        (now, now, workflow_id),
    )
    return cursor.rowcount == 1


async def reset_for_retry(tx: Transaction, workflow_id: int, now: int) -> bool:
    """Make a failed or cancelled run pending again, so that it resumes at its first unjournaled step."""
    cursor = await tx.execute(
        "UPDATE workflows SET status = 'pending', error = NULL, updated_ms = ?, finished_ms = NULL "
        "WHERE id = ? AND status IN ('failed', 'cancelled')",
        (now, workflow_id),
    )
    return cursor.rowcount == 1


async def prune_finished(tx_or_db: Transaction | Database, older_than_ms: int) -> int:
    """Delete finished runs (succeeded, failed, cancelled) whose ``finished_ms`` is before ``older_than_ms``.

    :param tx_or_db: a transaction to join, or the database to open one on.
    :param older_than_ms: a Unix time in milliseconds (a cutoff, not an age).
    :return: the number of runs deleted; their journal rows go with them (``ON DELETE CASCADE``).
    """
    if isinstance(tx_or_db, Database):
        async with tx_or_db.transaction() as tx:
            return await prune_finished(tx, older_than_ms)
    cursor = await tx_or_db.execute(
        "DELETE FROM workflows WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_ms < ?",
        (older_than_ms,),
    )
    return cursor.rowcount
