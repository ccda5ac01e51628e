"""The governor's parts on their own: token bucket, pause state, wait queue, retry rules and histogram."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from datetime import UTC, datetime

import pytest

from whaled.config import GovernorSettings
from whaled.governor.bucket import PauseState, TokenBucket
from whaled.governor.priority import Priority
from whaled.governor.queue import Grant, Waiter, WaitQueue
from whaled.governor.retry import RetryDelays, is_retryable, parse_retry_after, rate_limit_wait_s
from whaled.governor.stats import WaitHistogram
from whaled.opinion import (
    OpinionAPIError,
    OpinionConnectionError,
    OpinionError,
    OpinionHTTPError,
    OpinionPayloadError,
    OpinionTimeoutError,
)

# Token bucket


def test_bucket_starts_full_then_paces_at_rate() -> None:
    bucket = TokenBucket(rate_per_s=4, burst=2, now=0.0)
    assert bucket.take(0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.ready_at(0.0) == pytest.approx(0.25)
    assert not bucket.take(0.2)
    assert bucket.take(0.25)
    assert bucket.tokens(10.0) == 2.0


def test_bucket_window_bound() -> None:
    rate, burst = 12.0, 3
    bucket = TokenBucket(rate, burst, now=0.0)
    sent: list[float] = []
    now = 0.0
    # The max sends in a one-second window that includes both ends: a full bucket, then the rate.
    while now < 10.0:
        if bucket.take(now):
            sent.append(now)
        else:
            now = bucket.ready_at(now)
    window: deque[float] = deque()
    max_in_window = 0
    for at in sent:
        window.append(at)
        while window[0] <= at - 1.0:
            window.popleft()
        max_in_window = max(max_in_window, len(window))
    assert max_in_window == burst + rate
    assert len(sent) == pytest.approx(burst + rate * 10, abs=1)


def test_bucket_hold_empties_and_resumes_at_until() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now=0.0)
    bucket.hold(0.0, 7.0)
    assert bucket.tokens(3.0) == 0.0
    assert bucket.ready_at(3.0) == pytest.approx(7.0)
    assert not bucket.take(6.99)
    assert bucket.take(7.0)
    assert not bucket.take(7.0)
    assert bucket.ready_at(7.0) == pytest.approx(7.1)


def test_bucket_short_hold_keeps_no_old_credit() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now=0.0)
    bucket.hold(100.0, 100.05)
    assert bucket.tokens(100.05) == pytest.approx(0.5)
    assert bucket.ready_at(100.0) == pytest.approx(100.1)


def test_bucket_refund_caps_at_burst() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=2, now=0.0)
    assert bucket.take(0.0)
    bucket.refund(0.0)
    bucket.refund(0.0)
    assert bucket.tokens(0.0) == 2.0


def test_bucket_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate_per_s > 0 and burst >= 1"):
        TokenBucket(rate_per_s=0, burst=1, now=0.0)


def test_default_settings_stay_under_opinion_limit() -> None:
    settings = GovernorSettings()
    assert settings.burst + settings.rate_per_s <= 15


# Pause state


def test_pause_state_trips_after_threshold_and_probes() -> None:
    pauses = PauseState(failure_threshold=2, pause_s=30)
    assert pauses.record(0.0, "transient", False, "timeout") == ""
    assert pauses.record(0.0, "transient", False, "timeout") == "paused"
    assert pauses.state(29.9) == "paused"
    assert pauses.reason == "2 consecutive failures, the last timeout"
    assert pauses.state(30.0) == "probing"
    assert pauses.take_grant() is True
    assert not pauses.may_grant()
    assert pauses.record(30.5, "answered", True, "") == "resumed"
    assert pauses.state(30.5) == "running"
    assert pauses.take_grant() is False
    assert pauses.counts == {"rate_limited": 0, "failures": 1}


def test_pause_state_success_resets_count() -> None:
    pauses = PauseState(failure_threshold=2, pause_s=30)
    pauses.record(0.0, "transient", False, "timeout")
    pauses.record(0.0, "ok", False, "")
    assert pauses.record(0.0, "transient", False, "timeout") == ""
    assert pauses.record(0.0, "neutral", False, "") == ""
    assert pauses.failures == 1


def test_pause_state_cancelled_probe_allows_another() -> None:
    pauses = PauseState(failure_threshold=1, pause_s=5)
    pauses.record(0.0, "transient", False, "reset")
    assert pauses.take_grant()
    pauses.return_grant(probe=True)
    assert pauses.may_grant()
    assert pauses.state(6.0) == "probing"


def test_pause_extension_counts_once() -> None:
    pauses = PauseState(failure_threshold=10, pause_s=5)
    assert pauses.pause(0.0, 7.0, "rate_limited", "first 429")
    assert not pauses.pause(0.1, 7.1, "rate_limited", "second 429")
    assert not pauses.pause(0.2, 3.0, "rate_limited", "shorter")
    assert pauses.counts["rate_limited"] == 1
    assert pauses.paused_until == 7.1
    assert pauses.reason == "second 429"


# Wait queue


def _waiter(loop: asyncio.AbstractEventLoop, name: str, priority: Priority, deadline_at: float = 100.0) -> Waiter:
    future: asyncio.Future[Grant] = loop.create_future()
    return Waiter(name, priority, 1, 0.0, 0.0, deadline_at, future)


async def test_queue_orders_by_priority_then_arrival() -> None:
    loop = asyncio.get_running_loop()
    queue = WaitQueue()
    for name, priority in [("a", Priority.backfill), ("b", Priority.trades), ("c", Priority.backfill)]:
        queue.push(_waiter(loop, name, priority))
    queue.push(_waiter(loop, "d", Priority.interactive))
    assert queue.depth()[Priority.backfill] == 2
    order = []
    while (waiter := queue.pop()) is not None:
        order.append(waiter.name)
    assert order == ["d", "b", "a", "c"]
    assert len(queue) == 0


async def test_queue_expires_by_deadline_and_skips_removed() -> None:
    loop = asyncio.get_running_loop()
    queue = WaitQueue()
    early = _waiter(loop, "early", Priority.stats, deadline_at=5.0)
    removed = _waiter(loop, "removed", Priority.stats, deadline_at=1.0)
    late = _waiter(loop, "late", Priority.trades, deadline_at=9.0)
    for waiter in (early, removed, late):
        queue.push(waiter)
    assert queue.remove(removed)
    assert not queue.remove(removed)
    assert queue.next_deadline() == 5.0
    assert [waiter.name for waiter in queue.pop_expired(5.0)] == ["early"]
    assert queue.next_deadline() == 9.0
    assert queue.pop() is late
    assert queue.next_deadline() is None


async def test_queue_heap_compacts_after_many_removals() -> None:
    loop = asyncio.get_running_loop()
    queue = WaitQueue()
    keep = _waiter(loop, "keep", Priority.markets, deadline_at=50.0)
    queue.push(keep)
    for number in range(200):
        waiter = _waiter(loop, f"w{number}", Priority.backfill, deadline_at=float(number))
        queue.push(waiter)
        queue.remove(waiter)
    assert len(queue._deadlines) <= 2 * len(queue) + 32
    assert queue.next_deadline() == 50.0
    assert [waiter.name for waiter in queue.drain()] == ["keep"]


# Retry rules


def _http(status: int, retry_after: str | None = None) -> OpinionHTTPError:
    return OpinionHTTPError("/market", status, retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (_http(429), False, True),
        (_http(500), True, True),
        (_http(503), False, False),
        (_http(400), True, False),
        (_http(401), True, False),
        (_http(404), True, False),
        (OpinionAPIError("/market", 200, 503, "busy"), True, True),
        (OpinionAPIError("/market", 200, 400, "bad params"), True, False),
        (OpinionConnectionError("/market", "reset"), True, True),
        (OpinionConnectionError("/market", "reset"), False, False),
        (OpinionConnectionError("/market", "refused", before_send=True), False, True),
        (OpinionTimeoutError("/market", "read timed out"), True, True),
        (OpinionTimeoutError("/market", "read timed out"), False, False),
        (OpinionPayloadError("/market", "not JSON"), True, False),
        (OpinionError("/market", "other"), True, False),
        (ValueError("a bug"), True, False),
    ],
)
def test_is_retryable(error: BaseException, idempotent: bool, expected: bool) -> None:
    assert is_retryable(error, idempotent=idempotent) is expected


NOW = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Mon, 05 Jan 2026 12:00:07 GMT", 7.0),
        ("Mon, 05 Jan 2026 11:59:00 GMT", 0.0),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_rate_limit_wait_only_for_429() -> None:
    assert rate_limit_wait_s(_http(429, "3"), NOW) == 3.0
    assert rate_limit_wait_s(_http(503, "3"), NOW) is None
    assert rate_limit_wait_s(_http(429), NOW) is None


def test_retry_delays_double_up_to_cap() -> None:
    delays = RetryDelays(0.5, 3.0, jitter=lambda delay: delay)
    assert [delays.next_delay_s() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_delays_full_jitter_stays_in_range() -> None:
    delays = RetryDelays(1.0, 8.0)
    drawn = [delays.next_delay_s() for _ in range(6)]
    bounds = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(0.0 <= value <= bound for value, bound in zip(drawn, bounds, strict=True))


# Histogram


def test_wait_histogram_is_cumulative() -> None:
    histogram = WaitHistogram(bounds_s=(0.1, 1.0))
    for wait_s in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(wait_s)
    assert histogram.cumulative() == ((0.1, 2), (1.0, 3), (math.inf, 4))
    assert histogram.sum_s == pytest.approx(3.65)
    assert histogram.count == 4


def test_bucket_late_take_keeps_no_credit() -> None:
    """A take that wakes late must not let the next request follow sooner than 1/rate."""
    bucket = TokenBucket(rate_per_s=10, burst=1, now=0.0)
    assert bucket.take(0.0)
    assert bucket.take(0.13)
    assert bucket.ready_at(0.13) == pytest.approx(0.23)
