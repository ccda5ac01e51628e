"""The API governor against a real aiohttp server on 127.0.0.1, driven by a virtual clock where time matters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import time_machine

from tests.fixtures.governor import (
    API_KEY,
    OpinionStub,
    Reply,
    VirtualClock,
    eventually,
    price_request,
    settle,
    submit,
)
from whaled.errors import WhaledError
from whaled.governor import Governor, GovernorClosedError, GovernorDeadlineError, Priority
from whaled.opinion import (
    LatestPrice,
    OpinionAPIError,
    OpinionClient,
    OpinionConnectionError,
    OpinionError,
    OpinionHTTPError,
    OpinionPayloadError,
)

MakeGovernor = Callable[..., Governor]


def recording_request(
    client: OpinionClient, token: int, started: list[tuple[str, float]], clock: VirtualClock
) -> Callable[[], Any]:
    async def request() -> LatestPrice:
        started.append((str(token), clock()))
        return await client.latest_price(str(token))

    return request


async def finish(*tasks: asyncio.Task[Any]) -> list[Any]:
    async with asyncio.timeout(5):
        return await asyncio.gather(*tasks, return_exceptions=True)


def governor_tasks() -> list[str]:
    return sorted(
        task.get_name() for task in asyncio.all_tasks() if task.get_name().startswith(("whaled-governor", "governor-"))
    )


# Priority and pacing


async def test_interactive_overtakes_500_queued_backfill(
    make_governor: MakeGovernor, stub_client: OpinionClient, governor_clock: VirtualClock
) -> None:
    governor = make_governor(rate_per_s=12, burst=3, max_in_flight=8)
    started: list[tuple[str, float]] = []
    backlog = [
        asyncio.create_task(
            governor.call(recording_request(stub_client, n, started, governor_clock), priority=Priority.backfill)
        )
        for n in range(1, 501)
    ]
    await governor_clock.quiesce()
    assert len(started) == 3  # the burst
    await governor_clock.step_to(governor_clock.now + 1.0, 1 / 48)
    await governor_clock.quiesce()
    assert len(started) == 15
    assert governor.snapshot().queue_depth["backfill"] == 485

    submitted_at = governor_clock.now
    urgent = asyncio.create_task(
        governor.call(recording_request(stub_client, 9999, started, governor_clock), priority=Priority.interactive)
    )
    before = len(started)
    for _ in range(20):
        if len(started) > before:
            break
        await governor_clock.advance(1 / 48)

    token, started_at = started[before]
    assert token == "9999"
    assert started_at - submitted_at <= 1 / 12 + 1e-9
    result = (await finish(urgent))[0]
    assert result.token_id == "9999", result
    for task in backlog:
        task.cancel()
    await finish(*backlog)


async def test_interactive_waits_only_for_in_flight_slot(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=12, burst=3, max_in_flight=2)
    release_first, release_second = asyncio.Event(), asyncio.Event()
    governor_stub.script = [Reply(hold=release_first), Reply(hold=release_second)]
    backlog = [submit(governor, stub_client, n, Priority.backfill) for n in range(1, 501)]
    await governor_stub.wait_for_arrivals(2)
    urgent = submit(governor, stub_client, 9999, Priority.interactive)
    await governor_clock.step_to(governor_clock.now + 1.0, 1 / 24)
    assert governor_stub.tokens == ["1", "2"]

    release_first.set()
    await governor_stub.wait_for_arrivals(3)
    assert governor_stub.tokens == ["1", "2", "9999"]
    await finish(urgent)
    release_second.set()
    for task in backlog:
        task.cancel()
    await finish(*backlog)


async def test_priority_strict_across_classes_fifo_within(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=10, burst=1)
    first = submit(governor, stub_client, 1, Priority.interactive)
    await finish(first)
    plan = [
        (10, Priority.backfill),
        (11, Priority.stats),
        (12, Priority.trades),
        (13, Priority.backfill),
        (14, Priority.interactive),
        (15, Priority.trades),
        (16, Priority.markets),
    ]
    tasks = [submit(governor, stub_client, token, priority) for token, priority in plan]
    await settle()
    assert governor.snapshot().queue_depth == {
        "interactive": 1,
        "trades": 2,
        "markets": 1,
        "stats": 1,
        "backfill": 2,
    }
    for _ in range(len(plan)):
        await governor_clock.advance(0.1)

    assert governor_stub.tokens == ["1", "14", "12", "15", "16", "11", "10", "13"]
    await finish(*tasks)


# HTTP 429 and Retry-After


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_pauses_every_caller(
    form: str,
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=12, burst=3)
    wall = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    header = "7" if form == "seconds" else format_datetime(wall + timedelta(seconds=7), usegmt=True)
    rejected = Reply(429, {"Retry-After": header}, {"errno": 429, "errmsg": "too many requests"})
    governor_stub.script = [rejected]
    paused_at = governor_clock.now
    with time_machine.travel(wall, tick=False):
        limited = submit(governor, stub_client, 1, Priority.markets)
        await eventually(lambda: governor.snapshot().state == "paused")
        others = [
            submit(governor, stub_client, 2, Priority.backfill),
            submit(governor, stub_client, 3, Priority.trades),
            submit(governor, stub_client, 4, Priority.interactive),
            submit(governor, stub_client, 5, Priority.stats),
        ]
        await governor_clock.step_to(paused_at + 6.99, 0.25)
        await governor_clock.quiesce()
        snapshot = governor.snapshot()
        assert governor_stub.tokens == ["1"]
        assert snapshot.state == "paused"
        assert f"HTTP 429 on /token/latest-price with Retry-After {header!r}" in snapshot.state_reason
        assert snapshot.pauses == {"rate_limited": 1, "failures": 0}
        assert snapshot.pause_remaining_s == pytest.approx(0.01)

        while len(governor_stub.arrivals) < 6:
            await governor_clock.advance(1 / 48)
            assert governor_clock.now < paused_at + 8

    resumed = governor_stub.arrivals[1:]
    assert [arrival.token for arrival in resumed] == ["4", "3", "1", "5", "2"]
    assert resumed[0].at == pytest.approx(paused_at + 7.0)
    assert all(arrival.at >= paused_at + 7.0 for arrival in resumed)
    results = await finish(limited, *others)
    assert [result.token_id for result in results] == ["1", "2", "3", "4", "5"]
    assert governor.snapshot().state == "running"


async def test_retry_waits_longer_backoff_than_retry_after(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=12, burst=3, retry_base_s=4)
    governor_stub.script = [Reply(429, {"Retry-After": "1"}, {"errno": 429, "errmsg": "slow down"})]
    start = governor_clock.now
    limited = submit(governor, stub_client, 1, Priority.interactive)
    await eventually(lambda: governor.snapshot().state == "paused")
    other = submit(governor, stub_client, 2, Priority.backfill)
    while len(governor_stub.arrivals) < 3:
        await governor_clock.advance(0.25)

    assert [(arrival.token, arrival.at - start) for arrival in governor_stub.arrivals] == [
        ("1", 0.0),
        ("2", 1.0),
        ("1", 4.0),
    ]
    await finish(limited, other)


async def test_429_without_retry_after_pauses_nobody(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=12, burst=3, retry_base_s=0.5)
    governor_stub.script = [Reply(429, {}, {"errno": 429, "errmsg": "slow down"})]
    limited = submit(governor, stub_client, 1, Priority.interactive)
    await eventually(lambda: governor_clock.sleepers == 1 and governor.snapshot().in_flight == 0)
    other = submit(governor, stub_client, 2, Priority.backfill)
    await governor_stub.wait_for_arrivals(2)
    assert governor.snapshot().state == "running"

    await governor_clock.advance(0.5)
    assert governor_stub.tokens == ["1", "2", "1"]
    await finish(limited, other)
    snapshot = governor.snapshot()
    assert snapshot.pauses == {"rate_limited": 0, "failures": 0}
    assert snapshot.retries == 1


# Retries


async def test_dropped_keepalive_connection_retried_once(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server closes a kept-alive connection when the next GET arrives on it.

    aiohttp 3.14 itself resends an idempotent request once when a reused connection fails, so the stub
    drops that resend too: only the governor's retry can then make the GET succeed.
    """
    governor = make_governor(real_time=True, retry_base_s=0.01)
    caplog.set_level(logging.INFO, logger="whaled.governor")
    warm = await governor.call(price_request(stub_client, 1), priority=Priority.trades, name="price 1")
    assert warm.token_id == "1"
    governor_stub.script = [Reply(drop=True), Reply(drop=True)]

    async with asyncio.timeout(5):
        price = await governor.call(price_request(stub_client, 2), priority=Priority.trades, name="price 2")

    assert price.token_id == "2"
    assert governor_stub.tokens == ["1", "2", "2", "2"]
    assert governor_stub.arrivals[1].peer == governor_stub.arrivals[0].peer
    snapshot = governor.snapshot()
    assert snapshot.retries == 1
    assert snapshot.outcomes["retried"] == 1
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Request price 2 attempt 1 of 5 failed with OpinionConnectionError: ")
    infos = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert infos == ["Request price 2 succeeded on attempt 2"]
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


