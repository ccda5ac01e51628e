"""The health conditions, evaluated from facts read at one moment: stale jobs, a long governor pause, a stuck
outbox, stuck workflows and a database that does not take writes.

Every function here is pure, so the rules can be read and tested apart from the reads that feed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from whaled.config import JobSettings, MonitorSettings

__all__ = [
    "DAY_S",
    "HealthReport",
    "JobHealth",
    "Problem",
    "ProblemKind",
    "database_problem",
    "evaluate_job",
    "format_duration",
    "governor_problem",
    "job_interval_s",
    "job_problem",
    "outbox_problem",
    "workflow_problem",
]

DAY_S = 86_400.0

ProblemKind = Literal[
    "job_stale",
    "governor_paused",
    "outbox_stuck",
    "workflow_stuck",
    "database_unwritable",
    "database_unreadable",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed condition.

    ``key`` names the condition (``job:sync-markets``, ``outbox``) and stays the same from one check to the next
    while the condition lasts. ``since_ms`` is when its clock started, if known.
    """

    key: str
    kind: ProblemKind
    message: str
    since_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "message": self.message, "since_ms": self.since_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        return cls(str(data["key"]), data["kind"], str(data["message"]), data.get("since_ms"))


@dataclass(frozen=True, slots=True)
class JobHealth:
    """A job's standing against its bound: the time its last success may be old before it counts as stale."""

    name: str
    enabled: bool
    interval_s: float
    bound_s: float
    last_success_ms: int | None
    stale: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "interval_s": self.interval_s,
            "bound_s": self.bound_s,
            "last_success_ms": self.last_success_ms,
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of one check. Healthy means no problem."""

    checked_ms: int
    started_ms: int
    problems: tuple[Problem, ...]
    jobs: tuple[JobHealth, ...]
    governor_state: str | None
    governor_paused_since_ms: int | None
    outbox_due: int
    outbox_oldest_due_ms: int | None
    workflows_stuck: int
    database_writable: bool

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def reasons(self) -> list[str]:
        return [problem.message for problem in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "checked_ms": self.checked_ms,
            "started_ms": self.started_ms,
            "reasons": self.reasons,
            "problems": [problem.to_json() for problem in self.problems],
            "jobs": [job.to_json() for job in self.jobs],
            "governor": {"state": self.governor_state, "paused_since_ms": self.governor_paused_since_ms},
            "outbox": {"due": self.outbox_due, "oldest_due_ms": self.outbox_oldest_due_ms},
            "workflows": {"stuck": self.workflows_stuck},
            "database": {"writable": self.database_writable},
        }


def format_duration(seconds: float) -> str:
    """Render a duration for a message: ``181 s``, ``12 min``, ``3.5 h``, ``2.0 d``.

    Below ten minutes it stays in whole seconds, so that an age just past a bound reads differently from it.
    """
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY_S:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_S:.1f} d"


def job_interval_s(job: JobSettings) -> float:
    """Return the time between a job's runs; the daily job (a cron time, no ``interval_s``) counts one day."""
    return job.interval_s if job.interval_s is not None else DAY_S


def evaluate_job(
    name: str,
    job: JobSettings,
    monitor: MonitorSettings,
    last_success_ms: int | None,
    now_ms: int,
    started_ms: int,
    *,
    grace: bool = True,
) -> JobHealth:
    """Judge one job: stale when neither its last success nor the end of the startup grace is within its bound.

    :param grace: False for a job that was already stale before this process started, so that a restart
        does not hide it.
    """
    interval_s = job_interval_s(job)
    bound_s = interval_s * monitor.job_stale_factor
    reference_ms = last_success_ms if last_success_ms is not None else -1
    if grace:
        reference_ms = max(reference_ms, started_ms + int(monitor.startup_grace_s * 1000))
    stale = job.enabled and now_ms - reference_ms > bound_s * 1000
    return JobHealth(name, job.enabled, interval_s, bound_s, last_success_ms, stale)


def job_problem(health: JobHealth, now_ms: int, started_ms: int) -> Problem:
    bound = f"the bound is {format_duration(health.bound_s)}, a multiple of its interval of {format_duration(health.interval_s)}"
    if health.last_success_ms is None:
        message = (
            f"job {health.name} has not succeeded since the daemon started "
            f"{format_duration((now_ms - started_ms) / 1000)} ago; {bound}"
        )
    else:
        message = (
            f"job {health.name} last succeeded {format_duration((now_ms - health.last_success_ms) / 1000)} ago; {bound}"
        )
    return Problem(f"job:{health.name}", "job_stale", message, health.last_success_ms)


def governor_problem(
    state: str, reason: str, paused_since_ms: int | None, now_ms: int, max_paused_s: float
) -> Problem | None:
    """Return a problem when the governor has not been running for longer than ``max_paused_s``."""
    if state == "running" or paused_since_ms is None:
        return None
    paused_s = (now_ms - paused_since_ms) / 1000
    if paused_s <= max_paused_s:
        return None
    suffix = f": {reason}" if reason else ""
    message = (
        f"the API governor has been {state} for {format_duration(paused_s)} "
        f"(bound {format_duration(max_paused_s)}){suffix}"
    )
    return Problem("governor", "governor_paused", message, paused_since_ms)


def outbox_problem(due: int, oldest_due_ms: int | None, now_ms: int, stuck_s: float) -> Problem | None:
    """Return a problem when a delivery has waited past its due time (or in ``sending``) for over ``stuck_s``."""
    if oldest_due_ms is None:
        return None
    waited_s = (now_ms - oldest_due_ms) / 1000
    if waited_s <= stuck_s:
        return None
    message = (
        f"the outbox is stuck: {due} deliveries are due, the oldest for {format_duration(waited_s)} "
        f"(bound {format_duration(stuck_s)}); check that the alert sender runs and its SMTP server "
        "or webhooks answer"
    )
    return Problem("outbox", "outbox_stuck", message, oldest_due_ms)


def workflow_problem(
    stuck: int, oldest_id: int | None, oldest_updated_ms: int | None, now_ms: int, stuck_s: float
) -> Problem | None:
    """Return a problem when pending or running workflows made no progress for over ``stuck_s``."""
    if stuck == 0 or oldest_updated_ms is None:
        return None
    idle_s = (now_ms - oldest_updated_ms) / 1000
    message = (
        f"{stuck} workflows are pending or running without progress for over {format_duration(stuck_s)} "
        f"(the oldest, workflow {oldest_id}, for {format_duration(idle_s)}); see `whaled workflows list`"
    )
    return Problem("workflows", "workflow_stuck", message, oldest_updated_ms)


def database_problem(kind: Literal["database_unwritable", "database_unreadable"], error: str) -> Problem:
    action = "written to" if kind == "database_unwritable" else "read"
    return Problem(
        "database",
        kind,
        f"the database cannot be {action}: {error}; check the disk space and the file's permissions",
    )
