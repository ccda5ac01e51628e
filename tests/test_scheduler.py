"""The scheduler fires real runs on its triggers, and records runs it could not start."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import time_machine

from whaled.config import Settings
from whaled.jobs import JobRunner, Scheduler
from whaled.jobs.runner import JOBS


def only(settings: Settings, name: str, **job: float) -> Settings:
    """Settings with every job but ``name`` disabled and ``name`` given the ``job`` schedule."""
    jobs = {definition.settings_key: {"enabled": False} for definition in JOBS.values()}
    key = JOBS[name].settings_key
    jobs[key] = {"enabled": True, **job}
    return Settings(**{**settings.model_dump(mode="json", exclude={"jobs"}), "jobs": jobs})


async def job_events(runner: JobRunner) -> list[dict[str, object]]:
    rows = await runner.db.fetchall("SELECT payload FROM events WHERE type = 'job.run' ORDER BY id")
    return [json.loads(row["payload"]) for row in rows]


async def wait_for_events(runner: JobRunner, outcome: str, wanted: int) -> None:
    """Wait, on commit notifications rather than a timer, until ``wanted`` runs ended with ``outcome``."""
    async with asyncio.timeout(5):
        while len([e for e in await job_events(runner) if e["outcome"] == outcome]) < wanted:
            await runner.db.events.wait_beyond(runner.db.events.last_id, timeout_s=1.0)


async def test_scheduler_fires_repeatedly(job_runner: JobRunner, make_settings: Callable[..., Settings]) -> None:
    settings = only(make_settings(), "sync-whale-trades", interval_s=0.2, timeout_s=0.15, misfire_grace_s=1)
    job_runner.settings = settings
    scheduler = Scheduler(job_runner, settings)
    scheduler.start()
    try:
        await wait_for_events(job_runner, "success", 3)
    finally:
        await scheduler.shutdown()
        await job_runner.cancel_running(1.0)
    events = await job_events(job_runner)
    assert {event["job"] for event in events} == {"sync-whale-trades"}
    assert all(event["trigger"] == "schedule" for event in events)


async def test_scheduler_records_missed_run(job_runner: JobRunner, make_settings: Callable[..., Settings]) -> None:
    settings = only(make_settings(), "sync-markets", interval_s=60, timeout_s=50, misfire_grace_s=5)
    start = datetime(2026, 12, 4, 12, 0, 10, tzinfo=UTC)
    with time_machine.travel(start, tick=True) as traveller:
        scheduler = Scheduler(job_runner, settings)
        scheduler.start()
        try:
            # The 12:01:00 run is due; jump past it by more than its grace, then wake the scheduler.
            traveller.move_to(start + timedelta(seconds=50 + 20))
            scheduler._scheduler.wakeup()
            await wait_for_events(job_runner, "missed", 1)
        finally:
            await scheduler.shutdown()
            await job_runner.cancel_running(1.0)
    missed = [event for event in await job_events(job_runner) if event["outcome"] == "missed"]
    assert len(missed) == 1
    assert missed[0]["job"] == "sync-markets"
    assert job_runner.counters[("sync-markets", "missed")] == 1
    row = await job_runner.db.fetchone("SELECT error, scheduled_ms FROM job_runs WHERE outcome = 'missed'")
    assert row is not None
    assert "misfire grace" in row["error"]
    assert row["scheduled_ms"] == int(datetime(2026, 12, 4, 12, 1, tzinfo=UTC).timestamp() * 1000)
