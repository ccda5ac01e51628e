"""The health conditions and the stall alarm, on a real database with a controlled clock."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from whaled.config import GovernorSettings, Settings
from whaled.governor import Governor, Priority
from whaled.monitor import RECOVERED, STALL, Monitor, StallAlarm
from whaled.monitor.conditions import DAY_S, format_duration
from whaled.opinion.errors import OpinionHTTPError
from whaled.store import Database

START_MS = 1_800_000_000_000
JOBS = ("sync-markets", "sync-whale-trades", "compute-whale-stats", "cleanup-old-activity")


class Clock:
    """Unix milliseconds that change only when the test calls :meth:`advance`."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def settings(**monitor: Any) -> Settings:
    return Settings(monitor={"startup_grace_s": 0, **monitor})


async def record_run(db: Database, job: str, finished_ms: int, outcome: str = "success") -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO job_runs (job, trigger, started_ms, finished_ms, outcome) VALUES (?, 'test', ?, ?, ?)",
            (job, finished_ms - 500, finished_ms, outcome),
        )


async def succeed_all(db: Database, at_ms: int, *, skip: tuple[str, ...] = ()) -> None:
    for job in JOBS:
        if job not in skip:
            await record_run(db, job, at_ms)


async def add_delivery(db: Database, *, status: str, next_attempt_ms: int, workflow_id: int | None = None) -> int:
    async with db.transaction() as tx:
        alert = await tx.execute(
            "INSERT INTO alerts (workflow_id, rule, kind, dedupe_key, source_event_id, title, payload, created_ms) "
            "VALUES (?, 'whale_trade', 'new', ?, 1, 'a whale moved', '{}', ?)",
            (workflow_id, f"key-{next_attempt_ms}-{status}", next_attempt_ms),
        )
        cursor = await tx.execute(
            "INSERT INTO outbox (alert_id, channel, target, status, next_attempt_ms, created_ms, updated_ms) "
            "VALUES (?, 'email', 'ops@example.com', ?, ?, ?, ?)",
            (alert.lastrowid, status, next_attempt_ms, next_attempt_ms, next_attempt_ms),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def add_workflow(db: Database, *, status: str, updated_ms: int) -> int:
    async with db.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO workflows (name, version, step_names, status, input, created_ms, updated_ms) "
            "VALUES ('alert', 1, '[\"evaluate\", \"deliver\"]', ?, '{}', ?, ?)",
            (status, updated_ms, updated_ms),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def keys(problems: Any) -> set[str]:
    return {problem.key for problem in problems}


async def system_events(db: Database) -> list[tuple[str, dict[str, Any]]]:
    rows = await db.fetchall("SELECT type, payload FROM events WHERE topic = 'system' ORDER BY id")
    return [(row["type"], json.loads(row["payload"])) for row in rows]


# Jobs.


async def test_fresh_daemon_healthy_until_grace_and_bound_pass(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(startup_grace_s=300), clock=clock, cache_s=0)

    report = await monitor.check()
    assert report.healthy, report.reasons

    clock.advance(300 + 180)  # the grace plus sync-whale-trades' bound (3 x 60 s)
    assert (await monitor.check()).healthy
    clock.advance(1)
    report = await monitor.check()
    assert keys(report.problems) == {"job:sync-whale-trades"}
    assert "has not succeeded since the daemon started" in report.reasons[0]


async def test_job_stale_past_factor_times_interval(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)

    clock.advance(180)
    assert (await monitor.check()).healthy
    clock.advance(1)
    report = await monitor.check()
    assert keys(report.problems) == {"job:sync-whale-trades"}
    stale = {job.name: job for job in report.jobs}["sync-whale-trades"]
    assert stale.bound_s == 180
    assert stale.last_success_ms == START_MS
    assert "last succeeded 181 s ago" in report.reasons[0]


async def test_failed_runs_do_not_count_as_success(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)
    clock.advance(200)
    await succeed_all(db, clock.now_ms, skip=("sync-markets",))
    await record_run(db, "sync-markets", clock.now_ms, outcome="failure")

    clock.advance(701)  # 901 s after sync-markets' last success; its bound is 3 x 300 s
    await succeed_all(db, clock.now_ms, skip=("sync-markets",))
    await record_run(db, "sync-markets", clock.now_ms, outcome="timeout")
    report = await monitor.check()
    assert keys(report.problems) == {"job:sync-markets"}


async def test_daily_job_bound_counts_days(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)

    clock.advance(3 * DAY_S)
    await succeed_all(db, clock.now_ms, skip=("cleanup-old-activity",))
    assert (await monitor.check()).healthy
    clock.advance(1)
    report = await monitor.check()
    assert keys(report.problems) == {"job:cleanup-old-activity"}
    assert {job.name: job.bound_s for job in report.jobs}["cleanup-old-activity"] == 3 * DAY_S


async def test_disabled_job_is_never_stale(db: Database) -> None:
    clock = Clock()
    config = Settings(monitor={"startup_grace_s": 0}, jobs={"sync_whale_trades": {"enabled": False}})
    monitor = Monitor(db, config, clock=clock, cache_s=0)
    await succeed_all(db, START_MS, skip=("sync-whale-trades",))
    clock.advance(600)
    await succeed_all(db, clock.now_ms, skip=("sync-whale-trades",))
    assert (await monitor.check()).healthy


# The governor, the outbox, workflows and the database.


async def test_governor_paused_past_bound(db: Database) -> None:
    governor_time = [1000.0]
    governor = Governor(
        GovernorSettings(failure_threshold=1, pause_s=3600, max_tries=1), clock=lambda: governor_time[0]
    )

    async def failing() -> None:
        raise OpinionHTTPError("/market", 503, message="unavailable")

    clock = Clock()
    monitor = Monitor(
        db, settings(governor_paused_max_s=600), clock=clock, governor_snapshot=governor.snapshot, cache_s=0
    )
    await succeed_all(db, START_MS)
    try:
        with pytest.raises(OpinionHTTPError):
            await governor.call(failing, priority=Priority.markets, name="market list")
        assert governor.snapshot().state == "paused"

        report = await monitor.check()
        assert report.healthy
        assert report.governor_state == "paused"
        assert report.governor_paused_since_ms == START_MS
        clock.advance(61)
        await succeed_all(db, clock.now_ms)
        assert (await monitor.check()).healthy
        clock.advance(540)
        await succeed_all(db, clock.now_ms)
        report = await monitor.check()
        assert keys(report.problems) == {"governor"}
        assert "paused for 10 min" in report.reasons[0]
        assert "503" in report.reasons[0]

        governor_time[0] += 3601  # the pause ends; the governor probes, which is not running yet
        assert governor.snapshot().state == "probing"
        assert keys((await monitor.check()).problems) == {"governor"}
    finally:
        await governor.close()


async def test_outbox_stuck_when_due_delivery_waits_past_bound(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(outbox_stuck_s=900), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)
    await add_delivery(db, status="pending", next_attempt_ms=START_MS + 3_600_000)  # deferred: not due
    delivery = await add_delivery(db, status="pending", next_attempt_ms=START_MS - 900_000)

    report = await monitor.check()
    assert report.healthy
    assert report.outbox_due == 1
    clock.advance(1)
    report = await monitor.check()
    assert keys(report.problems) == {"outbox"}
    assert "1 deliveries are due" in report.reasons[0]

    async with db.transaction() as tx:
        await tx.execute("UPDATE outbox SET status = 'sent' WHERE id = ?", (delivery,))
    assert (await monitor.check()).healthy


async def test_delivery_left_sending_counts_as_stuck(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(outbox_stuck_s=60), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)
    await add_delivery(db, status="sending", next_attempt_ms=START_MS - 61_000)
    assert keys((await monitor.check()).problems) == {"outbox"}


async def test_workflow_without_progress_is_stuck(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(workflow_stuck_s=1800), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)
    await add_workflow(db, status="failed", updated_ms=START_MS - 7_200_000)
    stuck = await add_workflow(db, status="running", updated_ms=START_MS - 1_801_000)
    await add_workflow(db, status="pending", updated_ms=START_MS - 60_000)

    report = await monitor.check()
    assert keys(report.problems) == {"workflows"}
    assert report.workflows_stuck == 1
    assert f"workflow {stuck}" in report.reasons[0]


async def test_database_not_writable_while_a_write_hangs(db: Database) -> None:
    clock = Clock()
    monitor = Monitor(db, settings(db_write_timeout_s=0.05), clock=clock, cache_s=0)
    await succeed_all(db, START_MS)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold_write_lock() -> None:
        async with db.transaction():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_write_lock())
    try:
        async with asyncio.timeout(5):
            await holding.wait()
        report = await monitor.check()
        assert keys(report.problems) == {"database"}
        assert not report.database_writable
        assert "did not commit within 0.05 s" in report.reasons[0]
    finally:
        release.set()
        await holder
    assert (await monitor.check()).database_writable


