"""The monitor: evaluates every health condition on demand, for ``/healthz``, ``/metrics``, the dashboard and
the stall alarm, which all share one instance and so one view of the daemon's health."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable, Iterable

from whaled.clock import now_ms
from whaled.config import Settings
from whaled.governor import GovernorSnapshot
from whaled.jobs import JOBS
from whaled.monitor.conditions import (
    HealthReport,
    JobHealth,
    Problem,
    database_problem,
    evaluate_job,
    governor_problem,
    job_problem,
    outbox_problem,
    workflow_problem,
)
from whaled.monitor.facts import StoreFacts, probe_write, read_store_facts
from whaled.store import Database, StoreError

__all__ = ["Monitor"]

_NO_FACTS = StoreFacts({}, 0, None, 0, None, None)


class Monitor:
    """Checks the health conditions of one daemon.

    :param governor_snapshot: the governor's :meth:`~whaled.governor.Governor.snapshot`; None skips the
        governor condition.
    :param clock: Unix milliseconds; the reads compare it with times the jobs stored from the same clock.
    :param cache_s: a check younger than this (loop time) is returned again instead of repeated, so that
        frequent ``/healthz`` and ``/metrics`` requests cost at most one check, and one probe write, a second.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        governor_snapshot: Callable[[], GovernorSnapshot] | None = None,
        clock: Callable[[], int] = now_ms,
        cache_s: float = 1.0,
    ) -> None:
        self.db = db
        self.settings = settings
        self.governor_snapshot = governor_snapshot
        self.clock = clock
        self.started_ms = clock()
        self._cache_s = cache_s
        self._ungraced: set[str] = set()
        self._paused_since_ms: int | None = None
        self._report: HealthReport | None = None
        self._report_at = -math.inf
        self._lock = asyncio.Lock()

    @property
    def last_report(self) -> HealthReport | None:
        return self._report

    def apply_settings(self, settings: Settings) -> None:
        """Use new bounds from the next check on (after a configuration reload)."""
        self.settings = settings
        self._report_at = -math.inf

    def drop_grace(self, job_names: Iterable[str]) -> None:
        """Judge these jobs without the startup grace: they were stale before this process started."""
        self._ungraced.update(job_names)

    async def check(self, *, fresh: bool = False) -> HealthReport:
        """Evaluate every condition, or return the last report if it is younger than ``cache_s``.

        :param fresh: always evaluate (the stall alarm's periodic check).
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            if not fresh and self._report is not None and loop.time() - self._report_at < self._cache_s:
                return self._report
            report = await self._evaluate()
            self._report, self._report_at = report, loop.time()
            return report

    async def _evaluate(self) -> HealthReport:
        settings = self.settings.monitor
        now = self.clock()
        problems: list[Problem] = []
        stuck_before = now - int(settings.workflow_stuck_s * 1000)
        try:
            facts = await read_store_facts(self.db, JOBS, now, stuck_before)
        except (sqlite3.Error, StoreError) as exc:
            facts = _NO_FACTS
            problems.append(database_problem("database_unreadable", f"{type(exc).__name__}: {exc}"))
        jobs = self._evaluate_jobs(facts, now)
        problems.extend(job_problem(job, now, self.started_ms) for job in jobs if job.stale)
        governor_state = self._governor_condition(now, problems)
        outbox = outbox_problem(facts.outbox_due, facts.outbox_oldest_due_ms, now, settings.outbox_stuck_s)
        workflows = workflow_problem(
            facts.workflows_stuck,
            facts.oldest_stuck_workflow_id,
            facts.oldest_stuck_updated_ms,
            now,
            settings.workflow_stuck_s,
        )
        problems.extend(problem for problem in (outbox, workflows) if problem is not None)
        write_error = await probe_write(self.db, now, settings.db_write_timeout_s)
        if write_error is not None:
            problems.append(database_problem("database_unwritable", write_error))
        return HealthReport(
            checked_ms=now,
            started_ms=self.started_ms,
            problems=tuple(problems),
            jobs=tuple(jobs),
            governor_state=governor_state,
            governor_paused_since_ms=self._paused_since_ms,
            outbox_due=facts.outbox_due,
            outbox_oldest_due_ms=facts.outbox_oldest_due_ms,
            workflows_stuck=facts.workflows_stuck,
            database_writable=write_error is None,
        )

    def _evaluate_jobs(self, facts: StoreFacts, now: int) -> list[JobHealth]:
        jobs: list[JobHealth] = []
        for name, definition in JOBS.items():
            health = evaluate_job(
                name,
                definition.settings(self.settings),
                self.settings.monitor,
                facts.last_success_ms.get(name),
                now,
                self.started_ms,
                grace=name not in self._ungraced,
            )
            if not health.stale:
                self._ungraced.discard(name)
            jobs.append(health)
        return jobs

    def _governor_condition(self, now: int, problems: list[Problem]) -> str | None:
        """Track since when the governor has not been running; add a problem past the bound."""
        if self.governor_snapshot is None:
            return None
        snapshot = self.governor_snapshot()
        if snapshot.state == "running":
            self._paused_since_ms = None
            return snapshot.state
        if self._paused_since_ms is None:
            self._paused_since_ms = now
        reason = snapshot.state_reason or snapshot.last_pause_reason
        problem = governor_problem(
            snapshot.state, reason, self._paused_since_ms, now, self.settings.monitor.governor_paused_max_s
        )
        if problem is not None:
            problems.append(problem)
        return snapshot.state
