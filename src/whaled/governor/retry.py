"""Retry rules of the governor: the retryable failures, the backoff delays and ``Retry-After`` parsing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime

import backoff

from whaled.opinion.errors import (
    OpinionAPIError,
    OpinionConnectionError,
    OpinionHTTPError,
    OpinionTimeoutError,
)

__all__ = ["RetryDelays", "is_retryable", "parse_retry_after", "rate_limit_wait_s"]


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """Tell whether a retry may help and is safe.

    Retried: HTTP 429 always, because the server rejected the request before doing anything. HTTP 5xx, an
    envelope code 429 or 5xx, and timeouts only when the request is idempotent, because the server may
    have acted on it. A broken connection when the request is idempotent or never left (``before_send``).
    Never retried: other 4xx, malformed payloads, other envelope codes, and any error not from the client.
    """
    if isinstance(exc, OpinionHTTPError):
        return exc.status == 429 or (exc.status >= 500 and idempotent)
    if isinstance(exc, OpinionAPIError):
        return exc.transient and idempotent
    if isinstance(exc, OpinionConnectionError):
        return idempotent or exc.before_send
    if isinstance(exc, OpinionTimeoutError):
        return idempotent
    return False


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the wait a ``Retry-After`` header requests, in seconds, or None when absent or unreadable.

    The header is either a number of seconds or an HTTP date (RFC 9110 section 10.2.3). A date in the past
    means no wait.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def rate_limit_wait_s(exc: BaseException, now: datetime) -> float | None:
    """Return the ``Retry-After`` wait of an HTTP 429, or None for any other error or a 429 without it."""
    if isinstance(exc, OpinionHTTPError) and exc.status == 429:
        return parse_retry_after(exc.retry_after, now)
    return None


class RetryDelays:
    """Exponential delays with full jitter from the ``backoff`` package, one per retry of one request.

    Retry ``n`` (1-based) waits a random time in ``[0, min(base_s * 2**(n-1), max_delay_s)]``.
    """

    def __init__(
        self,
        base_s: float,
        max_delay_s: float,
        *,
        jitter: Callable[[float], float] = backoff.full_jitter,
    ) -> None:
        self._delays: Iterator[float] = backoff.expo(base=2, factor=base_s, max_value=max_delay_s)
        # backoff's generators yield None first, to be primed the way its decorators prime them.
        next(self._delays)
        self._jitter = jitter

    def next_delay_s(self) -> float:
        return float(self._jitter(next(self._delays)))
