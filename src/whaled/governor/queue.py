"""The governor's wait queue and the errors that end a wait.

The queue grants in strict priority across classes, and first in first out within a class.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from whaled.errors import WhaledError
from whaled.governor.priority import Priority

__all__ = ["GovernorClosedError", "GovernorDeadlineError", "Grant", "WaitQueue", "Waiter"]


class GovernorDeadlineError(WhaledError, TimeoutError):
    """A request waited in the governor's queue past its deadline and was not sent."""

    def __init__(self, name: str, priority: Priority, waited_s: float, deadline_s: float) -> None:
        self.name = name
        self.priority = priority
        self.waited_s = waited_s
        self.deadline_s = deadline_s
        super().__init__(
            f"Opinion request {name!r} (priority {priority.name}) waited {waited_s:.1f} s, past its deadline "
            f"of {deadline_s:.1f} s, and was not sent; lower the request volume, or raise governor.deadline_s "
            "or the call's deadline_s"
        )


class GovernorClosedError(WhaledError, RuntimeError):
    """A request reached the governor after ``close()``, or was still waiting when it closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"Opinion request {name!r} was not sent because the governor is closed; "
            "send requests only between creating the Governor and awaiting close()"
        )


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to send one request: a token was taken and an in-flight slot is held."""

    granted_at: float
    waited_s: float
    probe: bool


@dataclass(eq=False, slots=True)
class Waiter:
    """One attempt of one request, waiting for its grant."""

    name: str
    priority: Priority
    attempt: int
    enqueued_at: float
    called_at: float
    deadline_at: float
    future: asyncio.Future[Grant]
    seq: int = field(default=0)


class WaitQueue:
    """Waiters by priority. Removal is O(1), so a cancelled caller leaves at once.

    A heap of deadlines finds the next waiter to expire. Its entries for waiters that already left are
    skipped when reached and dropped whenever the heap grows to twice the queue.
    """

    def __init__(self) -> None:
        self._classes: dict[Priority, OrderedDict[int, Waiter]] = {p: OrderedDict() for p in Priority}
        self._deadlines: list[tuple[float, int, Waiter]] = []
        self._sequence = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, waiter: Waiter) -> bool:
        return waiter.seq in self._classes[waiter.priority]

    def push(self, waiter: Waiter) -> None:
        waiter.seq = next(self._sequence)
        self._classes[waiter.priority][waiter.seq] = waiter
        heapq.heappush(self._deadlines, (waiter.deadline_at, waiter.seq, waiter))
        self._size += 1

    def remove(self, waiter: Waiter) -> bool:
        """Take ``waiter`` out of the queue; return False when it was no longer queued."""
        if self._classes[waiter.priority].pop(waiter.seq, None) is None:
            return False
        self._left()
        return True

    def peek(self) -> Waiter | None:
        """Return the waiter that is granted next: the oldest of the highest non-empty priority."""
        for waiters in self._classes.values():
            if waiters:
                return next(iter(waiters.values()))
        return None

    def pop(self) -> Waiter | None:
        waiter = self.peek()
        if waiter is not None:
            self.remove(waiter)
        return waiter

    def next_deadline(self) -> float | None:
        """Return the earliest deadline of a queued waiter."""
        while self._deadlines and self._deadlines[0][2] not in self:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def pop_expired(self, now: float) -> list[Waiter]:
        """Remove and return the waiters whose deadline is at or before ``now``."""
        expired: list[Waiter] = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            waiter = heapq.heappop(self._deadlines)[2]
            self.remove(waiter)
            expired.append(waiter)
        return expired

    def drain(self) -> list[Waiter]:
        """Remove and return every waiter, highest priority first."""
        waiters = [waiter for queue in self._classes.values() for waiter in queue.values()]
        for queue in self._classes.values():
            queue.clear()
        self._deadlines.clear()
        self._size = 0
        return waiters

    def depth(self) -> dict[Priority, int]:
        return {priority: len(waiters) for priority, waiters in self._classes.items()}

    def _left(self) -> None:
        self._size -= 1
        if self._size == 0:
            self._deadlines.clear()
        elif len(self._deadlines) > 2 * self._size + 32:
            self._deadlines = [entry for entry in self._deadlines if entry[2] in self]
            heapq.heapify(self._deadlines)