async def test_dropped_connection_not_retried_when_not_idempotent(
    make_governor: MakeGovernor, stub_client: OpinionClient, governor_stub: OpinionStub
) -> None:
    governor = make_governor(real_time=True, retry_base_s=0.01)
    governor_stub.script = [Reply(drop=True), Reply(drop=True)]
    with pytest.raises(OpinionConnectionError):
        await governor.call(price_request(stub_client, 1), priority=Priority.trades, idempotent=False)
    assert governor_stub.tokens == ["1", "1"]
    assert governor.snapshot().retries == 0


_BAD_PRICE = {"errno": 0, "result": {"tokenId": "1", "price": "not a number"}}


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(404, body={"errno": 404, "errmsg": "not found"}), OpinionHTTPError),
        (Reply(400, body={"errno": 400, "errmsg": "bad params"}), OpinionHTTPError),
        (Reply(401, body="unauthorised"), OpinionHTTPError),
        (Reply(200, body={"errno": 400, "errmsg": "bad params"}), OpinionAPIError),
        (Reply(200, body="<html>maintenance</html>"), OpinionPayloadError),
        (Reply(200, body=_BAD_PRICE), OpinionPayloadError),
    ],
    ids=["404", "400", "401", "envelope-400", "not-json", "bad-field"],
)
async def test_non_transient_error_not_retried(
    reply: Reply,
    error: type[OpinionError],
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
) -> None:
    governor = make_governor(real_time=True, retry_base_s=0.001)
    governor_stub.script = [reply]
    with pytest.raises(error):
        await governor.call(price_request(stub_client, 1), priority=Priority.markets)
    assert governor_stub.tokens == ["1"]
    snapshot = governor.snapshot()
    assert snapshot.retries == 0
    assert snapshot.outcomes["error"] == 1
    assert snapshot.consecutive_failures == 0


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, body={"errno": 500, "errmsg": "internal"}),
        Reply(502, body="bad gateway"),
        Reply(503, body={"errno": 503, "errmsg": "unavailable"}),
        Reply(200, body={"errno": 503, "errmsg": "busy"}),
    ],
    ids=["500", "502", "503", "envelope-503"],
)
async def test_transient_error_retried(
    reply: Reply, make_governor: MakeGovernor, stub_client: OpinionClient, governor_stub: OpinionStub
) -> None:
    governor = make_governor(real_time=True, retry_base_s=0.001)
    governor_stub.script = [reply]
    price = await governor.call(price_request(stub_client, 1), priority=Priority.markets)
    assert price.token_id == "1"
    assert governor_stub.tokens == ["1", "1"]
    assert governor.snapshot().outcomes["retried"] == 1


