"""Wall-clock time in one place, so that tests can move it (time-machine patches ``time.time``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["ms_to_datetime", "now_ms", "utc_now"]


def now_ms() -> int:
    """Return the current Unix time in whole milliseconds."""
    return time.time_ns() // 1_000_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def ms_to_datetime(value_ms: int) -> datetime:
    return datetime.fromtimestamp(value_ms / 1000, UTC)
