"""Prometheus metrics at ``/metrics``, in the text exposition format of ``prometheus-client``.

Each application has its own ``CollectorRegistry`` with one custom collector, so nothing lives in the
library's global registry and two servers in one process (tests) never share figures. A scrape first reads
what needs the database (job runs from ``job.run`` events, workflow and outbox counts, file sizes, the
health check), then the collector adds the live in-memory state of the governor and the feed.

When ``web.access_token`` is set, ``/metrics`` requires it like ``/api`` and ``/ws`` do: Prometheus sends
it with ``authorization: {credentials: <token>}`` in the scrape config. Without a token the server listens
on loopback only, where the endpoint is open.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from whaled import __version__
from whaled.monitor import HealthReport, Monitor
from whaled.store import Database
from whaled.web.auth import protect_prefix
from whaled.web.context import WEB_CONTEXT, WebContext
from whaled.web.feed import FEED_HUB
from whaled.web.health import ensure_monitor
from whaled.web.metrics_families import (
    JobRunTally,
    StoreFigures,
    feed_families,
    governor_families,
    health_families,
    job_families,
    store_families,
)
from whaled.web.redact import Redactor

__all__ = ["METRICS_PATH", "MetricsCollector", "install"]

METRICS_PATH = "/metrics"
_EVENT_PAGE = 1000


class MetricsCollector(Collector):
    """Yields every whaled metric from the figures of the last refresh and the live state of the parts."""

    def __init__(self, ctx: WebContext, monitor: Monitor) -> None:
        self.ctx = ctx
        self.monitor = monitor
        self.tally = JobRunTally()
        self.figures: StoreFigures | None = None
        self.report: HealthReport | None = None
        self.app: web.Application | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read what the next :meth:`collect` needs from the database; one refresh at a time."""
        async with self._lock:
            db = self.ctx.db
            await _count_job_runs(db, self.tally)
            self.report = await self.monitor.check()
            self.figures = await _read_figures(db)

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("whaled_build_info", "The running whaled version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if self.report is not None:
            schedule = self.ctx.job_schedule() if self.ctx.job_schedule is not None else None
            yield from job_families(self.tally, self.report, schedule)
            yield from health_families(self.report)
        if self.ctx.governor_snapshot is not None:
            yield from governor_families(self.ctx.governor_snapshot())
        if self.figures is not None:
            if self.app is not None and FEED_HUB in self.app:
                yield from feed_families(self.app[FEED_HUB].stats(), self.figures.newest_event_id)
            yield from store_families(self.figures)


_COLLECTOR: web.AppKey[MetricsCollector] = web.AppKey("whaled.web.metrics.collector", MetricsCollector)
_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("whaled.web.metrics.registry", CollectorRegistry)
_REDACTOR: web.AppKey[Redactor] = web.AppKey("whaled.web.metrics.redactor", Redactor)


def install(app: web.Application, ctx: WebContext) -> None:
    """Add ``GET /metrics``; it needs the access token when one is configured."""
    collector = MetricsCollector(ctx, ensure_monitor(ctx))
    collector.app = app
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    app[_COLLECTOR] = collector
    app[_REGISTRY] = registry
    app[_REDACTOR] = Redactor(ctx.settings)
    protect_prefix(app, METRICS_PATH)
    app.router.add_get(METRICS_PATH, _metrics)

    async def start_counting(app: web.Application) -> AsyncIterator[None]:
        row = await app[WEB_CONTEXT].db.fetchone("SELECT coalesce(max(id), 0) FROM events")
        collector.tally.cursor = int(row[0]) if row is not None else 0
        yield

    app.cleanup_ctx.append(start_counting)


async def _metrics(request: web.Request) -> web.Response:
    collector = request.app[_COLLECTOR]
    await collector.refresh()
    text = generate_latest(request.app[_REGISTRY]).decode()
    return web.Response(
        text=request.app[_REDACTOR].exposition(text),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


async def _count_job_runs(db: Database, tally: JobRunTally) -> None:
    """Count the ``job.run`` events after the tally's cursor, then move the cursor to the newest event."""
    if tally.cursor is None:
        return
    row = await db.fetchone("SELECT coalesce(max(id), 0) FROM events")
    newest = int(row[0]) if row is not None else 0
    while True:
        rows = await db.fetchall(
            "SELECT id, payload FROM events WHERE id > ? AND id <= ? AND topic = 'job' AND type = 'job.run' "
            "ORDER BY id LIMIT ?",
            (tally.cursor, newest, _EVENT_PAGE),
        )
        for event in rows:
            tally.observe(json.loads(event["payload"]))
            tally.cursor = int(event["id"])
        if len(rows) < _EVENT_PAGE:
            # Events of other topics up to ``newest`` need no second look.
            tally.cursor = max(tally.cursor, newest)
            return


async def _read_figures(db: Database) -> StoreFigures:
    async with db.reader() as conn:
        async with conn.execute("SELECT status, count(*) FROM workflows GROUP BY status") as cursor:
            workflows = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        async with conn.execute("SELECT status, count(*) FROM outbox GROUP BY status") as cursor:
            outbox = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        async with conn.execute("SELECT coalesce(max(id), 0) FROM events") as cursor:
            newest = await cursor.fetchone()
    database_bytes, wal_bytes = await asyncio.to_thread(_file_sizes, db.path)
    return StoreFigures(workflows, outbox, int(newest[0]) if newest else 0, database_bytes, wal_bytes)


def _file_sizes(path: Path) -> tuple[int, int]:
    sizes = []
    for name in (str(path), f"{path}-wal"):
        try:
            sizes.append(os.stat(name).st_size)
        except FileNotFoundError:
            sizes.append(0)
    return sizes[0], sizes[1]
