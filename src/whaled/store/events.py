"""The events table: the only way facts leave the store.

Each event has a monotonic integer id, a topic, a type, a JSON payload and a time, and is appended in the same
transaction as the rows it describes. Readers (the feed, alert workflows, the dashboard) wait on
:class:`EventNotifier` and then read ``events`` after the last id they handled.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiosqlite

from whaled.clock import now_ms

__all__ = [
    "Event",
    "EventNotifier",
    "append_event",
    "append_events",
    "dump_payload",
    "read_events_after",
]

_INSERT = "INSERT INTO events (topic, type, wallet, market_id, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    topic: str
    type: str
    wallet: str | None
    market_id: int | None
    payload: dict[str, Any]
    created_ms: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        return cls(
            id=row["id"],
            topic=row["topic"],
            type=row["type"],
            wallet=row["wallet"],
            market_id=row["market_id"],
            payload=json.loads(row["payload"]),
            created_ms=row["created_ms"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "type": self.type,
            "wallet": self.wallet,
            "market_id": self.market_id,
            "payload": self.payload,
            "created_ms": self.created_ms,
        }


def _default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in an event payload")


def dump_payload(payload: dict[str, Any]) -> str:
    """Serialise a payload; ``Decimal`` values become exact decimal strings."""
    return json.dumps(payload, default=_default, separators=(",", ":"), ensure_ascii=False)


async def append_event(
    conn: aiosqlite.Connection,
    topic: str,
    type_: str,
    payload: dict[str, Any],
    *,
    wallet: str | None = None,
    market_id: int | None = None,
) -> int:
    cursor = await conn.execute(_INSERT, (topic, type_, wallet, market_id, dump_payload(payload), now_ms()))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def append_events(
    conn: aiosqlite.Connection,
    rows: Sequence[tuple[str, str, str | None, int | None, dict[str, Any]]],
) -> tuple[int, int]:
    """Append many events with one statement; return ``(last_id, count)``.

    Each row is ``(topic, type, wallet, market_id, payload)``. The ids are consecutive because the caller
    uses the only write connection, inside one transaction.
    """
    if not rows:
        return 0, 0
    created = now_ms()
    placeholders = ",".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
    parameters: list[Any] = []
    for topic, type_, wallet, market_id, payload in rows:
        parameters.extend((topic, type_, wallet, market_id, dump_payload(payload), created))
    sql = f"INSERT INTO events (topic, type, wallet, market_id, payload, created_ms) VALUES {placeholders}"
    cursor = await conn.execute(sql, parameters)
    assert cursor.lastrowid is not None
    return cursor.lastrowid, len(rows)


async def read_events_after(
    conn: aiosqlite.Connection,
    after_id: int,
    *,
    limit: int = 500,
    topics: Iterable[str] | None = None,
) -> list[Event]:
    """Read up to ``limit`` events with an id greater than ``after_id``, oldest first."""
    sql = "SELECT * FROM events WHERE id > ?"
    parameters: list[Any] = [after_id]
    if topics is not None:
        wanted = list(topics)
        sql += f" AND topic IN ({','.join('?' * len(wanted))})"
        parameters.extend(wanted)
    sql += " ORDER BY id LIMIT ?"
    parameters.append(limit)
    async with conn.execute(sql, parameters) as cursor:
        return [Event.from_row(row) for row in await cursor.fetchall()]


class EventNotifier:
    """Wakes waiters when a transaction that appended events has committed."""

    def __init__(self) -> None:
        self.last_id = 0
        self._changed = asyncio.Event()
        self._closed = False

    def publish(self, last_id: int) -> None:
        if last_id > self.last_id:
            self.last_id = last_id
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_beyond(self, event_id: int, timeout_s: float | None = None) -> bool:
        """Wait until an event with an id above ``event_id`` is committed; return False on timeout."""
        while self.last_id <= event_id and not self._closed:
            changed = self._changed
            try:
                async with asyncio.timeout(timeout_s):
                    await changed.wait()
            except TimeoutError:
                return False
        return self.last_id > event_id

    def close(self) -> None:
        self._closed = True
        self._changed.set()
