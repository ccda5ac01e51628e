"""The daemon: wires the parts together in a fixed startup order and unwinds them in reverse.

Startup: instance lock → database → tracked wallets from the config → Opinion client → governor → job
runner → alerts → web server → scheduler (→ one run of each job when asked).

Shutdown, in this order:

1. the scheduler stops firing and the web server stops accepting connections;
2. runs in progress get :data:`SHUTDOWN_GRACE_S` to finish and are then cancelled;
3. the feed sends the events they stored, then websocket clients are closed with code 1001;
4. alerts stop, then the Opinion client and the governor close;
5. the WAL is checkpointed, the database closes and the instance lock is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta

from whaled.config import Settings
from whaled.governor import GovernedOpinion, Governor
from whaled.jobs import JOBS, JobRunner, Pruner, Scheduler
from whaled.lock import InstanceLock
from whaled.log import app_logger as logger
from whaled.monitor import Monitor, StallAlarm
from whaled.notify.outbox import prune_delivered
from whaled.opinion import OpinionClient
from whaled.store import Database, Transaction
from whaled.store.wallets import sync_config_wallets
from whaled.web import WebContext, WebServer, start_web
from whaled.web.context import WEB_CONTEXT
from whaled.web.feed import FEED_HUB
from whaled.workflows import AlertService, prune_finished

__all__ = ["Daemon", "apply_config_wallets", "build_opinion", "default_pruners", "open_database"]

_DAY_MS = 86_400_000

# How long runs in progress may finish on their own at shutdown before they are cancelled. It is enough to
# commit the page being stored; a run still waiting on the API is cancelled, and the next run redoes it.
SHUTDOWN_GRACE_S = 3.0
# How long the feed may take at shutdown to send clients the events stored before it.
FEED_FLUSH_S = 1.0
_FEED_POLL_S = 0.02

# Applies a reloaded configuration to one part; registered in Daemon.reload_hooks under its section name.
ReloadHook = Callable[[Settings], Awaitable[None]]


async def open_database(settings: Settings) -> Database:
    store = settings.store
    return await Database.open(store.path, busy_timeout_ms=store.busy_timeout_ms, readers=store.readers)


async def apply_config_wallets(db: Database, settings: Settings) -> None:
    """Make the config's wallet list the tracked ``config`` set of the database."""
    async with db.transaction() as tx:
        added, removed = await sync_config_wallets(tx, [(w.address, w.label) for w in settings.wallets])
    if added or removed:
        logger.info("Tracked wallets from the config: %d added, %d no longer tracked", len(added), len(removed))


def default_pruners() -> tuple[Pruner, ...]:
    """Build the pruners the cleanup job runs beside its own tables: finished workflows and settled alerts."""

    async def workflows(tx: Transaction, settings: Settings, now: int) -> int:
        return await prune_finished(tx, now - settings.alerts.workflow_retention_days * _DAY_MS)

    async def alerts(tx: Transaction, settings: Settings, now: int) -> int:
        return await prune_delivered(tx, now - settings.alerts.workflow_retention_days * _DAY_MS)

    return Pruner("workflows", workflows), Pruner("alerts", alerts)


def build_opinion(settings: Settings) -> tuple[OpinionClient, Governor, GovernedOpinion]:
    """Create the one Opinion client and the one governor of this process, and the governed view of both."""
    opinion = settings.opinion
    client = OpinionClient(
        opinion.base_url,
        api_key=opinion.api_key.get_secret_value() if opinion.api_key else None,
        leaderboard_url=opinion.leaderboard_url,
        chain_id=opinion.chain_id,
        connect_timeout_s=opinion.connect_timeout_s,
        read_timeout_s=opinion.read_timeout_s,
        total_timeout_s=opinion.total_timeout_s,
        page_limit=opinion.page_limit,
    )
    governor = Governor(settings.governor)
    return client, governor, GovernedOpinion(client, governor)


