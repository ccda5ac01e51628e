"""The four jobs, the run ledger and their APScheduler wiring."""

from whaled.jobs.base import JobContext, JobResult, Pruner
from whaled.jobs.runner import JOBS, JobRunner, RunRecord, UnknownJobError
from whaled.jobs.scheduler import JobSchedule, Scheduler, build_trigger, job_schedules

__all__ = [
    "JOBS",
    "JobContext",
    "JobResult",
    "JobRunner",
    "JobSchedule",
    "Pruner",
    "RunRecord",
    "Scheduler",
    "UnknownJobError",
    "build_trigger",
    "job_schedules",
]
