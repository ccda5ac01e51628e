"""One websocket client of the feed: its subscriptions, its bounded send queue and its two tasks.

A client is either *live* (the broadcaster puts matching events in its queue) or *catching up* (its own
writer task reads pages from the events table). It catches up after a resume, and again whenever its queue
overflows, so a burst never loses events. Each event carries its id, and the client's ``cursor`` is the
highest id it has handled (sent, queued or skipped as unsubscribed), so the seam between the two modes has
no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractStreamWriter

from whaled.log import ws_logger as logger
from whaled.web.feed_protocol import (
    PROTOCOL_VERSION,
    ClientRequest,
    FeedEvent,
    FeedProtocolError,
    parse_request,
    reply_frame,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_SLOW",
    "FeedClient",
    "FeedLimits",
    "FeedSource",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_SLOW = 4001
_MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, two of which hold the code


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """Per-client limits, from ``WebSettings``; docs/feed.md explains each one."""

    send_queue_max: int
    send_timeout_s: float
    max_lag_events: int
    max_client_errors: int
    close_timeout_s: float
    page_size: int = 500


class FeedSource(Protocol):
    """The broadcaster, as a client uses it."""

    @property
    def position(self) -> int: ...

    def join_live(self, client: FeedClient) -> None: ...

    def leave_live(self, client: FeedClient) -> None: ...

    async def read_events(self, after_id: int, upper_id: int, limit: int) -> list[FeedEvent]: ...

    async def check_resume(self, after_id: int) -> dict[str, Any] | None: ...


class FeedClient:
    """The server side of one ``/ws`` connection."""

    def __init__(
        self,
        source: FeedSource,
        ws: web.WebSocketResponse,
        *,
        client_id: int,
        peer: str,
        limits: FeedLimits,
        transport: asyncio.Transport,
        output: AbstractStreamWriter,
    ) -> None:
        self.id = client_id
        self.peer = peer
        self.ws = ws
        self.topics: set[str] = set()
        self.cursor = source.position
        self.live = True
        self.queue: deque[bytes] = deque()
        self.send_started: float | None = None
        self.frames_sent = 0
        self.errors = 0
        self.subscribed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._source = source
        self._limits = limits
        self._transport = transport
        self._output = output
        self._idle = False
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._writer_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        return self._close_task is not None

    def buffered_bytes(self) -> int:
        """Return the bytes held for this client: queued frames plus the socket's unsent output."""
        return sum(len(frame) for frame in self.queue) + self._transport.get_write_buffer_size()

    def start(self, hello: dict[str, Any]) -> None:
        """Queue the hello frame and start the writer task."""
        self.queue.append(reply_frame("hello", None, protocol=PROTOCOL_VERSION, **hello))
        self._writer_task = asyncio.create_task(self._run_writer(), name=f"feed-writer-{self.id}")

    # Called by the broadcaster, synchronously, for live clients only.

    def offer(self, events: Sequence[FeedEvent]) -> bool:
        """Send or queue the events this client subscribes to; return False if the queue overflowed.

        On overflow the cursor stops before the first event that did not fit, and the caller moves the
        client to catching up, which reads the rest from the database.
        """
        cursor = self.cursor
        topics = self.topics
        matched = [event for event in events if event.id > cursor and not topics.isdisjoint(event.topics)]
        self.cursor = max(cursor, events[-1].id)
        if not matched:
            return True
        room = self._limits.send_queue_max - len(self.queue)
        if self._idle and len(matched) <= room and not self.queue and self._writable(empty=True):
            # The writer task is waiting and the socket has room: write now and save a task switch.
            self._transport.write(b"".join(event.frame for event in matched))
            self.frames_sent += len(matched)
            return True
        self.queue.extend(event.frame for event in matched[:room])
        self._wakeup.set()
        if len(matched) > room:
            self.cursor = matched[room].id - 1
            return False
        return True

    def _writable(self, *, empty: bool = False) -> bool:
        transport = self._transport
        if self.closing or self.ws.closed or transport.is_closing():
            return False
        return not empty or transport.get_write_buffer_size() == 0

    def fall_behind(self) -> None:
        self.live = False
        self._wakeup.set()

    # The writer task: sends queued frames, and reads pages while catching up.

    async def _run_writer(self) -> None:
        try:
            while not self.closing:
                if self.queue:
                    await self._flush()
                elif not self.live:
                    await self._catch_up()
                else:
                    self._wakeup.clear()
                    self._idle = True
                    try:
                        await self._wakeup.wait()
                    finally:
                        self._idle = False
        except ConnectionError as exc:
            logger.debug("Feed client %d (%s) stopped sending: %s", self.id, self.peer, exc)

    async def _flush(self) -> None:
        # Frames are complete websocket frames, so the whole queue goes out in one write. Pings, pongs and
        # the close frame that aiohttp writes land between whole frames, because every write is synchronous.
        clock = self._loop.time
        while self.queue:
            if not self._writable():
                raise ConnectionResetError("the websocket is closing")
            data = b"".join(self.queue)
            self.frames_sent += len(self.queue)
            self.queue.clear()
            self._room.set()
            self.send_started = clock()
            self._transport.write(data)
            await self._output.drain()
        self.send_started = None

    async def _catch_up(self) -> None:
        source = self._source
        upper = source.position
        if self.cursor >= upper:
            self._go_live()
            return
        if upper - self.cursor > self._limits.max_lag_events:
            self.request_close(
                CLOSE_SLOW,
                f"more than {self._limits.max_lag_events} events behind; reconnect with after={self.cursor}",
            )
            return
        page_size = min(self._limits.page_size, self._limits.send_queue_max)
        events = await source.read_events(self.cursor, upper, page_size)
        for event in events:
            if event.id > self.cursor and not self.topics.isdisjoint(event.topics):
                self.queue.append(event.frame)
        self.cursor = events[-1].id if len(events) == page_size else upper
        if self.cursor >= source.position:
            self._go_live()

    def _go_live(self) -> None:
        # No await may separate the position check from joining: the broadcaster advances the position
        # and fans out in one synchronous step, so every later event reaches this client.
        self.live = True
        self._source.join_live(self)

    # The reader: requests from the client, run by the connection's request handler.

    async def run_reader(self) -> None:
        """Handle client frames until the connection closes."""
        async for message in self.ws:
            if self.closing:
                return
            if message.type is WSMsgType.TEXT:
                await self._handle_text(message.data)
            elif message.type is WSMsgType.BINARY:
                await self._reject(FeedProtocolError("binary_not_supported", "send JSON text frames"), None)

    async def _handle_text(self, text: str) -> None:
        try:
            request = parse_request(text)
        except FeedProtocolError as exc:
            await self._reject(exc, None)
            return
        try:
            if request.op == "subscribe":
                await self._subscribe(request)
            elif request.op == "unsubscribe":
                self.topics.difference_update(request.topics)
                await self._reply("unsubscribed", request.ref, topics=sorted(self.topics))
            else:
                await self._reply("pong", request.ref, last_id=self._source.position)
        except FeedProtocolError as exc:
            await self._reject(exc, request.ref)

    async def _subscribe(self, request: ClientRequest) -> None:
        if request.after is not None and self.subscribed:
            raise FeedProtocolError("after_not_first", "after is accepted only on the first subscribe of a connection")
        self.subscribed = True
        topics = sorted(self.topics.union(request.topics))
        if request.after is None:
            # The reply goes first, so that no event of a new topic precedes it.
            await self._reply("subscribed", request.ref, topics=topics, after=self.cursor)
            self.topics.update(request.topics)
            return
        # Out of the live set, nothing is queued for this client while the database is asked.
        self._source.leave_live(self)
        self.live = False
        reset = await self._source.check_resume(request.after)
        if reset is not None:
            # The stream goes on live from the newest event; the client reloads its state from the JSON API.
            self.cursor = self._source.position
            await self._reply("reset", request.ref, after=request.after, resume_after=self.cursor, **reset)
        else:
            self.cursor = request.after
        await self._reply("subscribed", request.ref, topics=topics, after=self.cursor)
        self.topics.update(request.topics)
        self.fall_behind()

    async def _reply(self, op: str, ref: str | int | None, **fields: Any) -> None:
        # Replies share the queue with events, so they keep their order. A client that sends requests
        # but does not read waits here, and its own sends back up in TCP.
        while len(self.queue) >= self._limits.send_queue_max and not self.closing:
            self._room.clear()
            await self._room.wait()
        self.queue.append(reply_frame(op, ref, **fields))
        self._wakeup.set()

    async def _reject(self, exc: FeedProtocolError, ref: str | int | None) -> None:
        self.errors += 1
        logger.debug("Feed client %d (%s) sent an invalid message: %s", self.id, self.peer, exc)
        await self._reply("error", ref, code=exc.code, message=str(exc))
        if self.errors >= self._limits.max_client_errors:
            reason = f"{self.errors} invalid messages"
            logger.warning("Feed client %d (%s) closed after %s", self.id, self.peer, reason)
            await self.request_close(CLOSE_POLICY, reason, flush=True)

    # Closing.

    def request_close(self, code: int, reason: str, *, flush: bool = False) -> asyncio.Task[None]:
        """Start closing with ``code`` and ``reason``; later calls return the same task.

        :param flush: first hand the queued frames to the socket, without waiting for them to be sent, so
            that a client closed for invalid requests or a shutdown still gets the frames before the close.
        """
        if self._close_task is None:
            if flush and self.queue and self._writable():
                self._transport.write(b"".join(self.queue))
            self.close_code = code
            self.close_reason = reason
            self._source.leave_live(self)
            self.queue.clear()
            self._room.set()
            self._close_task = asyncio.create_task(self._close(code, reason), name=f"feed-close-{self.id}")
        return self._close_task

    async def _close(self, code: int, reason: str) -> None:
        writer = self._writer_task
        if writer is not None:
            writer.cancel()
            await asyncio.wait([writer])
        if self.ws.closed:
            return
        message = reason.encode()[:_MAX_REASON_BYTES].decode(errors="ignore").encode()
        try:
            async with asyncio.timeout(self._limits.close_timeout_s):
                await self.ws.close(code=code, message=message)
        except TimeoutError:
            # The peer reads nothing, so the close frame cannot leave the send buffer.
            logger.debug("Feed client %d (%s) did not read its close frame; aborting", self.id, self.peer)
            self._transport.abort()
