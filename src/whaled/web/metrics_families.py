"""The metric families of ``/metrics``, built from plain figures; :mod:`whaled.web.metrics` gathers them.

Every name starts with ``whaled_``; counters count since this process started, and gauges hold the value
at the moment of the scrape.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from whaled.governor import GovernorSnapshot
from whaled.governor.stats import WaitHistogram
from whaled.monitor import HealthReport, ProblemKind
from whaled.web.feed_hub import FeedStats

__all__ = [
    "JOB_DURATION_BUCKETS_S",
    "OUTBOX_STATUSES",
    "WORKFLOW_STATUSES",
    "JobRunTally",
    "StoreFigures",
    "feed_families",
    "governor_families",
    "health_families",
    "job_families",
    "store_families",
]

# Upper bounds of the job duration histogram, in seconds: from a quick no-op run to the longest timeout.
JOB_DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0)
WORKFLOW_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
OUTBOX_STATUSES = ("pending", "sending", "sent", "unknown", "failed", "cancelled")
# Runs that never started have no duration worth observing.
_NOT_RUN = ("missed", "skipped")


@dataclass
class JobRunTally:
    """Job runs by job and outcome, and run durations by job, counted from ``job.run`` events.

    ``cursor`` is the id of the last event counted; it starts at the newest event when the server starts,
    so the counts cover this process's lifetime, including runs started by another process (the CLI).
    """

    cursor: int | None = None
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[str, WaitHistogram] = field(default_factory=dict)

    def observe(self, payload: Mapping[str, Any]) -> None:
        job, outcome = str(payload.get("job")), str(payload.get("outcome"))
        self.runs[(job, outcome)] += 1
        started, finished = payload.get("started_ms"), payload.get("finished_ms")
        if outcome in _NOT_RUN or not isinstance(started, int) or not isinstance(finished, int):
            return
        histogram = self.durations.setdefault(job, WaitHistogram(bounds_s=JOB_DURATION_BUCKETS_S))
        histogram.observe(max(0.0, (finished - started) / 1000))


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """The data one scrape reads from the database and its files."""

    workflows: dict[str, int]
    outbox: dict[str, int]
    newest_event_id: int
    database_bytes: int
    wal_bytes: int


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _histogram_buckets(cumulative: tuple[tuple[float, int], ...]) -> list[tuple[str, float]]:
    return [(_le(bound), float(count)) for bound, count in cumulative]


def job_families(tally: JobRunTally, report: HealthReport, schedule: list[dict[str, Any]] | None) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "whaled_job_runs", "Job runs since the process started, by outcome.", labels=["job", "outcome"]
    )
    for (job, outcome), count in sorted(tally.runs.items()):
        runs.add_metric([job, outcome], count)
    yield runs
    durations = HistogramMetricFamily(
        "whaled_job_run_duration_seconds", "Duration of job runs since the process started.", labels=["job"]
    )
    for job, histogram in sorted(tally.durations.items()):
        durations.add_metric([job], _histogram_buckets(histogram.cumulative()), histogram.sum_s)
    yield durations
    last_success = GaugeMetricFamily(
        "whaled_job_last_success_timestamp_seconds", "Unix time of the job's last successful run.", labels=["job"]
    )
    stale = GaugeMetricFamily(
        "whaled_job_stale", "1 when the job's last success is older than its bound.", labels=["job"]
    )
    bound = GaugeMetricFamily(
        "whaled_job_stale_bound_seconds", "How old the last success may be before the job is stale.", labels=["job"]
    )
    for health in report.jobs:
        if health.last_success_ms is not None:
            last_success.add_metric([health.name], health.last_success_ms / 1000)
        stale.add_metric([health.name], float(health.stale))
        bound.add_metric([health.name], health.bound_s)
    yield from (last_success, stale, bound)
    if schedule is not None:
        running = GaugeMetricFamily("whaled_job_running", "1 while a run of the job is in progress.", labels=["job"])
        for entry in schedule:
            running.add_metric([str(entry["name"])], float(entry.get("running_run_id") is not None))
        yield running


def health_families(report: HealthReport) -> Iterator[Metric]:
    yield GaugeMetricFamily("whaled_healthy", "1 when /healthz reports no problem.", value=float(report.healthy))
    problems = GaugeMetricFamily("whaled_health_problems", "Failed health conditions, by kind.", labels=["kind"])
    counts = Counter(problem.kind for problem in report.problems)
    for kind in get_args(ProblemKind):
        problems.add_metric([kind], counts.get(kind, 0))
    yield problems
    yield GaugeMetricFamily(
        "whaled_database_writable",
        "1 when the monitor's last write probe committed.",
        value=float(report.database_writable),
    )
    yield GaugeMetricFamily(
        "whaled_workflows_stuck",
        "Pending or running workflows without progress past the bound.",
        value=report.workflows_stuck,
    )
    age_s = (
        0.0
        if report.outbox_oldest_due_ms is None
        else max(0.0, (report.checked_ms - report.outbox_oldest_due_ms) / 1000)
    )
    yield GaugeMetricFamily(
        "whaled_outbox_oldest_due_age_seconds", "How long the oldest due delivery has waited.", value=age_s
    )


def governor_families(snapshot: GovernorSnapshot) -> Iterator[Metric]:
    state = GaugeMetricFamily("whaled_governor_state", "1 for the governor's current state.", labels=["state"])
    for name in ("running", "paused", "probing"):
        state.add_metric([name], float(snapshot.state == name))
    yield state
    for name, text, value in (
        ("whaled_governor_pause_remaining_seconds", "Time left in the current pause.", snapshot.pause_remaining_s),
        ("whaled_governor_tokens", "Tokens in the bucket (requests that may start now).", snapshot.tokens),
        (
            "whaled_governor_rate_limit_per_second",
            "Tokens added per second (the request rate limit).",
            snapshot.rate_per_s,
        ),
        ("whaled_governor_burst", "Bucket size.", float(snapshot.burst)),
        ("whaled_governor_in_flight", "Requests awaiting a response.", float(snapshot.in_flight)),
        ("whaled_governor_max_in_flight", "Cap on requests awaiting a response.", float(snapshot.max_in_flight)),
        ("whaled_governor_consecutive_failures", "Transient failures in a row.", float(snapshot.consecutive_failures)),
    ):
        yield GaugeMetricFamily(name, text, value=value)
    depth = GaugeMetricFamily("whaled_governor_queue_depth", "Requests waiting, by priority.", labels=["priority"])
    for priority, count in snapshot.queue_depth.items():
        depth.add_metric([priority.lower()], count)
    yield depth
    yield HistogramMetricFamily(
        "whaled_governor_queue_wait_seconds",
        "Time requests waited in the queue.",
        buckets=_histogram_buckets(snapshot.wait_buckets),
        sum_value=snapshot.wait_sum_s,
    )
    requests = CounterMetricFamily("whaled_governor_requests", "Finished calls, by outcome.", labels=["outcome"])
    for outcome, count in snapshot.outcomes.items():
        requests.add_metric([outcome], count)
    yield requests
    yield CounterMetricFamily("whaled_governor_retries", "Retry attempts.", value=snapshot.retries)
    pauses = CounterMetricFamily("whaled_governor_pauses", "Pauses, by kind.", labels=["kind"])
    for kind, count in snapshot.pauses.items():
        pauses.add_metric([kind], count)
    yield pauses


def feed_families(stats: FeedStats, newest_event_id: int) -> Iterator[Metric]:
    yield GaugeMetricFamily("whaled_feed_clients", "Websocket clients connected to /ws.", value=stats.clients)
    yield GaugeMetricFamily(
        "whaled_feed_live_clients", "Clients receiving live events (not catching up).", value=stats.live_clients
    )
    yield CounterMetricFamily(
        "whaled_feed_events_broadcast", "Events fanned out to live clients.", value=stats.events_broadcast
    )
    dropped = CounterMetricFamily(
        "whaled_feed_clients_dropped", "Clients closed by the server, by reason.", labels=["reason"]
    )
    dropped.add_metric(["slow"], stats.clients_closed_slow)
    dropped.add_metric(["invalid"], stats.clients_closed_invalid)
    yield dropped
    yield CounterMetricFamily("whaled_feed_resets", "Resumes refused because the events were gone.", value=stats.resets)
    yield GaugeMetricFamily(
        "whaled_feed_position", "Id of the newest event the feed has broadcast.", value=stats.position
    )
    yield GaugeMetricFamily("whaled_events_last_id", "Id of the newest stored event.", value=newest_event_id)


def store_families(figures: StoreFigures) -> Iterator[Metric]:
    workflows = GaugeMetricFamily("whaled_workflows", "Workflow runs, by status.", labels=["status"])
    for status in WORKFLOW_STATUSES:
        workflows.add_metric([status], figures.workflows.get(status, 0))
    yield workflows
    outbox = GaugeMetricFamily("whaled_outbox_deliveries", "Outbox deliveries, by status.", labels=["status"])
    for status in OUTBOX_STATUSES:
        outbox.add_metric([status], figures.outbox.get(status, 0))
    yield outbox
    depth = figures.outbox.get("pending", 0) + figures.outbox.get("sending", 0)
    yield GaugeMetricFamily("whaled_outbox_depth", "Deliveries not yet sent (pending or sending).", value=depth)
    yield GaugeMetricFamily(
        "whaled_database_size_bytes", "Size of the SQLite database file.", value=figures.database_bytes
    )
    yield GaugeMetricFamily(
        "whaled_database_wal_size_bytes", "Size of the SQLite write-ahead log.", value=figures.wal_bytes
    )
