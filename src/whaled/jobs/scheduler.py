"""APScheduler 3.11 wiring: the four jobs on UTC triggers, whatever the host's time zone.

Interval triggers start at a fixed UTC epoch, so ``sync-markets`` fires at :00, :05, :10 … UTC and
``whaled jobs list`` can compute the next run without asking the daemon. The daily cleanup is a cron trigger
at ``hour:minute`` UTC.

Misfires and overlaps are deliberate:

- ``coalesce=True``: after a pause (suspended VM, blocked loop) missed runs collapse into one catch-up run.
- ``misfire_grace_time`` (per job, ``jobs.<name>.misfire_grace_s``): a run that could not start within the
  grace is dropped, and recorded as ``missed``.
- ``max_instances=1``: a run due while the previous one is still going is dropped and recorded as
  ``skipped``. Since each run's timeout is shorter than its interval, this only happens when the loop is
  starved.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from whaled.config import JobSettings, Settings
from whaled.jobs.runner import JOBS, JobRunner
from whaled.log import jobs_logger as logger

__all__ = ["INTERVAL_EPOCH", "JobSchedule", "Scheduler", "build_trigger", "describe_trigger", "job_schedules"]

INTERVAL_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def build_trigger(job: JobSettings) -> BaseTrigger:
    """Build a job's UTC trigger: an interval aligned to :data:`INTERVAL_EPOCH`, or a daily cron time."""
    if job.interval_s is not None:
        return IntervalTrigger(seconds=job.interval_s, start_date=INTERVAL_EPOCH, timezone=UTC)
    return CronTrigger(hour=job.hour, minute=job.minute, timezone=UTC)


def describe_trigger(job: JobSettings) -> str:
    if job.interval_s is not None:
        return f"every {timedelta(seconds=job.interval_s)} (UTC-aligned)"
    return f"daily at {job.hour:02d}:{job.minute:02d} UTC"


@dataclass(frozen=True, slots=True)
class JobSchedule:
    name: str
    enabled: bool
    trigger: str
    next_run: datetime | None


def job_schedules(settings: Settings, now: datetime | None = None) -> list[JobSchedule]:
    """Compute each job's trigger description and next fire time from the configuration alone."""
    moment = now or datetime.now(UTC)
    schedules = []
    for name, definition in JOBS.items():
        job = definition.settings(settings)
        next_run = build_trigger(job).get_next_fire_time(None, moment) if job.enabled else None
        schedules.append(JobSchedule(name, job.enabled, describe_trigger(job), next_run))
    return schedules


class Scheduler:
    """Owns the ``AsyncIOScheduler``; start it inside the running loop."""

    def __init__(self, runner: JobRunner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shut_down = False

    def start(self) -> None:
        for name, definition in JOBS.items():
            job = definition.settings(self.settings)
            if not job.enabled:
                logger.info("Job %s is disabled in the configuration", name)
                continue
            self._scheduler.add_job(
                self._run_scheduled,
                trigger=build_trigger(job),
                args=[name],
                id=name,
                name=name,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, int(job.misfire_grace_s)),
                replace_existing=True,
            )
        self._scheduler.add_listener(self._on_not_run, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._scheduler.start()
        for job_info in self._scheduler.get_jobs():
            logger.info("Job %s scheduled %s, next run at %s", job_info.id, job_info.trigger, job_info.next_run_time)

    async def _run_scheduled(self, name: str) -> None:
        try:
            await self.runner.run(name, trigger="schedule")
        except asyncio.CancelledError:
            # The runner has recorded the run as cancelled. This task belongs to APScheduler's executor,
            # which would log the cancellation as a job error with a traceback; nothing awaits its result.
            logger.debug("Job %s run cancelled at shutdown", name)

    def _on_not_run(self, event: JobEvent) -> None:
        # APScheduler calls listeners synchronously from its own loop callbacks; record the run in a task.
        scheduled: Any = getattr(event, "scheduled_run_time", None)
        scheduled_ms = int(scheduled.timestamp() * 1000) if scheduled is not None else None
        if event.code == EVENT_JOB_MISSED:
            outcome, reason = "missed", f"run due at {scheduled} started too late (past its misfire grace)"
        else:
            outcome, reason = "skipped", f"run due at {scheduled} skipped: the previous run is still going"
        task = asyncio.get_running_loop().create_task(
            self.runner.record_not_run(event.job_id, outcome, scheduled_ms, reason), name=f"record-{outcome}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def next_run_times(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def reschedule(self, settings: Settings) -> None:
        """Apply new job schedules (after a configuration reload)."""
        self.settings = settings
        for name, definition in JOBS.items():
            job = definition.settings(settings)
            if self._scheduler.get_job(name) is None:
                continue
            self._scheduler.modify_job(name, misfire_grace_time=max(1, int(job.misfire_grace_s)))
            self._scheduler.reschedule_job(name, trigger=build_trigger(job))

    def pause(self) -> None:
        """Stop firing new runs and leave runs in progress alone (``shutdown`` would cancel them)."""
        if self._scheduler.running:
            self._scheduler.pause()

    async def shutdown(self) -> None:
        """Stop firing new runs; runs in progress are cancelled by their owner. Safe to call twice."""
        # AsyncIOScheduler defers its shutdown to a loop callback, so ``running`` stays true until that
        # callback runs, and a second call would raise SchedulerNotRunningError inside the loop.
        if self._scheduler.running and not self._shut_down:
            self._shut_down = True
            self._scheduler.shutdown(wait=False)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
