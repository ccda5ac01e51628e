"""The stall alarm: one owned task that checks the health conditions every ``monitor.check_interval_s`` and
makes each change loud.

When a condition starts it appends a ``system.stall`` event (topic ``system``) and logs a WARNING; when it
clears it appends ``system.recovered`` and logs at INFO. Each transition gives one event, not one per check,
because the alarm remembers which conditions it has announced. At start it rebuilds that set from the stored
``system`` events, so a restart neither repeats a stall nor hides one behind the startup grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from typing import Any

from whaled.config import Settings
from whaled.log import monitor_logger
from whaled.monitor.conditions import HealthReport, Problem
from whaled.monitor.monitor import Monitor
from whaled.store import StoreError

__all__ = ["EVENT_TOPIC", "RECOVERED", "STALL", "StallAlarm"]

logger = monitor_logger

EVENT_TOPIC = "system"
STALL = "system.stall"
RECOVERED = "system.recovered"
# How many of the newest system events the alarm replays at start to learn which stalls are still open.
_RESTORE_EVENTS = 500


class StallAlarm:
    """Runs :meth:`check_once` every ``monitor.check_interval_s`` until :meth:`close`.

    :param interval_s: overrides the configured interval (tests use a short one).
    """

    def __init__(self, monitor: Monitor, *, interval_s: float | None = None) -> None:
        self.monitor = monitor
        self._interval_s = interval_s
        self._announced: dict[str, Problem] = {}
        self._logged: dict[str, Problem] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.checks = 0
        # Set after every check. A caller that waits for the next check clears it first.
        self.checked = asyncio.Event()

    @property
    def active(self) -> dict[str, Problem]:
        """The conditions announced by a ``system.stall`` event and not yet recovered, by key."""
        return dict(self._announced)

    @property
    def interval_s(self) -> float:
        return self._interval_s if self._interval_s is not None else self.monitor.settings.monitor.check_interval_s

    async def start(self) -> None:
        """Restore the open stalls from the events table and start the checking task."""
        await self._restore()
        self._task = asyncio.create_task(self._run_forever(), name="whaled-stall-alarm")
        logger.info(
            "Stall alarm started: a check every %g s, %d open conditions restored",
            self.interval_s,
            len(self._announced),
        )

    async def reload(self, settings: Settings) -> None:
        """Apply a reloaded configuration: new bounds and interval from the next check on."""
        self.monitor.apply_settings(settings)
        self.wake()

    def wake(self) -> None:
        """Run the next check now instead of at the end of the interval."""
        self._wake.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logger.info("Stall alarm stopped after %d checks, %d conditions open", self.checks, len(self._announced))

    async def _run_forever(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Stall alarm check failed; the next one runs in %g s", self.interval_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def check_once(self) -> HealthReport:
        """Check every condition, log what started or cleared, and append one event per change."""
        report = await self.monitor.check(fresh=True)
        self.checks += 1
        current = {problem.key: problem for problem in report.problems}
        self._log_changes(current)
        await self._announce_changes(current)
        self.checked.set()
        return report

    def _log_changes(self, current: dict[str, Problem]) -> None:
        for key, problem in current.items():
            if key not in self._logged:
                logger.warning("Stall: %s", problem.message)
        for key, problem in self._logged.items():
            if key not in current:
                logger.info("Recovered: condition %s cleared (was: %s)", key, problem.message)
        self._logged = current

    async def _announce_changes(self, current: dict[str, Problem]) -> None:
        started = [problem for key, problem in current.items() if key not in self._announced]
        cleared = [problem for key, problem in self._announced.items() if key not in current]
        if not started and not cleared:
            return
        try:
            async with self.monitor.db.transaction() as tx:
                if started:
                    await tx.append_event(EVENT_TOPIC, STALL, _payload(started, current))
                if cleared:
                    await tx.append_event(EVENT_TOPIC, RECOVERED, _payload(cleared, current))
        except (sqlite3.Error, StoreError, OSError) as exc:
            # The log lines above already went out; the events follow once the database takes writes again.
            logger.warning(
                "Stall alarm cannot record %d changes as events, retrying next check: %s",
                len(started) + len(cleared),
                exc,
            )
            return
        self._announced = dict(current)

    async def _restore(self) -> None:
        rows = await self.monitor.db.fetchall(
            "SELECT type, payload FROM events WHERE topic = ? ORDER BY id DESC LIMIT ?", (EVENT_TOPIC, _RESTORE_EVENTS)
        )
        open_conditions: dict[str, Problem] = {}
        for row in reversed(rows):
            for problem in _problems_of(row["payload"]):
                if row["type"] == STALL:
                    open_conditions[problem.key] = problem
                elif row["type"] == RECOVERED:
                    open_conditions.pop(problem.key, None)
        self._announced = open_conditions
        self._logged = dict(open_conditions)
        self.monitor.drop_grace(key.removeprefix("job:") for key in open_conditions if key.startswith("job:"))


def _payload(changed: list[Problem], current: dict[str, Problem]) -> dict[str, Any]:
    return {
        "reasons": [problem.message for problem in changed],
        "problems": [problem.to_json() for problem in changed],
        "active": sorted(current),
    }


def _problems_of(payload: str) -> list[Problem]:
    try:
        data = json.loads(payload)
        return [Problem.from_json(item) for item in data.get("problems", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