async def test_check_within_cache_returns_same_report(db: Database) -> None:
    monitor = Monitor(db, settings(), clock=Clock(), cache_s=60)
    first = await monitor.check()
    assert await monitor.check() is first
    assert await monitor.check(fresh=True) is not first


def test_format_duration_picks_unit() -> None:
    assert format_duration(45) == "45 s"
    assert format_duration(181) == "181 s"
    assert format_duration(600) == "10 min"
    assert format_duration(5 * 3600) == "5.0 h"
    assert format_duration(3 * DAY_S) == "3.0 d"


# The stall alarm.


async def test_alarm_records_one_event_per_transition(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="whaled.monitor")
    clock = Clock()
    alarm = StallAlarm(Monitor(db, settings(), clock=clock, cache_s=0))
    await succeed_all(db, START_MS)

    await alarm.check_once()
    assert await system_events(db) == []

    clock.advance(181)
    for _ in range(3):
        await alarm.check_once()
    events = await system_events(db)
    assert [type_ for type_, _ in events] == [STALL]
    payload = events[0][1]
    assert payload["active"] == ["job:sync-whale-trades"]
    assert len(payload["reasons"]) == 1
    assert "sync-whale-trades" in payload["reasons"][0]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sync-whale-trades" in warnings[0].getMessage()

    await record_run(db, "sync-whale-trades", clock.now_ms)
    await alarm.check_once()
    await alarm.check_once()
    events = await system_events(db)
    assert [type_ for type_, _ in events] == [STALL, RECOVERED]
    assert events[1][1]["problems"][0]["key"] == "job:sync-whale-trades"
    assert events[1][1]["active"] == []
    recovered = [record for record in caplog.records if record.getMessage().startswith("Recovered")]
    assert len(recovered) == 1
    assert recovered[0].levelno == logging.INFO
    assert alarm.active == {}