@dataclass
class Daemon:
    """One whaled process. ``await daemon.start()``, later ``await daemon.close()``."""

    settings: Settings
    run_jobs_at_startup: bool = False
    db: Database | None = None
    api: GovernedOpinion | None = None
    governor: Governor | None = None
    runner: JobRunner | None = None
    scheduler: Scheduler | None = None
    web: WebServer | None = None
    alerts: AlertService | None = None
    # Parts that apply a section of a reloaded configuration live (such as "alerts"), by section name.
    reload_hooks: dict[str, ReloadHook] = field(default_factory=dict)
    reloads: Counter[str] = field(default_factory=Counter)
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _startup_task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _started_s: float = 0.0
    _first_event_id: int = 0

    async def start(self) -> None:
        async with AsyncExitStack() as stack:
            await self._start_parts(stack)
            self._stack = stack.pop_all()
        logger.info("whaled started: database %s, %d jobs scheduled", self.settings.store.path, len(JOBS))

    async def _start_parts(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        self._started_s = time.monotonic()
        lock = InstanceLock(settings.store.path)
        lock.acquire()
        stack.callback(lock.release)
        self.db = db = await open_database(settings)
        self._first_event_id = db.events.last_id
        stack.push_async_callback(db.close)
        stack.push_async_callback(self._checkpoint)
        await apply_config_wallets(db, settings)

        client, self.governor, self.api = build_opinion(settings)
        stack.push_async_callback(client.close)
        stack.push_async_callback(self.governor.close)

        self.runner = runner = JobRunner(db, self.api, settings, pruners=default_pruners())
        abandoned = await runner.close_abandoned_runs()
        if abandoned:
            logger.warning("%d job runs were left running by a previous process and are marked failed", abandoned)
        stack.push_async_callback(self._cancel_runs)

        self.alerts = alerts = AlertService(db, settings, self.api)
        await alerts.start()
        stack.push_async_callback(alerts.close)
        self.reload_hooks["alerts"] = alerts.reload

        if settings.web.enabled:
            self.web = await start_web(self._web_context(db))
            stack.push_async_callback(self.web.close)
        # The stall alarm shares the web server's monitor, so /healthz and the alarm agree.
        web_monitor = self.web.app[WEB_CONTEXT].monitor if self.web is not None else None
        alarm = StallAlarm(web_monitor or Monitor(db, settings, governor_snapshot=self.governor.snapshot))
        await alarm.start()
        stack.push_async_callback(alarm.close)
        self.reload_hooks["monitor"] = alarm.reload

        self.scheduler = scheduler = Scheduler(runner, settings)
        scheduler.start()
        stack.push_async_callback(self._stop_scheduler)

        if self.run_jobs_at_startup or settings.jobs.run_at_startup:
            self._startup_task = asyncio.create_task(self._run_all_once(), name="whaled-startup-runs")
            stack.push_async_callback(self._stop_startup_runs)
        # Pushed last, so it runs first: everything above stays up while runs in progress finish.
        stack.push_async_callback(self._drain)

    def _web_context(self, db: Database) -> WebContext:
        assert self.governor is not None
        return WebContext(
            db=db,
            settings=self.settings,
            governor_snapshot=self.governor.snapshot,
            job_schedule=self._job_schedule,
            workflows=self.alerts,
            monitor=Monitor(db, self.settings, governor_snapshot=self.governor.snapshot),
        )

    def _job_schedule(self) -> list[dict[str, object]]:
        """Describe each job's next run and run in progress, as the running scheduler has them."""
        next_runs = self.scheduler.next_run_times() if self.scheduler is not None else {}
        running = self.runner.running if self.runner is not None else {}
        schedule: list[dict[str, object]] = []
        for name, definition in JOBS.items():
            next_run = next_runs.get(name)
            schedule.append(
                {
                    "name": name,
                    "enabled": definition.settings(self.settings).enabled,
                    "next_run": next_run.isoformat() if next_run is not None else None,
                    "running_run_id": running.get(name),
                }
            )
        return schedule

    async def _run_all_once(self) -> None:
        assert self.runner is not None
        for name, definition in JOBS.items():
            if self._stopping:
                return
            if definition.settings(self.settings).enabled:
                await self.runner.run(name, trigger="startup")

    async def _stop_startup_runs(self) -> None:
        if self._startup_task is not None and not self._startup_task.done():
            self._startup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._startup_task

    async def _cancel_runs(self) -> None:
        assert self.runner is not None
        cancelled = await self.runner.cancel_running(SHUTDOWN_GRACE_S)
        if cancelled:
            logger.warning("%d job runs were cancelled at shutdown", cancelled)

    async def _drain(self) -> None:
        """Stop new work, let runs in progress finish within the grace period, then send the feed's backlog."""
        self._stopping = True
        if self.scheduler is not None:
            self.scheduler.pause()
        await self._stop_listening()
        await self._cancel_runs()
        await self._stop_startup_runs()
        await self._stop_scheduler()
        # Runs that started just before the pause registered late; the shutdown above cancelled them.
        await self._cancel_runs()
        await self._flush_feed()

    async def _stop_listening(self) -> None:
        if self.web is not None:
            await self.web.stop_listening()

    async def _flush_feed(self) -> None:
        """Wait up to :data:`FEED_FLUSH_S` until the feed has sent every event stored so far."""
        hub = self.web.app.get(FEED_HUB) if self.web is not None else None
        if hub is None or self.db is None:
            return
        target = self.db.events.last_id
        # The hub exposes its position but no event to wait on, so this polls, a bounded number of times.
        for _ in range(round(FEED_FLUSH_S / _FEED_POLL_S)):
            if hub.position >= target:
                return
            await asyncio.sleep(_FEED_POLL_S)
        if hub.position < target:
            logger.warning("The feed had not sent events %d to %d when it closed", hub.position + 1, target)

    async def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.shutdown()

    async def _checkpoint(self) -> None:
        """Fold the WAL into the database file, so that the file alone is complete once whaled stops."""
        if self.db is None:
            return
        try:
            await self.db.maintain()
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoint at shutdown failed: %s", exc)

    async def reload(self, settings: Settings) -> None:
        """Apply a reloaded configuration: wallets, thresholds, job schedules, and each of ``reload_hooks``.

        Sections read only at startup must already hold their running values (``whaled.service.plan_reload``
        builds such a configuration).
        """
        assert self.db is not None and self.runner is not None
        await apply_config_wallets(self.db, settings)
        previous, self.settings = self.settings, settings
        self.runner.settings = settings
        if self.scheduler is not None and previous.jobs != settings.jobs and not self._stopping:
            self.scheduler.reschedule(settings)
        if self.web is not None:
            self.web.app[WEB_CONTEXT].settings = settings
        for hook in self.reload_hooks.values():
            await hook(settings)
        self.reloads["applied"] += 1

    def status_line(self) -> str:
        """Describe the running daemon in one line, for systemd's STATUS=."""
        jobs = len(self.scheduler.next_run_times()) if self.scheduler is not None else 0
        web = self.web.url if self.web is not None else "off"
        return f"running: {jobs} jobs scheduled, web {web}, {self.reloads['applied']} reloads"

    def _summary(self) -> str:
        uptime = timedelta(seconds=round(time.monotonic() - self._started_s)) if self._started_s else timedelta()
        outcomes: Counter[str] = Counter()
        for (_, outcome), count in (self.runner.counters if self.runner is not None else Counter()).items():
            outcomes[outcome] += count
        runs = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "none"
        events = self.db.events.last_id - self._first_event_id if self.db is not None else 0
        return (
            f"up {uptime}; job runs: {runs}; {events} events stored; "
            f"reloads: {self.reloads['applied']} applied, {self.reloads['failed']} rejected"
        )

    async def close(self) -> None:
        """Shut down in the order the module docstring gives; log one final line with the counters."""
        logger.info("whaled stopping")
        await self._stack.aclose()
        logger.info("whaled stopped: %s", self._summary())
