"""Request priorities, highest first."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Priority"]


class Priority(IntEnum):
    interactive = 0  # an operator's command, an alert's enrichment
    trades = 1
    markets = 2
    stats = 3
    backfill = 4