async def test_retries_stop_at_max_tries(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    governor = make_governor(real_time=True, retry_base_s=0.001, max_tries=3)
    governor_stub.default = Reply(503, body={"errno": 503, "errmsg": "unavailable"})
    caplog.set_level(logging.WARNING, logger="whaled.governor")
    with pytest.raises(OpinionHTTPError) as raised:
        await governor.call(price_request(stub_client, 1), priority=Priority.markets, name="price 1")
    assert raised.value.status == 503
    assert governor_stub.tokens == ["1", "1", "1"]
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("Request price 1 attempt 1 of 3 failed with OpinionHTTPError: ")
    assert messages[1].startswith("Request price 1 attempt 2 of 3 failed with OpinionHTTPError: ")
    assert messages[2].startswith("Request price 1 failed on its last attempt (3): OpinionHTTPError: ")
    assert governor.snapshot().retries == 2


async def test_retries_stop_at_max_retry_time(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    governor = make_governor(retry_base_s=2, max_retry_time_s=5)
    governor_stub.default = Reply(503, body={"errno": 503, "errmsg": "unavailable"})
    caplog.set_level(logging.WARNING, logger="whaled.governor")
    call = submit(governor, stub_client, 1, Priority.markets)
    for _ in range(40):
        await governor_clock.advance(0.25)
    # Waits of 2 s and then 4 s: the second retry would start 6 s after the first attempt.
    assert [arrival.at - governor_stub.arrivals[0].at for arrival in governor_stub.arrivals] == [0.0, 2.0]
    assert isinstance((await finish(call))[0], OpinionHTTPError)
    assert (
        caplog.records[-1]
        .getMessage()
        .endswith("not retrying, because a retry in 4.00 s would pass max_retry_time_s (5 s)")
    )


# Deadlines, cancellation and closing


async def test_deadline_fails_request_instead_of_sending_late(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=1, burst=1, deadline_s=1.5)
    await finish(submit(governor, stub_client, 1, Priority.trades))
    explicit = submit(governor, stub_client, 2, Priority.backfill, deadline_s=0.5)
    first_in_line = submit(governor, stub_client, 3, Priority.trades)
    from_settings = submit(governor, stub_client, 4, Priority.stats)
    await governor_clock.step_to(governor_clock.now + 0.75, 0.25)

    with pytest.raises(GovernorDeadlineError) as raised:
        await finish(explicit)
        explicit.result()
    error = raised.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, WhaledError)
    assert str(error).startswith(
        "Opinion request 'price 2' (priority backfill) waited 0.5 s, past its deadline of 0.5 s, and was not sent"
    )
    for _ in range(8):
        await governor_clock.advance(0.25)
    assert isinstance((await finish(from_settings))[0], GovernorDeadlineError)
    assert governor_stub.tokens == ["1", "3"]
    assert governor.snapshot().outcomes["deadline"] == 2
    await finish(first_in_line)


async def test_cancelled_waiters_leave_no_trace(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=1, burst=2)
    await finish(submit(governor, stub_client, 1, Priority.trades))
    await finish(submit(governor, stub_client, 2, Priority.trades))
    waiting = [submit(governor, stub_client, n, Priority(n % 5)) for n in range(10, 30)]
    await settle()
    assert governor.snapshot().queued == 20
    assert governor.snapshot().tokens == 0.0

    for task in waiting:
        task.cancel()
    results = await finish(*waiting)
    await settle()

    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    snapshot = governor.snapshot()
    assert snapshot.queued == 0
    assert len(governor._queue) == 0
    assert snapshot.outcomes["cancelled"] == 20
    assert governor_tasks() == ["whaled-governor-dispatcher"]
    await governor_clock.advance(2.0)
    assert governor.snapshot().tokens == 2.0
    await governor.close()
    assert governor_tasks() == []
    assert governor_stub.tokens == ["1", "2"]


async def test_close_fails_waiters_and_later_calls(
    make_governor: MakeGovernor, stub_client: OpinionClient, governor_stub: OpinionStub
) -> None:
    governor = make_governor(rate_per_s=1, burst=1)
    await finish(submit(governor, stub_client, 1, Priority.trades))
    waiting = [submit(governor, stub_client, n, Priority.markets) for n in (2, 3)]
    await settle()

    await governor.close()

    results = await finish(*waiting)
    assert all(isinstance(result, GovernorClosedError) for result in results)
    assert "'price 2' was not sent because the governor is closed" in str(results[0])
    with pytest.raises(GovernorClosedError):
        await governor.call(price_request(stub_client, 4), priority=Priority.interactive)
    assert governor_tasks() == []
    assert governor_stub.tokens == ["1"]
    assert governor.snapshot().outcomes["cancelled"] == 3


# The failure pause


async def test_failures_pause_then_probe_resumes(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    governor = make_governor(failure_threshold=3, pause_s=30, max_tries=1)
    caplog.set_level(logging.INFO, logger="whaled.governor")
    governor_stub.default = Reply(503, body={"errno": 503, "errmsg": "unavailable"})
    failed = [submit(governor, stub_client, n, Priority.markets) for n in (1, 2, 3)]
    await finish(*failed)
    start = governor_clock.now

    snapshot = governor.snapshot()
    assert snapshot.state == "paused"
    assert snapshot.state_reason.startswith("3 consecutive failures, the last OpinionHTTPError: ")
    assert snapshot.pauses == {"rate_limited": 0, "failures": 1}
    assert "Governor paused for 30.0 s after 3 consecutive failures" in caplog.text

    governor_stub.default = Reply()
    release_probe = asyncio.Event()
    governor_stub.script = [Reply(hold=release_probe)]
    waiting = [
        submit(governor, stub_client, 10, Priority.backfill),
        submit(governor, stub_client, 11, Priority.trades),
        submit(governor, stub_client, 12, Priority.stats),
    ]
    await governor_clock.step_to(start + 29.9, 1.0)
    await governor_clock.quiesce()
    assert governor_stub.tokens == ["1", "2", "3"]

    await governor_clock.advance(0.1)
    await governor_stub.wait_for_arrivals(4)
    await governor_clock.advance(1.0)
    assert governor_stub.tokens == ["1", "2", "3", "11"]
    assert governor.snapshot().state == "probing"

    release_probe.set()
    await governor_stub.wait_for_arrivals(6)
    assert governor_stub.tokens[4:] == ["12", "10"]
    assert governor.snapshot().state == "running"
    assert "Governor resumed: the probe request received a response from Opinion" in caplog.text
    await finish(*waiting)


async def test_failed_probe_pauses_again(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(failure_threshold=2, pause_s=10, max_tries=1)
    governor_stub.default = Reply(503, body={"errno": 503, "errmsg": "unavailable"})
    await finish(*(submit(governor, stub_client, n, Priority.markets) for n in (1, 2)))
    waiting = [submit(governor, stub_client, n, Priority.markets) for n in (3, 4)]
    await governor_clock.step_to(governor_clock.now + 10, 1.0)
    await governor_clock.quiesce()

    snapshot = governor.snapshot()
    assert governor_stub.tokens == ["1", "2", "3"]
    assert snapshot.state == "paused"
    assert snapshot.pauses == {"rate_limited": 0, "failures": 2}
    assert snapshot.pause_remaining_s == pytest.approx(10.0)
    for task in waiting:
        task.cancel()
    await finish(*waiting)


async def test_client_errors_do_not_pause(
    make_governor: MakeGovernor, stub_client: OpinionClient, governor_stub: OpinionStub
) -> None:
    governor = make_governor(real_time=True, failure_threshold=2, max_tries=1)
    governor_stub.default = Reply(404, body={"errno": 404, "errmsg": "not found"})
    await finish(*(submit(governor, stub_client, n, Priority.markets) for n in (1, 2, 3)))
    assert governor.snapshot().state == "running"


# Figures


async def test_snapshot_reports_figures(
    make_governor: MakeGovernor,
    stub_client: OpinionClient,
    governor_stub: OpinionStub,
    governor_clock: VirtualClock,
) -> None:
    governor = make_governor(rate_per_s=4, burst=2, max_in_flight=3)
    tasks = [submit(governor, stub_client, n, Priority.stats) for n in range(1, 5)]
    await governor_clock.quiesce()
    snapshot = governor.snapshot()
    assert (snapshot.rate_per_s, snapshot.burst, snapshot.max_in_flight) == (4, 2, 3)
    assert snapshot.tokens == 0.0
    assert snapshot.queue_depth["stats"] == 2
    assert snapshot.queued == 2

    await governor_clock.advance(0.25)
    await governor_clock.advance(0.25)
    await governor_clock.advance(0.25)
    await finish(*tasks)
    snapshot = governor.snapshot()
    assert snapshot.tokens == pytest.approx(0.25 * 4)
    assert snapshot.outcomes == {"ok": 4, "retried": 0, "error": 0, "deadline": 0, "cancelled": 0}
    assert snapshot.wait_count == 4
    assert snapshot.wait_sum_s == pytest.approx(0.25 + 0.5)
    buckets = dict(snapshot.wait_buckets)
    assert buckets[0.01] == 2
    assert buckets[0.25] == 3
    assert buckets[0.5] == 4
    assert buckets[float("inf")] == 4
    assert snapshot.state == "running"
    assert snapshot.paused_until is None


async def test_snapshot_json_while_paused(
    make_governor: MakeGovernor, stub_client: OpinionClient, governor_stub: OpinionStub
) -> None:
    governor = make_governor()
    governor_stub.script = [Reply(429, {"Retry-After": "30"}, {"errno": 429, "errmsg": "slow down"})]
    with time_machine.travel(datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC), tick=False):
        call = submit(governor, stub_client, 1, Priority.trades)
        await eventually(lambda: governor.snapshot().state == "paused")
        data = governor.snapshot().to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["state"] == "paused"
    assert data["paused_until"] == "2026-01-05T12:00:30+00:00"
    assert data["pause_remaining_s"] == 30.0
    assert data["tokens"] == 0.0
    assert data["wait_buckets"][-1] == {"le": "+Inf", "count": 1}
    assert data["queued"] == 0
    call.cancel()
    await finish(call)
