"""The dashboard's reads: job history, workflows and deliveries that need attention, wallet coverage and
notable price moves. Each function runs on one pooled reader connection and returns JSON-ready data."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import aiosqlite

from whaled.web.api_queries import row_to_json

__all__ = [
    "HISTORY_RUNS",
    "coverage",
    "deliveries_needing_attention",
    "job_history",
    "price_moves",
    "status_counts",
    "workflows_needing_attention",
]

HISTORY_RUNS = 12
_RUN_COLUMNS = "id, trigger, outcome, started_ms, finished_ms, items, api_calls, error"


async def _rows(conn: aiosqlite.Connection, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
    async with conn.execute(sql, parameters) as cursor:
        return list(await cursor.fetchall())


def _run_json(row: sqlite3.Row) -> dict[str, Any]:
    run = row_to_json(row)
    finished, started = run["finished_ms"], run["started_ms"]
    run["duration_ms"] = finished - started if finished is not None else None
    return run


async def job_history(conn: aiosqlite.Connection, names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Return the newest :data:`HISTORY_RUNS` runs of each job, newest first."""
    history: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        rows = await _rows(
            conn, f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT ?", (name, HISTORY_RUNS)
        )
        history[name] = [_run_json(row) for row in rows]
    return history


async def status_counts(conn: aiosqlite.Connection, table: str) -> dict[str, int]:
    """Count the rows of ``workflows`` or ``outbox`` by status."""
    if table not in ("workflows", "outbox"):
        raise ValueError(f"status_counts reads workflows or outbox, not {table!r}")
    rows = await _rows(conn, f"SELECT status, count(*) FROM {table} GROUP BY status")
    return {str(row[0]): int(row[1]) for row in rows}


async def workflows_needing_attention(
    conn: aiosqlite.Connection, stuck_before_ms: int, limit: int = 20
) -> list[dict[str, Any]]:
    """Return the newest failed runs and every unfinished run (oldest first), each flagged ``stuck`` when it
    has made no progress since ``stuck_before_ms``."""
    unfinished = await _rows(
        conn,
        "SELECT id, name, status, error, next_step, step_names, created_ms, updated_ms FROM workflows "
        "WHERE status IN ('pending', 'running') ORDER BY updated_ms LIMIT ?",
        (limit,),
    )
    failed = await _rows(
        conn,
        "SELECT id, name, status, error, next_step, step_names, created_ms, updated_ms FROM workflows "
        "WHERE status = 'failed' ORDER BY updated_ms DESC LIMIT ?",
        (limit,),
    )
    runs = []
    for row in [*unfinished, *failed]:
        run = row_to_json(row)
        steps = run.pop("step_names") or []
        run["next_step_name"] = steps[run["next_step"]] if run["next_step"] < len(steps) else None
        run["stuck"] = run["status"] != "failed" and run["updated_ms"] < stuck_before_ms
        runs.append(run)
    return runs


async def deliveries_needing_attention(conn: aiosqlite.Connection, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest deliveries whose outcome is unknown or that failed, with their alert and workflow."""
    rows = await _rows(
        conn,
        "SELECT o.id, o.alert_id, o.channel, o.target, o.status, o.attempts, o.last_error, o.updated_ms, "
        "a.workflow_id, a.title FROM outbox o JOIN alerts a ON a.id = o.alert_id "
        "WHERE o.status IN ('unknown', 'failed') ORDER BY o.id DESC LIMIT ?",
        (limit,),
    )
    return [row_to_json(row) for row in rows]


async def coverage(conn: aiosqlite.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Return each tracked wallet's sync state: wallets with a current error first, then the least recent."""
    rows = await _rows(
        conn,
        "SELECT w.address, w.label, w.source, w.is_whale, c.last_synced_ms, c.newest_created_ms, c.last_error, "
        "c.last_error_ms, (SELECT count(*) FROM sync_gaps g WHERE g.wallet = w.address) AS gaps, "
        "(SELECT max(recorded_ms) FROM sync_gaps g WHERE g.wallet = w.address) AS last_gap_ms "
        "FROM wallets w LEFT JOIN sync_cursors c ON c.wallet = w.address WHERE w.tracked = 1 "
        "ORDER BY c.last_error IS NULL, c.last_synced_ms IS NOT NULL, c.last_synced_ms, w.address LIMIT ?",
        (limit,),
    )
    return [row_to_json(row) for row in rows]


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(value) if isinstance(value, str) and value else None
    except InvalidOperation:
        return None


async def price_moves(
    conn: aiosqlite.Connection, since_ms: int, min_change: Decimal, limit: int = 10
) -> list[dict[str, Any]]:
    """Return the open markets whose yes price moved by at least ``min_change`` since ``since_ms``, largest first.

    The price then is the last snapshot at or before ``since_ms`` or, for a market first seen later, its first
    snapshot. Changes are computed on exact decimals and returned as decimal strings.
    """
    rows = await _rows(
        conn,
        "SELECT m.market_id, m.title, m.root_title, m.status_name, m.yes_price, m.volume_24h, m.updated_ms, "
        "coalesce((SELECT s.yes_price FROM market_snapshots s WHERE s.market_id = m.market_id AND s.taken_ms <= ? "
        "ORDER BY s.taken_ms DESC LIMIT 1), (SELECT s.yes_price FROM market_snapshots s "
        "WHERE s.market_id = m.market_id AND s.taken_ms > ? ORDER BY s.taken_ms LIMIT 1)) AS price_then "
        "FROM markets m WHERE m.yes_price IS NOT NULL AND m.resolved_at_ms IS NULL",
        (since_ms, since_ms),
    )
    moves: list[tuple[Decimal, dict[str, Any]]] = []
    for row in rows:
        now, then = _decimal(row["yes_price"]), _decimal(row["price_then"])
        if now is None or then is None or abs(now - then) < min_change or now == then:
            continue
        move = row_to_json(row)
        move["change"] = str(now - then)
        moves.append((abs(now - then), move))
    moves.sort(key=lambda item: item[0], reverse=True)
    return [move for _, move in moves[:limit]]
