"""The daemon: wires the parts together in a fixed startup order and unwinds them in reverse.

Startup: database → tracked wallets from the config → Opinion client → governor → job runner → alerts →
web server → scheduler (→ one run of each job when asked). Shutdown reverses it: the scheduler stops firing,
the web server stops accepting, runs in progress get a grace period and are then cancelled, alerts stop, and
the client, governor and database close last.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from whaled.config import Settings
from whaled.governor import GovernedOpinion, Governor
from whaled.jobs import JOBS, JobRunner, Scheduler
from whaled.log import app_logger as logger
from whaled.opinion import OpinionClient
from whaled.store import Database
from whaled.store.wallets import sync_config_wallets
from whaled.web import WebContext, WebServer, start_web

__all__ = ["Daemon", "apply_config_wallets", "build_opinion", "open_database"]

# How long runs in progress may finish on their own at shutdown before they are cancelled.
SHUTDOWN_GRACE_S = 5.0


async def open_database(settings: Settings) -> Database:
    store = settings.store
    return await Database.open(store.path, busy_timeout_ms=store.busy_timeout_ms, readers=store.readers)


async def apply_config_wallets(db: Database, settings: Settings) -> None:
    """Make the config's wallet list the tracked ``config`` set of the database."""
    async with db.transaction() as tx:
        added, removed = await sync_config_wallets(tx, [(w.address, w.label) for w in settings.wallets])
    if added or removed:
        logger.info("Tracked wallets from the config: %d added, %d no longer tracked", len(added), len(removed))


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
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _startup_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with AsyncExitStack() as stack:
            await self._start_parts(stack)
            self._stack = stack.pop_all()
        logger.info("whaled started: database %s, %d jobs scheduled", self.settings.store.path, len(JOBS))

    async def _start_parts(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        self.db = db = await open_database(settings)
        stack.push_async_callback(db.close)
        await apply_config_wallets(db, settings)

        client, self.governor, self.api = build_opinion(settings)
        stack.push_async_callback(client.close)
        stack.push_async_callback(self.governor.close)

        self.runner = runner = JobRunner(db, self.api, settings)
        abandoned = await runner.close_abandoned_runs()
        if abandoned:
            logger.warning("%d job runs were left running by a previous process and are marked failed", abandoned)
        stack.push_async_callback(self._cancel_runs)

        if settings.web.enabled:
            self.web = await start_web(self._web_context(db))
            stack.push_async_callback(self.web.close)

        self.scheduler = scheduler = Scheduler(runner, settings)
        scheduler.start()
        stack.push_async_callback(scheduler.shutdown)

        if self.run_jobs_at_startup or settings.jobs.run_at_startup:
            self._startup_task = asyncio.create_task(self._run_all_once(), name="whaled-startup-runs")
            stack.push_async_callback(self._stop_startup_runs)

    def _web_context(self, db: Database) -> WebContext:
        assert self.governor is not None
        return WebContext(
            db=db,
            settings=self.settings,
            governor_snapshot=self.governor.snapshot,
            job_schedule=self._job_schedule,
        )

    def _job_schedule(self) -> list[dict[str, object]]:
        """Each job's trigger and next run, as the running scheduler has them."""
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

    async def close(self) -> None:
        """Shut down in the reverse order of startup."""
        logger.info("whaled stopping")
        await self._stack.aclose()
        logger.info("whaled stopped")
