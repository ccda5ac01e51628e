"""The four jobs, the run ledger and their APScheduler wiring."""

from whaled.jobs.base import JobContext, JobResult
from whaled.jobs.runner import JOBS, JobRunner, RunRecord, UnknownJobError
from whaled.jobs.scheduler import JobSchedule, Scheduler, build_trigger, job_schedules

__all__ = [
    "JOBS",
    "JobContext",
    "JobResult",
    "JobRunner",
    "JobSchedule",
    "RunRecord",
    "Scheduler",
    "UnknownJobError",
    "build_trigger",
    "job_schedules",
]
