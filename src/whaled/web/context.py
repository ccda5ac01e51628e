"""The web server's view of the rest of the daemon, filled in by the application wiring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from whaled.config import Settings
from whaled.monitor import Monitor
from whaled.store import Database

__all__ = ["WEB_CONTEXT", "SnapshotProvider", "WebContext"]


class SnapshotProvider(Protocol):
    """A callable with no arguments that returns the current state of one part as JSON-ready data."""

    def __call__(self) -> Any: ...


@dataclass(slots=True)
class WebContext:
    """Everything the HTTP handlers read. A provider is ``None`` until the part behind it is wired.

    :param governor_snapshot: the governor's state (queue depth, tokens, pause), for health and metrics.
    :param job_schedule: one entry per scheduled job (name, next run time, enabled).
    :param workflows: the workflow engine, or a summary provider of it, for the dashboard.
    :param monitor: the health monitor shared with the stall alarm; when None, the health part creates one
        for this application.
    """

    db: Database
    settings: Settings
    governor_snapshot: SnapshotProvider | None = None
    job_schedule: SnapshotProvider | None = None
    workflows: Any | None = None
    monitor: Monitor | None = None


WEB_CONTEXT: web.AppKey[WebContext] = web.AppKey("whaled.web.context", WebContext)
