"""Triggers fire at their documented UTC times whatever the host's time zone, across DST changes."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from whaled.config import Settings
from whaled.jobs import build_trigger, job_schedules


@pytest.fixture
def new_york_time() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def fire_times(trigger: object, start: datetime, end: datetime) -> list[datetime]:
    times: list[datetime] = []
    previous = None
    now = start
    while True:
        fire = trigger.get_next_fire_time(previous, now)  # type: ignore[attr-defined]
        if fire is None or fire > end:
            return times
        times.append(fire)
        previous, now = fire, fire + timedelta(microseconds=1)


# US daylight saving time starts 2026-03-08 07:00 UTC and ends 2026-11-01 06:00 UTC.
DST_WINDOWS = [
    (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)),
    (datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)),
]


@pytest.mark.parametrize(("start", "end"), DST_WINDOWS)
@pytest.mark.parametrize(
    ("job", "seconds"), [("sync_markets", 300), ("sync_whale_trades", 60), ("compute_whale_stats", 3600)]
)
def test_interval_triggers_keep_utc_grid(
    new_york_time: None, start: datetime, end: datetime, job: str, seconds: int
) -> None:
    trigger = build_trigger(getattr(Settings().jobs, job))
    times = fire_times(trigger, start, end)
    assert len(times) == int((end - start).total_seconds() // seconds) + 1
    for fire in times:
        assert fire.utcoffset() == timedelta(0)
        assert int(fire.timestamp()) % seconds == 0
    gaps = {later - earlier for earlier, later in itertools.pairwise(times)}
    assert gaps == {timedelta(seconds=seconds)}


@pytest.mark.parametrize(("start", "end"), DST_WINDOWS)
def test_daily_cleanup_once_per_utc_day_at_3(new_york_time: None, start: datetime, end: datetime) -> None:
    trigger = build_trigger(Settings().jobs.cleanup_old_activity)
    times = fire_times(trigger, start, end)
    assert [fire.astimezone(UTC).date() for fire in times] == [(start + timedelta(days=day)).date() for day in range(3)]
    for fire in times:
        utc = fire.astimezone(UTC)
        assert (utc.hour, utc.minute, utc.second) == (3, 0, 0)


def test_job_schedules_next_run_is_utc(new_york_time: None) -> None:
    now = datetime(2026, 11, 1, 5, 58, 30, tzinfo=UTC)
    schedules = {schedule.name: schedule for schedule in job_schedules(Settings(), now)}
    assert schedules["sync-whale-trades"].next_run == datetime(2026, 11, 1, 5, 59, tzinfo=UTC)
    assert schedules["sync-markets"].next_run == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert schedules["cleanup-old-activity"].next_run == datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
