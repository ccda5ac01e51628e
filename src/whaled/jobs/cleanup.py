"""``cleanup-old-activity``: delete raw rows older than the retention, keep aggregates, tidy the file.

Rows are deleted in batches, each in its own short transaction, so that the single writer is never held for
long. Wallet stats, positions, markets and cursors are aggregates and stay.
"""

from __future__ import annotations

from whaled.clock import now_ms
from whaled.jobs.base import JobContext, JobResult
from whaled.log import jobs_logger as logger
from whaled.store.db import Database

__all__ = ["cleanup_old_activity", "delete_older_than"]

_BATCH = 5000
_DAY_MS = 86_400_000

# Table → its time column. Only raw activity is listed here.
_RAW_TABLES = {
    "trades": "created_at_ms",
    "events": "created_ms",
    "market_snapshots": "taken_ms",
    "job_runs": "started_ms",
    "sync_gaps": "recorded_ms",
}


async def delete_older_than(db: Database, table: str, column: str, cutoff_ms: int) -> int:
    """Delete rows of ``table`` whose ``column`` is before ``cutoff_ms``, in batches; return the count."""
    deleted = 0
    while True:
        async with db.transaction() as tx:
            cursor = await tx.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {column} < ? LIMIT {_BATCH})",
                (cutoff_ms,),
            )
            count = cursor.rowcount
        deleted += count
        if count < _BATCH:
            return deleted


async def _delete_snapshots(db: Database, cutoff_ms: int) -> int:
    # market_snapshots is a WITHOUT ROWID table, so it cannot be batched by rowid.
    deleted = 0
    while True:
        async with db.transaction() as tx:
            cursor = await tx.execute(
                "DELETE FROM market_snapshots WHERE (market_id, taken_ms) IN "
                f"(SELECT market_id, taken_ms FROM market_snapshots WHERE taken_ms < ? LIMIT {_BATCH})",
                (cutoff_ms,),
            )
            count = cursor.rowcount
        deleted += count
        if count < _BATCH:
            return deleted


async def cleanup_old_activity(ctx: JobContext) -> JobResult:
    cutoff = now_ms() - ctx.settings.store.retention_days * _DAY_MS
    deleted: dict[str, int] = {}
    for table, column in _RAW_TABLES.items():
        if table == "market_snapshots":
            deleted[table] = await _delete_snapshots(ctx.db, cutoff)
        elif table == "job_runs":
            async with ctx.db.transaction() as tx:
                cursor = await tx.execute("DELETE FROM job_runs WHERE started_ms < ? AND id != ?", (cutoff, ctx.run_id))
                deleted[table] = cursor.rowcount
        else:
            deleted[table] = await delete_older_than(ctx.db, table, column, cutoff)
    now = now_ms()
    for pruner in ctx.pruners:
        async with ctx.db.transaction() as tx:
            deleted[pruner.name] = await pruner.prune(tx, ctx.settings, now)

    checkpoint = await ctx.db.maintain()
    total = sum(deleted.values())
    logger.info(
        "Old activity cleaned up: %d rows older than %d days deleted (%s)",
        total,
        ctx.settings.store.retention_days,
        ", ".join(f"{name} {count}" for name, count in deleted.items()),
    )
    details: dict[str, object] = {"deleted": deleted, "cutoff_ms": cutoff}
    if checkpoint is not None:
        details["wal_checkpoint"] = {
            "busy": checkpoint[0],
            "log": checkpoint[1],
            "checkpointed": checkpoint[2],
        }
    return JobResult(items=total, details=details)