async def test_alarm_announces_a_second_condition_separately(db: Database) -> None:
    clock = Clock()
    alarm = StallAlarm(Monitor(db, settings(), clock=clock, cache_s=0))
    await succeed_all(db, START_MS)
    clock.advance(181)
    await alarm.check_once()
    clock.advance(720)  # sync-markets passes its 900 s bound too
    await alarm.check_once()

    events = await system_events(db)
    assert [type_ for type_, _ in events] == [STALL, STALL]
    assert [problem["key"] for problem in events[1][1]["problems"]] == ["job:sync-markets"]
    assert events[1][1]["active"] == ["job:sync-markets", "job:sync-whale-trades"]


async def test_restarted_alarm_keeps_open_stall(db: Database) -> None:
    """A restart must neither announce an open stall again nor let the startup grace hide it."""
    clock = Clock()
    first = StallAlarm(Monitor(db, settings(startup_grace_s=300), clock=clock, cache_s=0))
    await succeed_all(db, START_MS)
    clock.advance(481)  # past the grace and the bound of sync-whale-trades
    await first.check_once()
    assert [type_ for type_, _ in await system_events(db)] == [STALL]

    clock.advance(60)
    second = StallAlarm(Monitor(db, settings(startup_grace_s=300), clock=clock, cache_s=0), interval_s=3600)
    await second.start()
    try:
        assert set(second.active) == {"job:sync-whale-trades"}
        report = await second.check_once()
        assert keys(report.problems) == {"job:sync-whale-trades"}
        assert [type_ for type_, _ in await system_events(db)] == [STALL]

        await record_run(db, "sync-whale-trades", clock.now_ms)
        await second.check_once()
        assert [type_ for type_, _ in await system_events(db)] == [STALL, RECOVERED]
    finally:
        await second.close()


async def test_alarm_task_checks_every_interval_until_closed(db: Database) -> None:
    alarm = StallAlarm(Monitor(db, settings(), clock=Clock(), cache_s=0), interval_s=0.01)
    await alarm.start()
    try:
        async with asyncio.timeout(5):
            for _ in range(3):
                alarm.checked.clear()
                await alarm.checked.wait()
    finally:
        await alarm.close()
    checks = alarm.checks
    await asyncio.sleep(0.05)
    assert alarm.checks == checks


async def test_alarm_wake_runs_a_check_at_once(db: Database) -> None:
    alarm = StallAlarm(Monitor(db, settings(), clock=Clock(), cache_s=0), interval_s=3600)
    await alarm.start()
    try:
        async with asyncio.timeout(5):
            await alarm.checked.wait()
            alarm.checked.clear()
            alarm.wake()
            await alarm.checked.wait()
        assert alarm.checks == 2
    finally:
        await alarm.close()


async def test_alarm_reload_applies_new_bounds(db: Database) -> None:
    clock = Clock()
    alarm = StallAlarm(Monitor(db, settings(), clock=clock, cache_s=0))
    await succeed_all(db, START_MS)
    clock.advance(181)
    assert keys((await alarm.check_once()).problems) == {"job:sync-whale-trades"}

    await alarm.reload(settings(job_stale_factor=5))
    report = await alarm.check_once()
    assert report.healthy
    assert {job.name: job.bound_s for job in report.jobs}["sync-whale-trades"] == 300
    assert [type_ for type_, _ in await system_events(db)] == [STALL, RECOVERED]
