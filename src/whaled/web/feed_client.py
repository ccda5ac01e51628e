"""One websocket client of the feed: its subscriptions, its bounded send queue and its two tasks.

A client is either *live* (the broadcaster puts matching events in its queue) or *catching up* (its own
writer task reads pages from the events table). It catches up after a resume, and again whenever its queue
overflows, so a burst never loses events. Each event carries its id, and the client's ``cursor`` is the
highest id it has handled (sent, queued or skipped as unsubscribed), so the seam between the two modes has
no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
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
    "CLOSE_INTERNAL_ERROR",
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
CLOSE_INTERNAL_ERROR = 1011
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
    max_client_topics: int = 64
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
        # The newest event when a resume began. Events up to it were stored before the client asked for
        # them, so replaying them does not count as lag.
        self.replay_end = 0
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
        self._drain_task: asyncio.Future[None] | None = None
        self._close_task: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        return self._close_task is not None

    def buffered_bytes(self) -> int:
        """Return the bytes held for this client: queued frames plus the socket's unsent output."""
        return sum(len(frame) for frame in self.queue) + self._transport.get_write_buffer_size()

    def start(self, hello: dict[str, Any]) -> None:
        """Queue the hello frame and start the writer task."""
        # Until a closing handshake begins, every close of this socket is an abort. aiohttp closes the
        # transport itself when a ping goes unanswered, and after a plain close the kernel would keep the
        # unread output, up to its socket buffer of megabytes, for a peer that may never read it.
        _set_reset_on_close(self._transport, True)
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
        except Exception:
            # A failed read of the events table, for one: without its writer the client would hang.
            logger.exception("Feed client %d (%s) failed to send events; closing it", self.id, self.peer)
            self.request_close(CLOSE_INTERNAL_ERROR, f"internal server error; reconnect with after={self.cursor}")

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
            await self._drain()
        self.send_started = None

    async def _drain(self) -> None:
        # aiohttp (3.14) keeps one drain future per connection and shares it with every writer, including
        # its own close(). Cancelling a task that awaits that future directly cancels the future itself,
        # and every later wait for the socket then fails at once with CancelledError. The shield keeps the
        # future intact when this writer is cancelled.
        if self._transport.get_write_buffer_size() == 0:
            return
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.ensure_future(self._output.drain())
        await asyncio.shield(self._drain_task)

    async def _catch_up(self) -> None:
        source = self._source
        upper = source.position
        if self.cursor >= upper:
            self._go_live()
            return
        if upper - max(self.cursor, self.replay_end) > self._limits.max_lag_events:
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
        topics = sorted(self.topics.union(request.topics))
        if len(topics) > self._limits.max_client_topics:
            raise FeedProtocolError(
                "too_many_topics",
                f"a connection may have at most {self._limits.max_client_topics} topics, and this request would "
                f"make {len(topics)}; unsubscribe from some first",
            )
        self.subscribed = True
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
            self.replay_end = self._source.position
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
        # Every path ends with the socket closed: a peer that reads nothing cannot take the close frame, and
        # a graceful transport close would then wait for the unsent output forever.
        completed = False
        try:
            await self._stop_writer()
            completed = not self.ws.closed and await self._close_handshake(code, reason)
        finally:
            if not completed:
                _set_reset_on_close(self._transport, True)
                self._transport.abort()
            await self._stop_drain()

    async def _stop_writer(self) -> None:
        writer = self._writer_task
        if writer is not None and not writer.done():
            writer.cancel()
            await asyncio.wait([writer])

    async def _close_handshake(self, code: int, reason: str) -> bool:
        """Send the close frame and wait for the peer's; return True if the handshake completed."""
        message = reason.encode()[:_MAX_REASON_BYTES].decode(errors="ignore").encode()
        task = asyncio.current_task()
        _set_reset_on_close(self._transport, False)
        try:
            async with asyncio.timeout(self._limits.close_timeout_s):
                await self.ws.close(code=code, message=message)
        except TimeoutError:
            logger.debug("Feed client %d (%s) did not read its close frame; aborting", self.id, self.peer)
            return False
        except asyncio.CancelledError:
            if task is not None and task.cancelling():
                raise
            # Not a cancellation of this task: aiohttp's shared drain future was cancelled by another task,
            # such as aiohttp's own ping task, so close() cannot wait for the socket.
            logger.debug("Feed client %d (%s) cannot send its close frame; aborting", self.id, self.peer)
            return False
        return self.ws.exception() is None

    async def _stop_drain(self) -> None:
        # The socket is closed or aborted by now, so the drain future ends soon. Cancelling only hurries it.
        drain = self._drain_task
        if drain is not None and not drain.done():
            drain.cancel()
            await asyncio.wait([drain])


def _set_reset_on_close(transport: asyncio.Transport, enabled: bool) -> None:
    """Make a close of the transport's socket reset the connection and drop unsent data (SO_LINGER 0)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    # An OSError means the socket is closed already.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", int(enabled), 0))
