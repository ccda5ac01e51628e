"""``whaled status``: the dashboard's summary in the terminal, read from the database and the live daemon.

Jobs, wallets, workflows and deliveries come from the database (read-only). The daemon's PID comes from the
instance lock, and the governor's state and the health verdict from the daemon's ``/healthz`` when its web
server is on. Next run times are computed from the configuration file, as ``whaled jobs list`` does.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp
import aiosqlite

from whaled.clock import now_ms
from whaled.config import Settings
from whaled.jobs import job_schedules
from whaled.lock import lock_holder
from whaled.ops.common import emit, emit_json, file_size, format_bytes, format_ms, read_only, table_exists

__all__ = ["cmd_status", "collect_status"]

_HEALTH_TIMEOUT_S = 3.0
# A wallet counts as covered when its last sync is at most this many sync intervals old.
_FRESH_INTERVALS = 3


async def _rows(conn: aiosqlite.Connection, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, parameters) as cursor:
        return list(await cursor.fetchall())


async def _jobs(conn: aiosqlite.Connection, settings: Settings) -> list[dict[str, Any]]:
    jobs = []
    for schedule in job_schedules(settings):
        last = await _rows(
            conn,
            "SELECT outcome, started_ms, finished_ms, items, error FROM job_runs "
            "WHERE job = ? AND outcome != 'running' ORDER BY id DESC LIMIT 1",
            (schedule.name,),
        )
        success = await _rows(
            conn, "SELECT max(finished_ms) FROM job_runs WHERE job = ? AND outcome = 'success'", (schedule.name,)
        )
        running = await _rows(
            conn, "SELECT count(*) FROM job_runs WHERE job = ? AND outcome = 'running'", (schedule.name,)
        )
        jobs.append(
            {
                "name": schedule.name,
                "enabled": schedule.enabled,
                "trigger": schedule.trigger,
                "next_run": schedule.next_run.isoformat(timespec="seconds") if schedule.next_run else None,
                "last_run": dict(last[0]) if last else None,
                "last_success_ms": success[0][0],
                "running": bool(running[0][0]),
            }
        )
    return jobs


async def _wallets(conn: aiosqlite.Connection, settings: Settings, now: int) -> dict[str, Any]:
    interval_s = settings.jobs.sync_whale_trades.interval_s or 60.0
    fresh_after = now - int(_FRESH_INTERVALS * interval_s * 1000)
    rows = await _rows(
        conn,
        "SELECT w.source, count(*) AS tracked, sum(c.last_synced_ms >= ?) AS fresh, "
        "sum(c.last_synced_ms IS NULL) AS never, sum(c.last_error IS NOT NULL) AS failing, sum(w.is_whale) AS whales "
        "FROM wallets w LEFT JOIN sync_cursors c ON c.wallet = w.address WHERE w.tracked = 1 GROUP BY w.source",
        (fresh_after,),
    )
    totals = {
        key: sum(int(row[key] or 0) for row in rows) for key in ("tracked", "fresh", "never", "failing", "whales")
    }
    gaps = await _rows(conn, "SELECT count(DISTINCT wallet) FROM sync_gaps")
    return {
        **totals,
        "by_source": {row["source"]: int(row["tracked"]) for row in rows},
        "with_gaps": int(gaps[0][0]),
        "coverage": totals["fresh"] / totals["tracked"] if totals["tracked"] else None,
        "fresh_within_s": _FRESH_INTERVALS * interval_s,
    }


async def _status_counts(conn: aiosqlite.Connection, table: str) -> dict[str, int] | None:
    if not await table_exists(conn, table):
        return None
    rows = await _rows(conn, f"SELECT status, count(*) FROM {table} GROUP BY status")
    return {str(row[0]): int(row[1]) for row in rows}


async def _health(settings: Settings) -> dict[str, Any]:
    """Fetch the running daemon's ``/healthz``; when that fails, the result gives the reason."""
    web = settings.web
    if not web.enabled:
        return {"reachable": False, "reason": "the web server is disabled (web.enabled = false)"}
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(web.host, web.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{web.port}/healthz"
    timeout = aiohttp.ClientTimeout(total=_HEALTH_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            body = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"reachable": False, "reason": f"{url} did not answer: {exc or type(exc).__name__}"}
    try:
        report: dict[str, Any] = json.loads(body)
    except ValueError:
        return {"reachable": False, "reason": f"{url} answered HTTP {response.status} without JSON"}
    return {"reachable": True, "http_status": response.status, **report}


async def collect_status(settings: Settings) -> dict[str, Any]:
    """Gather everything ``whaled status`` shows, as JSON-ready data."""
    path = settings.store.path
    pid = lock_holder(path)
    now = now_ms()
    async with read_only(settings) as conn:
        status: dict[str, Any] = {
            "daemon": {"running": pid is not None, "pid": pid or None},
            "database": {
                "path": str(path),
                "size_bytes": file_size(path) + file_size(path.with_name(path.name + "-wal")),
            },
            "jobs": await _jobs(conn, settings),
            "wallets": await _wallets(conn, settings, now),
            "workflows": await _status_counts(conn, "workflows"),
            "outbox": await _status_counts(conn, "outbox"),
        }
        last_event = await _rows(conn, "SELECT max(id), max(created_ms) FROM events")
    status["events"] = {"last_id": last_event[0][0], "last_ms": last_event[0][1]}
    status["health"] = await _health(settings) if pid is not None else {"reachable": False, "reason": "not running"}
    return status


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    emit(f"{'JOB':<22} {'LAST RUN':<50} {'LAST SUCCESS':<26} NEXT RUN")
    for job in jobs:
        last = job["last_run"]
        summary = (
            "never" if last is None else f"{last['outcome']} at {format_ms(last['started_ms'])} ({last['items']} items)"
        )
        if job["running"]:
            summary = "running now; before: " + summary
        next_run = job["next_run"] or "disabled"
        emit(f"{job['name']:<22} {summary:<50} {format_ms(job['last_success_ms']):<26} {next_run}")
        if last is not None and last["error"] and last["outcome"] != "success":
            emit(f"{'':<22} error: {last['error']}")


def _print_health(health: dict[str, Any]) -> None:
    if not health["reachable"]:
        emit(f"governor        unknown: {health['reason']}")
        return
    governor = health.get("governor") or {}
    paused = governor.get("paused_since_ms")
    emit(f"governor        {governor.get('state', 'not reported')}" + (f" since {format_ms(paused)}" if paused else ""))
    reasons = health.get("reasons") or []
    emit(f"health          {health.get('status', 'unknown')} (HTTP {health['http_status']})")
    for reason in reasons:
        emit(f"                - {reason}")


def _print_status(status: dict[str, Any]) -> None:
    daemon, database, wallets = status["daemon"], status["database"], status["wallets"]
    emit(f"daemon          {'running, PID ' + str(daemon['pid']) if daemon['running'] else 'not running'}")
    emit(f"database        {database['path']} ({format_bytes(database['size_bytes'])} with its WAL)")
    emit(f"last event      {status['events']['last_id'] or '-'} at {format_ms(status['events']['last_ms'])}")
    _print_health(status["health"])
    coverage = wallets["coverage"]
    share = "-" if coverage is None else f"{coverage:.0%}"
    sources = ", ".join(f"{count} {source}" for source, count in sorted(wallets["by_source"].items())) or "none"
    emit(f"wallets         {wallets['tracked']} tracked ({sources}), {wallets['whales']} whales")
    emit(
        f"coverage        {share} synced within {wallets['fresh_within_s']:.0f} s; {wallets['never']} never synced, "
        f"{wallets['failing']} with a sync error, {wallets['with_gaps']} with gaps"
    )
    for table in ("workflows", "outbox"):
        counts = status[table]
        if counts is not None:
            text = ", ".join(f"{count} {name}" for name, count in sorted(counts.items())) or "none"
            emit(f"{table:<15} {text}")
    emit("")
    _print_jobs(status["jobs"])


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the summary; exit 1 when the daemon is not running or reports itself unhealthy."""
    status = await collect_status(settings)
    if args.json:
        emit_json(status)
    else:
        _print_status(status)
    health = status["health"]
    healthy = status["daemon"]["running"] and (not health["reachable"] or health.get("http_status") == 200)
    return 0 if healthy else 1
