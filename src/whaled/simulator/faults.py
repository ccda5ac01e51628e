"""Run-time fault switches for the simulator, and its request log.

A test turns a fault on with one call, optionally scoped to a path prefix (``"/trade/user"``, matched
against the path after the API base, or against the full request path) and to a number of requests. Each
switch returns its :class:`Fault`, whose ``hits`` counts the requests it changed and whose ``remaining``
can be set to 0 to turn it off. Several switches can be on at once: latency applies first, then a hang or a
disconnect, then the first switch that replaces the response (429, 5xx, malformed JSON, non-zero ``errno``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from whaled.simulator._format import SimulatorError

__all__ = ["REPLACING_KINDS", "Fault", "FaultKind", "Faults", "RequestRecord"]


class FaultKind(enum.Enum):
    latency = "latency"
    rate_limit = "rate_limit"
    server_error = "server_error"
    malformed_json = "malformed_json"
    api_error = "api_error"
    hang = "hang"
    disconnect = "disconnect"
    drop_connection = "drop_connection"
    code_msg_envelope = "code_msg_envelope"
    shift_pages = "shift_pages"
    repeat_first_page = "repeat_first_page"


# Kinds whose fault replaces the whole response, in the order the app checks them.
REPLACING_KINDS = (FaultKind.rate_limit, FaultKind.server_error, FaultKind.malformed_json, FaultKind.api_error)


@dataclass(eq=False)
class Fault:
    """One switched-on fault. ``remaining`` None means until removed; 0 means spent."""

    kind: FaultKind
    path: str | None = None
    remaining: int | None = None
    seconds: float = 0.0
    status: int = 0
    errno: int = 0
    errmsg: str = ""
    retry_after: str | None = None
    new_trades: int = 0
    hits: int = 0

    def matches(self, endpoint: str, full_path: str) -> bool:
        if self.remaining == 0:
            return False
        return self.path is None or endpoint.startswith(self.path) or full_path.startswith(self.path)

    def consume(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1


@dataclass
class RequestRecord:
    """One request as the simulator saw it. Headers, and so the API key, are never recorded.

    ``at_s`` is the monotonic arrival time; ``status`` stays None while the request is unanswered.
    """

    at_s: float
    path: str
    endpoint: str
    query: dict[str, str]
    status: int | None = None


class Faults:
    """The fault switches and the request log of one simulator.

    :param clock: the monotonic clock that stamps :class:`RequestRecord` arrivals.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self._released = asyncio.Event()
        self._arrival = asyncio.Event()

    # Switches

    def add_latency(self, seconds: float, *, path: str | None = None, count: int | None = None) -> Fault:
        """Delay each matching request by ``seconds`` before it is handled."""
        if seconds < 0:
            raise SimulatorError(f"latency must be at least 0 s, got {seconds!r}")
        return self._add(Fault(FaultKind.latency, seconds=seconds), path, count)

    def rate_limit(
        self,
        *,
        retry_after: float | str | datetime | None = 1,
        path: str | None = None,
        count: int | None = None,
    ) -> Fault:
        """Respond HTTP 429 with ``Retry-After`` in seconds, as an HTTP date (an aware ``datetime``), as the
        given text, or left out (None)."""
        header = _retry_after_header(retry_after)
        fault = Fault(FaultKind.rate_limit, status=429, errno=429, errmsg="too many requests", retry_after=header)
        return self._add(fault, path, count)

    def server_error(self, status: int = 503, *, path: str | None = None, count: int | None = None) -> Fault:
        """Respond with an HTTP 5xx status and an error envelope."""
        if not 500 <= status <= 599:
            raise SimulatorError(f"server_error needs an HTTP status from 500 to 599, got {status!r}")
        return self._add(Fault(FaultKind.server_error, status=status, errno=status, errmsg="server error"), path, count)

    def malformed_json(self, *, path: str | None = None, count: int | None = None) -> Fault:
        """Respond HTTP 200 with a JSON body cut off in the middle."""
        return self._add(Fault(FaultKind.malformed_json, status=200), path, count)

    def api_error(
        self, errno: int = 500, errmsg: str = "internal error", *, path: str | None = None, count: int | None = None
    ) -> Fault:
        """Respond HTTP 200 with a non-zero ``errno`` and ``result`` null."""
        if errno == 0:
            raise SimulatorError("api_error needs a non-zero errno; 0 means success")
        return self._add(Fault(FaultKind.api_error, status=200, errno=errno, errmsg=errmsg), path, count)

    def hang(self, *, path: str | None = None, count: int | None = None) -> Fault:
        """Accept the request and never respond. The connection is dropped when the simulator closes."""
        return self._add(Fault(FaultKind.hang), path, count)

    def disconnect(self, *, path: str | None = None, count: int | None = None) -> Fault:
        """Close the connection as soon as a matching request arrives, without a response.

        aiohttp's client resends an idempotent request once on a new connection after a server disconnect,
        so ``count=2`` is what makes one ``GET`` of the client fail with ``ServerDisconnectedError``.
        """
        return self._add(Fault(FaultKind.disconnect), path, count)

    def drop_connection(self, *, path: str | None = None, count: int | None = None) -> Fault:
        """Respond normally, then close that keep-alive connection when its next request arrives, unanswered.

        This is a server closing an idle connection just as the client reuses it. The next request on the
        connection fails with a server disconnect, and aiohttp's client then resends it once on a new
        connection. Use :meth:`disconnect` for a failure that reaches the caller.
        """
        return self._add(Fault(FaultKind.drop_connection), path, count)

    def code_msg_envelope(self, *, path: str | None = None, count: int | None = None) -> Fault:
        """Spell the envelope ``{"code", "msg", "result"}`` as the documented schema does."""
        return self._add(Fault(FaultKind.code_msg_envelope), path, count)

    def shift_pages(self, new_trades: int = 3, *, path: str = "/trade/user", count: int | None = None) -> Fault:
        """Before serving a trade page after the first, add ``new_trades`` trades to that wallet, so that the
        rows of the previous page move down into the requested one."""
        if new_trades < 1:
            raise SimulatorError(f"shift_pages needs at least 1 new trade, got {new_trades!r}")
        return self._add(Fault(FaultKind.shift_pages, new_trades=new_trades), path, count)

    def repeat_first_page(self, *, path: str | None = None, count: int | None = None) -> Fault:
        """Serve page 1 whatever page a list request names (counted on requests for pages after 1)."""
        return self._add(Fault(FaultKind.repeat_first_page), path, count)

    def remove(self, fault: Fault) -> None:
        self.faults.remove(fault)

    def clear(self) -> None:
        """Switch every fault off; requests already hanging stay until :meth:`release`."""
        self.faults.clear()

    # Used by the app

    def take(self, kind: FaultKind, endpoint: str, full_path: str) -> Fault | None:
        """Return the oldest matching fault of ``kind`` and count one use of it, or None."""
        for fault in self.faults:
            if fault.kind is kind and fault.matches(endpoint, full_path):
                fault.consume()
                return fault
        return None

    def record(self, path: str, endpoint: str, query: dict[str, str]) -> RequestRecord:
        safe_query = {key: value for key, value in query.items() if key.lower() not in ("apikey", "api_key")}
        record = RequestRecord(at_s=self.clock(), path=path, endpoint=endpoint, query=safe_query)
        self.requests.append(record)
        self._arrival.set()
        self._arrival = asyncio.Event()
        return record

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`release` is called meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self._released.wait()
        except TimeoutError:
            return

    async def wait_released(self) -> None:
        await self._released.wait()

    def release(self) -> None:
        """Wake every delayed or hanging request; the server calls this when it shuts down."""
        self._released.set()

    # Request log

    def count(self, path: str | None = None) -> int:
        """Return how many requests arrived, optionally only those whose path or endpoint starts with ``path``."""
        return len(self.matching(path))

    def matching(self, path: str | None = None) -> list[RequestRecord]:
        if path is None:
            return list(self.requests)
        return [r for r in self.requests if r.endpoint.startswith(path) or r.path.startswith(path)]

    def rate_per_s(self, path: str | None = None) -> float:
        """Return the mean request rate between the first and the last matching arrival (0 below two)."""
        records = self.matching(path)
        if len(records) < 2:
            return 0.0
        span = records[-1].at_s - records[0].at_s
        return (len(records) - 1) / span if span > 0 else float("inf")

    async def wait_for_requests(self, count: int, path: str | None = None) -> None:
        """Wait until at least ``count`` requests matching ``path`` have arrived; bound it with a timeout."""
        while self.count(path) < count:
            await self._arrival.wait()

    def clear_log(self) -> None:
        self.requests.clear()

    def _add(self, fault: Fault, path: str | None, count: int | None) -> Fault:
        if count is not None and count < 1:
            raise SimulatorError(f"count must be at least 1 request (or None for no limit), got {count!r}")
        if path is not None:
            fault.path = path
        fault.remaining = count
        self.faults.append(fault)
        return fault


def _retry_after_header(value: float | str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SimulatorError(f"retry_after needs an aware datetime (with tzinfo), got {value!r}")
        return format_datetime(value.astimezone(UTC), usegmt=True)
    if value < 0:
        raise SimulatorError(f"retry_after must be at least 0 s, got {value!r}")
    return f"{value:g}"
