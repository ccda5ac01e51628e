"""The governor's figures as plain data, for ``/metrics``, ``/healthz`` and the dashboard."""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "OUTCOMES",
    "WAIT_BUCKETS_S",
    "GovernorSnapshot",
    "GovernorState",
    "Outcome",
    "PauseKind",
    "WaitHistogram",
]

GovernorState = Literal["running", "paused", "probing"]
Outcome = Literal["ok", "retried", "error", "deadline", "cancelled"]
PauseKind = Literal["rate_limited", "failures"]

OUTCOMES: tuple[Outcome, ...] = ("ok", "retried", "error", "deadline", "cancelled")

# Upper bounds of the queue-wait histogram, in seconds: one token interval up to the default deadline.
WAIT_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class WaitHistogram:
    """Queue waits in Prometheus form: cumulative counts per upper bound (the last is +Inf) and a sum."""

    bounds_s: tuple[float, ...] = WAIT_BUCKETS_S
    _counts: list[int] = field(default_factory=list)
    sum_s: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self._counts = [0] * (len(self.bounds_s) + 1)

    def observe(self, wait_s: float) -> None:
        # bisect_left puts a wait equal to a bound into that bound's bucket, as Prometheus's "le" does.
        self._counts[bisect_left(self.bounds_s, wait_s)] += 1
        self.sum_s += wait_s
        self.count += 1

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        """Return ``(upper bound, observations at or below it)`` pairs, ending with ``(inf, count)``."""
        pairs: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds_s, math.inf), self._counts, strict=True):
            running += count
            pairs.append((bound, running))
        return tuple(pairs)


@dataclass(frozen=True)
class GovernorSnapshot:
    """The governor's figures at one moment.

    ``outcomes`` counts finished calls: ``ok`` on the first attempt, ``retried`` after one or more
    retries, ``error`` failed, ``deadline`` expired in the queue, ``cancelled`` by the caller or by
    ``close()``. ``retries`` counts retry attempts. ``pauses`` counts pauses by kind: ``rate_limited``
    after HTTP 429 with ``Retry-After``, ``failures`` after ``failure_threshold`` consecutive failures.
    """

    state: GovernorState
    state_reason: str
    paused_until: datetime | None
    pause_remaining_s: float
    tokens: float
    rate_per_s: float
    burst: int
    in_flight: int
    max_in_flight: int
    queue_depth: dict[str, int]
    wait_buckets: tuple[tuple[float, int], ...]
    wait_sum_s: float
    wait_count: int
    outcomes: dict[str, int]
    retries: int
    consecutive_failures: int
    pauses: dict[str, int]
    last_pause_reason: str

    @property
    def queued(self) -> int:
        return sum(self.queue_depth.values())

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON-ready data: ISO 8601 times, and ``"+Inf"`` for the last bucket bound."""
        data = asdict(self)
        data["paused_until"] = self.paused_until.isoformat() if self.paused_until else None
        data["wait_buckets"] = [
            {"le": "+Inf" if math.isinf(bound) else bound, "count": count} for bound, count in self.wait_buckets
        ]
        data["queued"] = self.queued
        return data
