"""The alert service: the workflow engine, the event consumer and the outbox sender, started and stopped in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from whaled.clock import now_ms
from whaled.config import Settings
from whaled.governor import GovernedOpinion
from whaled.log import alerts_logger as logger
from whaled.notify import OutboxSender
from whaled.notify import outbox as outbox_store
from whaled.store import Database
from whaled.workflows import journal
from whaled.workflows.alert import AlertSteps
from whaled.workflows.consumer import EventConsumer
from whaled.workflows.engine import BoundaryHook, WorkflowEngine

__all__ = ["AlertService"]


class AlertService:
    """Durable alert workflows from events to email and webhooks.

    :param opinion: used to enrich alerts at interactive priority; None enriches from stored rows only.
    :param clock: Unix milliseconds; tests pass a controllable one.
    :param on_boundary: called at every workflow step boundary (tests use it to crash on purpose).
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        opinion: GovernedOpinion | None,
        *,
        clock: Callable[[], int] = now_ms,
        on_boundary: BoundaryHook | None = None,
    ) -> None:
        alerts = settings.alerts
        self._db = db
        self._settings = settings
        self._clock = clock
        self.engine = WorkflowEngine(
            db,
            max_concurrent=alerts.max_concurrent_workflows,
            poll_interval_s=alerts.poll_interval_s,
            clock=clock,
            on_boundary=on_boundary,
        )
        self.sender = OutboxSender(db, settings.smtp, alerts, clock=clock)
        # The deliver step waits for one attempt: a connect plus a full SMTP exchange, bounded.
        deliver_wait_s = min(settings.smtp.connect_timeout_s + 2 * settings.smtp.command_timeout_s, 120.0)
        self.steps = AlertSteps(settings, opinion, self.sender, clock, deliver_wait_s=deliver_wait_s)
        self.engine.register(self.steps.definition())
        self.consumer = EventConsumer(db, self.engine, settings, clock=clock)
        self._started = False

    async def start(self) -> None:
        """Settle interrupted sends, resume unfinished workflows, then start consuming events.

        The database must already be open (``Database.open`` applies the migrations).
        """
        await self.sender.start()
        resumed = await self.engine.resume_unfinished()
        self.engine.start_scanner()
        if self._settings.alerts.enabled:
            await self.consumer.start()
        self._started = True
        logger.info(
            "Alert service started: %d workflows resumed, consumer %s, %d recipients, %d webhooks",
            resumed, "on" if self._settings.alerts.enabled else "off",
            len(self._settings.alerts.recipients), len(self._settings.alerts.webhook_urls),
        )  # fmt: skip

    async def close(self) -> None:
        """Stop taking new events, let running steps finish within ``alerts.shutdown_grace_s``, stop sending.

        Steps cancelled at the deadline leave their run ``running`` with a consistent journal; the next start
        resumes them.
        """
        grace_s = self._settings.alerts.shutdown_grace_s
        await self.consumer.close()
        await self.engine.close(grace_s)
        await self.sender.close(grace_s)
        logger.info("Alert service stopped")

    async def reload(self, settings: Settings) -> None:
        """Apply reloaded rules, thresholds, recipients and webhook URLs to the workflows started from now on.

        SMTP, pacing, retry and concurrency settings are read once at startup; changing them needs a restart.
        """
        changed_at_startup = [name for name in ("smtp",) if getattr(self._settings, name) != getattr(settings, name)]
        before, after = self._settings.alerts, settings.alerts
        for key in ("max_concurrent_workflows", "poll_interval_s", "digest_threshold", "digest_window_s",
                    "max_emails_per_hour", "quiet_hours", "retry_base_s", "retry_max_s", "max_attempts",
                    "webhook_timeout_s", "webhook_secret"):  # fmt: skip
            if getattr(before, key) != getattr(after, key):
                changed_at_startup.append(f"alerts.{key}")
        if changed_at_startup:
            logger.warning("Reload: %s change only after a restart", ", ".join(changed_at_startup))
        self._settings = settings
        self.steps.settings = settings
        self.consumer.settings = settings

    async def health(self) -> dict[str, Any]:
        """Return figures for /healthz and /metrics.

        Keys: runs and deliveries by status, the runs executing now, the seconds since the least recently
        advanced running run, the seconds the oldest due delivery has waited, and the event cursor.
        """
        runs = await journal.count_by_status(self._db)
        deliveries = await outbox_store.count_by_status(self._db)
        oldest_due = await outbox_store.next_due_ms(self._db)
        lag_s = max(0.0, (self._clock() - oldest_due) / 1000) if oldest_due is not None else 0.0
        row = await self._db.fetchone("SELECT min(updated_ms) FROM workflows WHERE status = 'running'")
        idle_s = max(0.0, (self._clock() - row[0]) / 1000) if row is not None and row[0] is not None else 0.0
        return {
            "workflows": runs,
            "workflows_in_flight": self.engine.in_flight,
            # A running workflow whose journal has not moved for long is stuck.
            "workflow_longest_idle_s": idle_s,
            "outbox": deliveries,
            "outbox_oldest_due_lag_s": lag_s,
            "event_cursor": self.consumer.cursor,
        }
