"""The feed's broadcaster: one task reads each new batch of events once and fans it out to live clients."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from whaled.config import WebSettings
from whaled.log import ws_logger as logger
from whaled.store import Database, StoreError
from whaled.web.feed_client import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SLOW,
    FeedClient,
    FeedLimits,
)
from whaled.web.feed_protocol import EVENT_COLUMNS, STATIC_TOPICS, FeedEvent, event_from_row

__all__ = ["FeedHub", "FeedStats"]

_BATCH_SIZE = 500
# The broadcaster also polls, so that events written by another process (a command line run) still
# reach clients, and a missed commit notification delays them by at most this long.
_POLL_S = 1.0
_RETRY_S = 1.0
_SELECT_AFTER = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"
_SELECT_RANGE = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"
_SELECT_BOUNDS = (
    "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events), "
    "(SELECT seq FROM sqlite_sequence WHERE name = 'events')"
)


@dataclass(frozen=True, slots=True)
class FeedStats:
    """Counters for metrics and health: current clients and totals since the server started."""

    position: int
    clients: int
    live_clients: int
    events_broadcast: int
    clients_closed_slow: int
    clients_closed_invalid: int
    resets: int


class FeedHub:
    """Owns the feed's clients, the broadcaster task and the send watchdog."""

    def __init__(self, db: Database, settings: WebSettings) -> None:
        self._db = db
        self.settings = settings
        self.limits = FeedLimits(
            send_queue_max=settings.send_queue_max,
            send_timeout_s=settings.send_timeout_s,
            max_lag_events=settings.max_lag_events,
            max_client_errors=settings.max_client_errors,
            close_timeout_s=settings.close_timeout_s,
            max_client_topics=settings.max_client_topics,
        )
        self._position = 0
        self._clients: set[FeedClient] = set()
        self._live: set[FeedClient] = set()
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._events_broadcast = 0
        self._closed_slow = 0
        self._closed_invalid = 0
        self._resets = 0

    @property
    def position(self) -> int:
        """The id of the newest event the broadcaster has fanned out."""
        return self._position

    @property
    def full(self) -> bool:
        return len(self._clients) >= self.settings.max_clients

    def stats(self) -> FeedStats:
        return FeedStats(
            position=self._position,
            clients=len(self._clients),
            live_clients=len(self._live),
            events_broadcast=self._events_broadcast,
            clients_closed_slow=self._closed_slow,
            clients_closed_invalid=self._closed_invalid,
            resets=self._resets,
        )

    # Lifecycle.

    async def start(self) -> None:
        """Start from the newest stored event and run the broadcaster and the watchdog."""
        row = await self._db.fetchone("SELECT coalesce(max(id), 0) FROM events")
        self._position = int(row[0]) if row is not None else 0
        self._tasks = [
            asyncio.create_task(self._broadcast_forever(), name="feed-broadcaster"),
            asyncio.create_task(self._watch_sends(), name="feed-send-watchdog"),
        ]
        logger.info("Feed started at event %d", self._position)

    async def close_clients(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every client with ``code`` and wait until each has closed or been aborted."""
        closing = [client.request_close(code, reason, flush=True) for client in list(self._clients)]
        if closing:
            await asyncio.wait(closing)
            logger.info("Feed closed %d clients with code %d", len(closing), code)

    async def stop(self) -> None:
        """Close the clients, then stop the broadcaster and the watchdog."""
        await self.close_clients()
        if self._closing:
            await asyncio.wait(self._closing)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        logger.info("Feed stopped at event %d after %d events", self._position, self._events_broadcast)

    # Clients.

    def connect(
        self,
        ws: web.WebSocketResponse,
        peer: str,
        transport: asyncio.Transport,
        output: AbstractStreamWriter,
    ) -> FeedClient:
        """Register a prepared websocket; ``output`` is what ``ws.prepare()`` returned."""
        client = FeedClient(
            self, ws, client_id=next(self._ids), peer=peer, limits=self.limits, transport=transport, output=output
        )
        self._clients.add(client)
        self._live.add(client)
        client.start(self._hello())
        logger.debug("Feed client %d (%s) connected at event %d", client.id, peer, self._position)
        return client

    def disconnect(self, client: FeedClient) -> asyncio.Task[None]:
        """Forget ``client`` after its connection ended; return the task that finishes closing it.

        The bookkeeping runs before any await, because the request handler that calls this may be
        cancelled when the peer vanishes.
        """
        closing = client.request_close(client.ws.close_code or CLOSE_GOING_AWAY, "")
        self._clients.discard(client)
        self._live.discard(client)
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        if client.close_code == CLOSE_SLOW:
            self._closed_slow += 1
        elif client.close_code == CLOSE_POLICY:
            self._closed_invalid += 1
        logger.debug(
            "Feed client %d (%s) disconnected with code %s after %d frames",
            client.id,
            client.peer,
            client.close_code,
            client.frames_sent,
        )
        return closing

    def _hello(self) -> dict[str, Any]:
        return {
            "last_id": self._position,
            "topics": [*STATIC_TOPICS, "wallet:<address>", "market:<market id>"],
            "heartbeat_s": self.settings.heartbeat_s,
            "send_queue_max": self.settings.send_queue_max,
            "max_message_bytes": self.settings.max_message_bytes,
            "max_topics": self.settings.max_client_topics,
        }

    # The FeedSource interface used by clients.

    def join_live(self, client: FeedClient) -> None:
        if not client.closing:
            self._live.add(client)

    def leave_live(self, client: FeedClient) -> None:
        self._live.discard(client)

    async def read_events(self, after_id: int, upper_id: int, limit: int) -> list[FeedEvent]:
        """Read up to ``limit`` events with ``after_id < id <= upper_id``, oldest first."""
        async with self._db.reader() as conn, conn.execute(_SELECT_RANGE, (after_id, upper_id, limit)) as cur:
            rows = await cur.fetchall()
        return [event_from_row(row) for row in rows]

    async def check_resume(self, after_id: int) -> dict[str, Any] | None:
        """Return the fields of a reset frame if events after ``after_id`` can no longer be replayed."""
        row = await self._db.fetchone(_SELECT_BOUNDS)
        oldest, newest, sequence = (row[0], row[1], row[2]) if row is not None else (None, None, None)
        newest_id = max(newest or 0, sequence or 0, self._position)
        first_kept = oldest if oldest is not None else newest_id + 1
        reason = None
        if after_id > newest_id:
            reason = "unknown_id"
            message = f"event {after_id} is newer than the newest event {newest_id}; reload your state"
        elif after_id < first_kept - 1:
            reason = "expired"
            message = f"events after {after_id} were deleted (the oldest kept is {first_kept}); reload your state"
        if reason is None:
            return None
        self._resets += 1
        return {"reason": reason, "message": message, "oldest_id": oldest}

    # The broadcaster.

    async def _broadcast_forever(self) -> None:
        notifier = self._db.events
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            woke = await notifier.wait_beyond(self._position, timeout_s=_POLL_S)
            try:
                found = await self._broadcast_pending()
            except (StoreError, sqlite3.Error, ValueError) as exc:
                logger.warning(
                    "Feed cannot read events after %d, retrying in %.0f s: %s", self._position, _RETRY_S, exc
                )
                await asyncio.sleep(_RETRY_S)
                continue
            if not woke and not found and loop.time() - started < _POLL_S / 2:
                # The notifier returns at once only when the database is closing: poll, do not spin.
                await asyncio.sleep(_POLL_S)

    async def _broadcast_pending(self) -> bool:
        found = False
        while True:
            async with (
                self._db.reader() as conn,
                conn.execute(_SELECT_AFTER, (self._position, _BATCH_SIZE)) as cursor,
            ):
                rows = list(await cursor.fetchall())
            if not rows:
                return found
            found = True
            self._fan_out([event_from_row(row) for row in rows])
            if len(rows) < _BATCH_SIZE:
                return found

    def _fan_out(self, events: list[FeedEvent]) -> None:
        # Synchronous on purpose: the position moves and every live client gets the batch in one step,
        # which is what lets a catching-up client join the live set without a gap.
        fallen: list[FeedClient] = []
        for client in self._live:
            if not client.offer(events):
                fallen.append(client)
        for client in fallen:
            self._live.discard(client)
            client.fall_behind()
        self._position = events[-1].id
        self._events_broadcast += len(events)

    # The watchdog.

    async def _watch_sends(self) -> None:
        timeout_s = self.settings.send_timeout_s
        interval_s = min(timeout_s / 4, 1.0)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            deadline = loop.time() - timeout_s
            for client in list(self._clients):
                started = client.send_started
                if started is not None and started < deadline and not client.closing:
                    logger.warning(
                        "Feed client %d (%s) closed: one send made no progress for %.1f s",
                        client.id,
                        client.peer,
                        timeout_s,
                    )
                    client.request_close(CLOSE_SLOW, f"send timed out after {timeout_s:g} s; resume with after")
