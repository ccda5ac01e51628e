"""The API governor: one per process, and every request to Opinion goes through :meth:`Governor.call`.

A call waits in a priority queue (strict priority across classes, first in first out within one) until the
dispatcher grants it a token from the bucket and an in-flight slot. Transient failures are retried with
exponential backoff and full jitter, each retry queueing again for a token. HTTP 429 with ``Retry-After``
pauses every caller. ``failure_threshold`` consecutive transient failures pause the governor for
``pause_s``, after which one probe request decides whether to resume.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import backoff

from whaled.clock import utc_now
from whaled.config import GovernorSettings
from whaled.governor.bucket import PauseState, TokenBucket, Verdict
from whaled.governor.priority import Priority
from whaled.governor.queue import GovernorClosedError, GovernorDeadlineError, Grant, Waiter, WaitQueue
from whaled.governor.retry import RetryDelays, is_retryable, rate_limit_wait_s
from whaled.governor.stats import OUTCOMES, GovernorSnapshot, Outcome, WaitHistogram
from whaled.log import governor_logger as logger
from whaled.opinion.errors import OpinionError, OpinionHTTPError

__all__ = ["Governor"]

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class _Call:
    name: str
    priority: Priority
    idempotent: bool
    started: float
    deadline_at: float
    delays: RetryDelays
    attempt: int = 1


class Governor:
    """Pace, prioritise and retry every request to Opinion.

    :param clock: monotonic seconds; the default, ``time.monotonic``, is the clock asyncio's loop uses.
    :param sleep: the coroutine used for every wait, so that tests can drive time themselves.
    :param jitter: maps a backoff delay to the delay used; the default draws uniformly from ``[0, delay]``.
    """

    def __init__(
        self,
        settings: GovernorSettings,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[float], float] = backoff.full_jitter,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._bucket = TokenBucket(settings.rate_per_s, settings.burst, clock())
        self._queue = WaitQueue()
        self._pauses = PauseState(settings.failure_threshold, settings.pause_s)
        self._in_flight = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._waits = WaitHistogram()
        self._outcomes: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._retries = 0

    async def call(
        self,
        request: Callable[[], Awaitable[T]],
        *,
        priority: Priority,
        idempotent: bool = True,
        deadline_s: float | None = None,
        name: str = "",
    ) -> T:
        """Send ``request`` when the queue, the bucket and the in-flight cap allow, retrying transient failures.

        :param request: a zero-argument coroutine factory that sends one HTTP request with ``OpinionClient``.
        :param idempotent: False forbids retries that could repeat an effect on the server.
        :param deadline_s: the longest time, counted from this call, that any attempt may wait in the queue;
            defaults to ``settings.deadline_s``.
        :param name: names the request in logs and errors, for example the endpoint.
        :raises GovernorDeadlineError: an attempt was still queued at the deadline; it was not sent.
        :raises GovernorClosedError: the governor was closed before the attempt was sent.
        :raises OpinionError: the last failure, when it is not retryable or the retries ran out.
        """
        started = self._clock()
        limit_s = self.settings.deadline_s if deadline_s is None else deadline_s
        delays = RetryDelays(self.settings.retry_base_s, self.settings.retry_max_delay_s, jitter=self._jitter)
        job = _Call(name or "request", priority, idempotent, started, started + limit_s, delays)
        try:
            result = await self._attempts(request, job)
        except GovernorDeadlineError as exc:
            self._outcomes["deadline"] += 1
            logger.warning(
                "Request %s (%s) not sent: it waited %.1f s, past its deadline of %.1f s",
                job.name, job.priority.name, exc.waited_s, exc.deadline_s,
            )  # fmt: skip
            raise
        except (asyncio.CancelledError, GovernorClosedError):
            self._outcomes["cancelled"] += 1
            raise
        except BaseException:
            self._outcomes["error"] += 1
            raise
        self._outcomes["ok" if job.attempt == 1 else "retried"] += 1
        return result

    async def _attempts(self, request: Callable[[], Awaitable[T]], job: _Call) -> T:
        while True:
            grant = await self._acquire(job)
            try:
                result = await request()
            except BaseException as exc:
                self._settle(grant, exc)
                wait_s = self._retry_wait_s(exc, job)
                if wait_s is None:
                    raise
            else:
                self._settle(grant, None)
                if job.attempt > 1:
                    logger.info("Request %s succeeded on attempt %d", job.name, job.attempt)
                return result
            await self._sleep(wait_s)
            job.attempt += 1
            self._retries += 1

    def _retry_wait_s(self, exc: BaseException, job: _Call) -> float | None:
        """Return the wait before the next attempt, or None to give up and raise ``exc``."""
        if not is_retryable(exc, idempotent=job.idempotent):
            return None
        max_tries = self.settings.max_tries
        if job.attempt >= max_tries:
            logger.warning("Request %s failed on its last attempt (%d): %s", job.name, job.attempt, _describe(exc))
            return None
        wait_s = job.delays.next_delay_s()
        retry_after_s = rate_limit_wait_s(exc, utc_now())
        if retry_after_s is not None:
            wait_s = max(wait_s, min(retry_after_s, self.settings.retry_after_max_s))
        retry_at = self._clock() + wait_s
        if retry_at - job.started > self.settings.max_retry_time_s:
            limit = f"max_retry_time_s ({self.settings.max_retry_time_s:g} s)"
        elif retry_at >= job.deadline_at:
            limit = f"the deadline ({job.deadline_at - job.started:g} s)"
        else:
            logger.warning(
                "Request %s attempt %d of %d failed with %s; retrying in %.2f s",
                job.name, job.attempt, max_tries, _describe(exc), wait_s,
            )  # fmt: skip
            return wait_s
        logger.warning(
            "Request %s attempt %d failed with %s; not retrying, because a retry in %.2f s would pass %s",
            job.name, job.attempt, _describe(exc), wait_s, limit,
        )  # fmt: skip
        return None

    # Waiting for a grant

    async def _acquire(self, job: _Call) -> Grant:
        if self._closed:
            raise GovernorClosedError(job.name)
        self._ensure_dispatcher()
        now = self._clock()
        if now >= job.deadline_at:
            raise GovernorDeadlineError(job.name, job.priority, now - job.started, job.deadline_at - job.started)
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        waiter = Waiter(job.name, job.priority, job.attempt, now, job.started, job.deadline_at, future)
        self._queue.push(waiter)
        self._signal()
        try:
            return await future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def _abandon(self, waiter: Waiter) -> None:
        """Clean up after a caller cancelled while waiting: leave the queue, or return a grant not yet used."""
        if self._queue.remove(waiter):
            # The dispatcher may be timing the next grant or deadline for this waiter, so it recomputes.
            self._signal()
            return
        future = waiter.future
        if future.cancelled() or not future.done() or future.exception() is not None:
            return
        # The grant raced with the cancellation: the request was never sent, so return token and slot.
        self._in_flight -= 1
        self._pauses.return_grant(future.result().probe)
        self._bucket.refund(self._clock())
        self._signal()

    # After an attempt

    def _settle(self, grant: Grant, exc: BaseException | None) -> None:
        """Free the slot of a finished attempt and update the pause state from its outcome."""
        self._in_flight -= 1
        now = self._clock()
        if exc is not None:
            self._note_rate_limit(now, exc)
        change = self._pauses.record(now, _verdict(exc), grant.probe, _describe(exc))
        if change == "paused":
            logger.warning("Governor paused for %.1f s after %s", self.settings.pause_s, self._pauses.reason)
        elif change == "resumed":
            logger.info("Governor resumed: the probe request received a response from Opinion")
        self._signal()

    def _note_rate_limit(self, now: float, exc: BaseException) -> None:
        retry_after_s = rate_limit_wait_s(exc, utc_now())
        if retry_after_s is None or not isinstance(exc, OpinionHTTPError):
            return
        wait_s = min(retry_after_s, self.settings.retry_after_max_s)
        reason = f"HTTP 429 on {exc.endpoint} with Retry-After {exc.retry_after!r}"
        if wait_s < retry_after_s:
            reason += f", shortened to retry_after_max_s ({wait_s:.0f} s)"
        self._bucket.hold(now, now + wait_s)
        if self._pauses.pause(now, now + wait_s, "rate_limited", reason):
            logger.warning("Governor paused for %.1f s: %s", wait_s, reason)

    # The dispatcher

    def _ensure_dispatcher(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="whaled-governor-dispatcher")
            self._task.add_done_callback(self._on_dispatcher_done)

    def _signal(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A new future before dispatching, so that a signal sent during _dispatch is not lost.
            wake = self._wake = loop.create_future()
            delay_s = self._dispatch()
            if delay_s is None:
                await wake
            else:
                await self._wait(wake, delay_s)

    async def _wait(self, wake: asyncio.Future[None], delay_s: float) -> None:
        if self._sleep is asyncio.sleep:
            # With the real clock a loop callback grants at the due time itself, without waiting for this
            # task's turn behind other ready tasks: every millisecond late is a millisecond of rate lost.
            handle = asyncio.get_running_loop().call_later(delay_s, self._on_timer)
            try:
                await wake
            finally:
                handle.cancel()
            return
        timer = asyncio.create_task(self._sleep(delay_s), name="whaled-governor-timer")
        try:
            await asyncio.wait((timer, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            await asyncio.wait((timer,))

    def _on_timer(self) -> None:
        self._dispatch()
        self._signal()

    def _dispatch(self) -> float | None:
        """Grant every waiter that may go now; return the seconds until the next grant or deadline may be due."""
        now = self._clock()
        self._expire(now)
        while self._queue and self._slot_free():
            ready_at = max(self._pauses.paused_until, self._bucket.ready_at(now))
            if ready_at > now:
                return self._delay_s(now, ready_at)
            waiter = self._queue.pop()
            if waiter is not None and not waiter.future.done():
                self._grant(waiter, now)
        return self._delay_s(now, math.inf)

    def _slot_free(self) -> bool:
        return self._in_flight < self.settings.max_in_flight and self._pauses.may_grant()

    def _grant(self, waiter: Waiter, now: float) -> None:
        self._bucket.take(now)
        self._in_flight += 1
        probe = self._pauses.take_grant()
        if probe:
            logger.info("Governor probing with request %s after: %s", waiter.name, self._pauses.reason)
        waited_s = now - waiter.enqueued_at
        self._waits.observe(waited_s)
        waiter.future.set_result(Grant(now, waited_s, probe))

    def _expire(self, now: float) -> None:
        for waiter in self._queue.pop_expired(now):
            if not waiter.future.done():
                waited_s = now - waiter.called_at
                error = GovernorDeadlineError(
                    waiter.name, waiter.priority, waited_s, waiter.deadline_at - waiter.called_at
                )
                waiter.future.set_exception(error)

    def _delay_s(self, now: float, at: float) -> float | None:
        deadline = self._queue.next_deadline()
        if deadline is not None:
            at = min(at, deadline)
        return None if at == math.inf else max(0.0, at - now)

    def _on_dispatcher_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error("Governor dispatcher crashed; failing every waiting request", exc_info=task.exception())
        self._closed = True
        self._fail_waiters()

    def _fail_waiters(self) -> int:
        failed = 0
        for waiter in self._queue.drain():
            if not waiter.future.done():
                waiter.future.set_exception(GovernorClosedError(waiter.name))
                failed += 1
        return failed

    # Figures and lifecycle

    def snapshot(self) -> GovernorSnapshot:
        """Return the current figures; see :class:`GovernorSnapshot`."""
        now = self._clock()
        pauses = self._pauses
        state = pauses.state(now)
        remaining_s = pauses.paused_until - now if state == "paused" else 0.0
        return GovernorSnapshot(
            state=state,
            state_reason="" if state == "running" else pauses.reason,
            paused_until=utc_now() + timedelta(seconds=remaining_s) if state == "paused" else None,
            pause_remaining_s=remaining_s,
            tokens=self._bucket.tokens(now),
            rate_per_s=self.settings.rate_per_s,
            burst=self.settings.burst,
            in_flight=self._in_flight,
            max_in_flight=self.settings.max_in_flight,
            queue_depth={priority.name: depth for priority, depth in self._queue.depth().items()},
            wait_buckets=self._waits.cumulative(),
            wait_sum_s=self._waits.sum_s,
            wait_count=self._waits.count,
            outcomes={outcome: count for outcome, count in self._outcomes.items()},
            retries=self._retries,
            consecutive_failures=pauses.failures,
            pauses={kind: count for kind, count in pauses.counts.items()},
            last_pause_reason=pauses.last_reason,
        )

    async def close(self) -> None:
        """Stop the dispatcher and fail every waiting request with :class:`GovernorClosedError`.

        Requests already sent finish in their callers' tasks; their retries fail the same way.
        """
        if self._closed and self._task is None:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait((task,))
        failed = self._fail_waiters()
        logger.info(
            "Governor closed: %d waiting requests failed, %d in flight; outcomes %s, %d retries",
            failed, self._in_flight, self._outcomes, self._retries,
        )  # fmt: skip


def _verdict(exc: BaseException | None) -> Verdict:
    if exc is None:
        return "ok"
    if isinstance(exc, OpinionError):
        return "transient" if exc.transient else "answered"
    return "neutral"


def _describe(exc: BaseException | None) -> str:
    return "no error" if exc is None else f"{type(exc).__name__}: {exc}"
