"""The context every job receives and the result it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from whaled.config import Settings
from whaled.opinion.api import OpinionApi
from whaled.store.db import Database, Transaction

__all__ = ["JobContext", "JobFunction", "JobResult", "Pruner"]


@dataclass(frozen=True, slots=True)
class Pruner:
    """Deletes another part's old rows during cleanup (finished workflows, settled alerts).

    ``prune(tx, settings, now_ms)`` picks its own cutoff from the settings and returns the rows it deleted.
    """

    name: str
    prune: Callable[[Transaction, Settings, int], Awaitable[int]]


@dataclass(slots=True)
class JobContext:
    """One run's view of the daemon. ``api`` counts the Opinion requests this run made."""

    db: Database
    api: OpinionApi
    settings: Settings
    run_id: int
    pruners: Sequence[Pruner] = ()


@dataclass(slots=True)
class JobResult:
    """``items``: the unit of work the job counts (markets, trades, wallets, rows deleted)."""

    items: int = 0
    details: dict[str, Any] = field(default_factory=dict)


JobFunction = Callable[[JobContext], Awaitable[JobResult]]
