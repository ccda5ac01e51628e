"""The event consumer: reads ``events`` after a cursor stored in the database and starts alert workflows.

For each batch, the workflows and the new cursor commit in one transaction. Each workflow's idempotency key is
``alert:<event id>:<rule>``, so even a batch read twice never starts a workflow twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from whaled.clock import now_ms
from whaled.config import Settings
from whaled.log import alerts_logger as logger
from whaled.store import Database, Transaction, read_events_after
from whaled.workflows.alert import ALERT_WORKFLOW
from whaled.workflows.engine import WorkflowEngine
from whaled.workflows.rules import rules_for_event

__all__ = ["CONSUMER_NAME", "EventConsumer", "alert_key", "read_cursor", "write_cursor"]

CONSUMER_NAME = "alerts"


def alert_key(event_id: int, rule: str) -> str:
    return f"alert:{event_id}:{rule}"


async def read_cursor(db: Database, name: str) -> int | None:
    row = await db.fetchone("SELECT last_event_id FROM event_cursors WHERE name = ?", (name,))
    return None if row is None else int(row[0])


async def write_cursor(tx: Transaction, name: str, last_event_id: int, now: int) -> None:
    await tx.execute(
        "INSERT INTO event_cursors (name, last_event_id, updated_ms) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET last_event_id = excluded.last_event_id, updated_ms = excluded.updated_ms",
        (name, last_event_id, now),
    )


class EventConsumer:
    """Turns events into alert workflows. On its first start it begins after the newest stored event.

    :param batch_size: events read per transaction.
    """

    def __init__(
        self,
        db: Database,
        engine: WorkflowEngine,
        settings: Settings,
        *,
        clock: Callable[[], int] = now_ms,
        batch_size: int = 200,
    ) -> None:
        self._db = db
        self._engine = engine
        self.settings = settings
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval_s = settings.alerts.poll_interval_s
        self._task: asyncio.Task[None] | None = None
        self.cursor = 0
        self.started_workflows = 0

    async def start(self) -> None:
        await self.load_cursor()
        self._task = asyncio.create_task(self._run_forever(), name="whaled.alerts.consumer")

    async def load_cursor(self) -> int:
        stored = await read_cursor(self._db, CONSUMER_NAME)
        if stored is None:
            row = await self._db.fetchone("SELECT coalesce(max(id), 0) FROM events")
            stored = int(row[0]) if row is not None else 0
            async with self._db.transaction() as tx:
                await write_cursor(tx, CONSUMER_NAME, stored, self._clock())
            logger.info("Alert consumer: first start, beginning after event %d", stored)
        self.cursor = stored
        return stored

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        logger.info("Alert consumer stopped at event %d; %d workflows started", self.cursor, self.started_workflows)

    async def _run_forever(self) -> None:
        while True:
            try:
                read = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Alert consumer failed after event %d; trying again", self.cursor)
                read = 0
                await asyncio.sleep(self._poll_interval_s)
            if read < self._batch_size:
                await self._db.events.wait_beyond(self.cursor, timeout_s=self._poll_interval_s)

    async def run_once(self) -> int:
        """Read one batch after the cursor, start its workflows and advance the cursor; return events read."""
        async with self._db.reader() as conn:
            events = await read_events_after(conn, self.cursor, limit=self._batch_size)
        if not events:
            return 0
        now = self._clock()
        created: list[int] = []
        async with self._db.transaction() as tx:
            for event in events:
                for rule in rules_for_event(self.settings, event, now):
                    input_ = {"event_id": event.id, "rule": rule}
                    workflow_id, new = await self._engine.create(
                        tx, ALERT_WORKFLOW, input_, idempotency_key=alert_key(event.id, rule)
                    )
                    if new:
                        created.append(workflow_id)
            await write_cursor(tx, CONSUMER_NAME, events[-1].id, now)
        self.cursor = events[-1].id
        self.started_workflows += len(created)
        for workflow_id in created:
            self._engine.launch(workflow_id)
        if created:
            logger.debug("Alert consumer: %d workflows from events up to %d", len(created), self.cursor)
        return len(events)
