"""When the governor may send: a token bucket and the pauses, both on an injected monotonic clock."""

from __future__ import annotations

import math
from typing import Literal

from whaled.governor.stats import GovernorState, PauseKind

__all__ = ["PauseState", "TokenBucket", "Verdict"]

# The outcome of a finished attempt, as the failure counter classifies it. "answered" means the server sent a
# deliberate response, such as a 4xx or a malformed payload. "transient" is a failure that may pass.
# "neutral" is an attempt that was cancelled or failed with an error not from Opinion, so it proves nothing
# about the server.
Verdict = Literal["ok", "answered", "transient", "neutral"]

# Refill arithmetic in floats can leave 0.999999... tokens at the instant a token is due.
_EPSILON = 1e-9


class TokenBucket:
    """Pace requests: each one takes a token, and tokens accrue continuously up to ``burst``.

    Any span of ``T`` seconds contains at most ``burst + rate_per_s * T`` takes. Once the bucket is empty,
    takes are at least ``1 / rate_per_s`` apart, so a backlog puts at most ``ceil(rate_per_s)`` requests
    into any window ``[t, t + 1 s)``. The exception is a caller that falls a whole token interval behind
    (a stalled event loop): the bucket treats that like idle time and lets it catch up by whole tokens.
    The bucket starts full. Times are floats from the caller's monotonic clock, so tests need not wait.
    """

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        # The time at which ``_tokens`` was exact. It lies in the future while the bucket is held.
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s)
            self._updated = now

    def tokens(self, now: float) -> float:
        """Return the tokens available at ``now``: 0 while the bucket is held."""
        self._refill(now)
        return self._tokens if now >= self._updated else 0.0

    def ready_at(self, now: float) -> float:
        """Return the earliest time, not before ``now``, at which a token can be taken."""
        self._refill(now)
        missing = max(0.0, 1.0 - _EPSILON - self._tokens)
        return max(now, self._updated + missing / self.rate_per_s)

    def take(self, now: float) -> bool:
        """Take one token if one is available at ``now``."""
        if self.ready_at(now) > now:
            return False
        self._tokens -= 1.0
        if self._tokens < 1.0:
            # Drop the fraction of a token that accrued because the caller woke late. Kept, it would let the
            # next take follow sooner than 1/rate, and a backlog would then put ceil(rate) + 1 requests into
            # some one-second windows. The cost is the lateness itself: bench/governor.py measured 1 to 2 % of
            # the rate at 12/s on a 2-core machine.
            self._tokens = 0.0
        return True

    def refund(self, now: float) -> None:
        """Give back a token taken for a request that was never sent."""
        self._refill(now)
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    def hold(self, now: float, until: float) -> None:
        """Empty the bucket: the next token comes at ``until`` or one token interval after ``now``, if later.

        Used after HTTP 429: the requests that resume then are paced from zero instead of as a burst.
        """
        self._refill(now)
        self._tokens = 0.0
        self._updated = max(self._updated, until - 1.0 / self.rate_per_s)


class PauseState:
    """The governor's pauses, on the same clock as the bucket.

    A rate-limit pause (HTTP 429 with ``Retry-After``) ends by itself. A failure pause starts after
    ``failure_threshold`` consecutive transient failures, lasts ``pause_s``, and is followed by one probe
    request: any response from the server resumes normal flow, and another transient failure pauses again.
    """

    def __init__(self, failure_threshold: int, pause_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.pause_s = pause_s
        self.paused_until = -math.inf
        self.reason = ""
        self.last_reason = ""
        self.failures = 0
        self.counts: dict[PauseKind, int] = {"rate_limited": 0, "failures": 0}
        self._needs_probe = False
        self._probe_out = False

    def state(self, now: float) -> GovernorState:
        if now < self.paused_until:
            return "paused"
        return "probing" if self._needs_probe else "running"

    def may_grant(self) -> bool:
        """Return False while a probe is in flight, because the probe's outcome decides what comes next."""
        return not (self._needs_probe and self._probe_out)

    def take_grant(self) -> bool:
        """Record a grant; return True when it is the probe."""
        if self._needs_probe:
            self._probe_out = True
            return True
        return False

    def return_grant(self, probe: bool) -> None:
        """Record that a granted request was never sent."""
        if probe:
            self._probe_out = False

    def pause(self, now: float, until: float, kind: PauseKind, reason: str) -> bool:
        """Extend the pause to ``until``; return True when this starts a new pause rather than extending one."""
        if until <= self.paused_until:
            return False
        new = now >= self.paused_until
        if new:
            self.counts[kind] += 1
        self.paused_until = until
        self.reason = self.last_reason = reason
        return new

    def record(self, now: float, verdict: Verdict, probe: bool, failure: str) -> str:
        """Count one finished attempt; return ``"paused"``, ``"resumed"`` or ``""`` for a change of state.

        :param failure: the failure, described for the pause reason.
        """
        if probe:
            self._probe_out = False
        if verdict == "transient":
            self.failures += 1
            if probe or (self.failures >= self.failure_threshold and self.state(now) == "running"):
                self._needs_probe = True
                self.pause(
                    now, now + self.pause_s, "failures", f"{self.failures} consecutive failures, the last {failure}"
                )
                return "paused"
        elif verdict != "neutral":
            self.failures = 0
            if probe:
                self._needs_probe = False
                return "resumed"
        return ""
