"""Health monitoring: the conditions behind ``/healthz``, ``/metrics`` and the dashboard, and the stall alarm
that logs each change and records it as a ``system.stall`` or ``system.recovered`` event."""

from whaled.monitor.alarm import EVENT_TOPIC, RECOVERED, STALL, StallAlarm
from whaled.monitor.conditions import HealthReport, JobHealth, Problem, ProblemKind
from whaled.monitor.monitor import Monitor

__all__ = [
    "EVENT_TOPIC",
    "RECOVERED",
    "STALL",
    "HealthReport",
    "JobHealth",
    "Monitor",
    "Problem",
    "ProblemKind",
    "StallAlarm",
]
