"""The run ledger: every job run is recorded in ``job_runs`` and announced as a ``job.run`` event.

A run is bounded by its job's ``timeout_s`` (shorter than its interval), so a hung run cannot block later
runs. The final row update runs under ``asyncio.shield`` so that a cancelled run is still recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from whaled.clock import now_ms
from whaled.config import JobSettings, Settings
from whaled.errors import WhaledError
from whaled.governor.opinion import GovernedOpinion
from whaled.jobs.base import JobContext, JobFunction, JobResult, Pruner
from whaled.jobs.cleanup import cleanup_old_activity
from whaled.jobs.stats import compute_whale_stats
from whaled.jobs.sync_markets import sync_markets
from whaled.jobs.sync_trades import sync_whale_trades
from whaled.log import jobs_logger as logger
from whaled.store.db import Database

__all__ = ["JOBS", "JobDefinition", "JobRunner", "RunRecord", "UnknownJobError"]


@dataclass(frozen=True, slots=True)
class JobDefinition:
    name: str
    function: JobFunction
    settings_key: str

    def settings(self, settings: Settings) -> JobSettings:
        job: JobSettings = getattr(settings.jobs, self.settings_key)
        return job


JOBS: dict[str, JobDefinition] = {
    definition.name: definition
    for definition in (
        JobDefinition("sync-markets", sync_markets, "sync_markets"),
        JobDefinition("sync-whale-trades", sync_whale_trades, "sync_whale_trades"),
        JobDefinition("compute-whale-stats", compute_whale_stats, "compute_whale_stats"),
        JobDefinition("cleanup-old-activity", cleanup_old_activity, "cleanup_old_activity"),
    )
}


class UnknownJobError(WhaledError, LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown job {name!r}; known jobs: {', '.join(JOBS)}")


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: int
    job: str
    trigger: str
    outcome: str
    items: int
    api_calls: int
    error: str | None
    started_ms: int
    finished_ms: int


class JobRunner:
    """Runs jobs and records each run. ``counters`` counts outcomes per (job, outcome) for metrics."""

    def __init__(
        self, db: Database, api: GovernedOpinion, settings: Settings, *, pruners: Sequence[Pruner] = ()
    ) -> None:
        self.db = db
        self.api = api
        self.settings = settings
        self.pruners = tuple(pruners)
        self.counters: Counter[tuple[str, str]] = Counter()
        self.running: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def definition(self, name: str) -> JobDefinition:
        try:
            return JOBS[name]
        except KeyError:
            raise UnknownJobError(name) from None

    async def run(self, name: str, *, trigger: str = "schedule", scheduled_ms: int | None = None) -> RunRecord:
        """Run job ``name`` once, within its timeout, and record the run.

        :raises UnknownJobError: for a name that is not one of :data:`JOBS`.
        """
        definition = self.definition(name)
        timeout_s = definition.settings(self.settings).timeout_s
        if name in self.running:
            # One run of a job at a time, whatever started it: the scheduler, startup or an operator.
            other = f"run {self.running[name]}" if self.running[name] else "another run"
            reason = f"run requested by {trigger} skipped: {other} of this job is still going"
            return await self.record_not_run(name, "skipped", scheduled_ms, reason, trigger=trigger)
        started = now_ms()
        self.running[name] = 0  # taken before the first await, so that a concurrent call finds it
        try:
            run_id = await self._open_run(name, trigger, scheduled_ms, started)
        except BaseException:
            del self.running[name]
            raise
        api = self.api.view()
        ctx = JobContext(db=self.db, api=api, settings=self.settings, run_id=run_id, pruners=self.pruners)
        logger.info("Job %s run %d started (%s)", name, run_id, trigger)
        self.running[name] = run_id
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        outcome, error, result = "failure", None, JobResult()
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                result = await definition.function(ctx)
            outcome = "success"
        except TimeoutError as exc:
            if deadline.expired():
                outcome, error = "timeout", f"run exceeded its timeout of {timeout_s:g} s{self._governor_note()}"
            else:
                error = f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            outcome, error = "cancelled", "run cancelled at shutdown"
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, WhaledError):
                logger.exception("Job %s run %d raised an unexpected error", name, run_id)
        finally:
            self.running.pop(name, None)
            if task is not None:
                self._tasks.discard(task)
            record = RunRecord(run_id, name, trigger, outcome, result.items, api.calls, error, started, now_ms())
            await asyncio.shield(self._close_run(record, result.details))
        self._log_outcome(record)
        return record

    def _governor_note(self) -> str:
        """Explain a timeout caused by a paused governor, which delays every request."""
        snapshot = self.api.governor.snapshot()
        if snapshot.state == "running":
            return ""
        return f" while the API governor was {snapshot.state}: {snapshot.state_reason}"

    def _log_outcome(self, record: RunRecord) -> None:
        seconds = (record.finished_ms - record.started_ms) / 1000
        if record.outcome == "success":
            logger.info(
                "Job %s run %d succeeded in %.2f s: %d items, %d API calls",
                record.job,
                record.run_id,
                seconds,
                record.items,
                record.api_calls,
            )
        else:
            logger.warning(
                "Job %s run %d ended with %s after %.2f s: %s",
                record.job,
                record.run_id,
                record.outcome,
                seconds,
                record.error,
            )

    async def _open_run(self, name: str, trigger: str, scheduled_ms: int | None, started: int) -> int:
        async with self.db.transaction() as tx:
            cursor = await tx.execute(
                "INSERT INTO job_runs (job, trigger, scheduled_ms, started_ms, outcome) VALUES (?, ?, ?, ?, 'running')",
                (name, trigger, scheduled_ms, started),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def _close_run(self, record: RunRecord, details: dict[str, Any]) -> None:
        self.counters[(record.job, record.outcome)] += 1
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE job_runs SET finished_ms = ?, outcome = ?, items = ?, api_calls = ?, error = ?, details = ? "
                "WHERE id = ?",
                (
                    record.finished_ms,
                    record.outcome,
                    record.items,
                    record.api_calls,
                    record.error,
                    json.dumps(details, default=str),
                    record.run_id,
                ),
            )
            await tx.append_event("job", "job.run", _run_payload(record))

    async def cancel_running(self, grace_s: float) -> int:
        """Let runs in progress finish within ``grace_s``, then cancel the rest; return how many were cancelled."""
        pending = {task for task in self._tasks if not task.done()}
        if not pending:
            return 0
        _, still_running = await asyncio.wait(pending, timeout=grace_s)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running, timeout=grace_s)
        return len(still_running)

    async def record_not_run(
        self, name: str, outcome: str, scheduled_ms: int | None, reason: str, *, trigger: str = "schedule"
    ) -> RunRecord:
        """Record a run that did not happen: ``missed`` (too late to start) or ``skipped`` (still running)."""
        self.counters[(name, outcome)] += 1
        now = now_ms()
        logger.warning("Job %s run %s: %s", name, outcome, reason)
        async with self.db.transaction() as tx:
            cursor = await tx.execute(
                "INSERT INTO job_runs (job, trigger, scheduled_ms, started_ms, finished_ms, outcome, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, trigger, scheduled_ms, now, now, outcome, reason),
            )
            assert cursor.lastrowid is not None
            record = RunRecord(cursor.lastrowid, name, trigger, outcome, 0, 0, reason, now, now)
            await tx.append_event("job", "job.run", _run_payload(record))
        return record

    async def close_abandoned_runs(self) -> int:
        """Mark runs left ``running`` by a process that died as failed; return how many there were."""
        async with self.db.transaction() as tx:
            cursor = await tx.execute(
                "UPDATE job_runs SET outcome = 'failure', finished_ms = ?, "
                "error = 'abandoned: the process stopped during the run' WHERE outcome = 'running'",
                (now_ms(),),
            )
        return cursor.rowcount


def _run_payload(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "job": record.job,
        "trigger": record.trigger,
        "outcome": record.outcome,
        "started_ms": record.started_ms,
        "finished_ms": record.finished_ms,
        "items": record.items,
        "api_calls": record.api_calls,
        "error": record.error,
    }
