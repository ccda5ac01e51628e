"""The feed's limits: slow clients, invalid and oversized messages, heartbeats, origins and client count."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest

from tests.fixtures.web import (
    ConnectFeed,
    StartServer,
    append_events,
    hub_of,
    open_stalled_client,
    wait_until,
)
from whaled.store import Database
from whaled.web import WebServer
from whaled.web.feed_client import FeedClient

READER_EVENTS = 20_000
STALLED_CLIENTS = 5


async def _sample(client: FeedClient, peaks: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peaks["queue"] = max(peaks["queue"], len(client.queue))
        peaks["bytes"] = max(peaks["bytes"], client.buffered_bytes())
        await asyncio.sleep(0.005)


async def test_slow_client_closed_reader_complete(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    server = await start_server(send_queue_max=500, send_timeout_s=0.5, close_timeout_s=0.2)
    hub = hub_of(server)
    slow = await connect_feed(server, receive_buffer_bytes=4096)
    await slow.subscribe("trades")
    (slow_client,) = hub._clients
    # Small kernel buffers on both ends stand in for a slow network path, so the slow client backs up
    # after a few kilobytes rather than after the megabytes that loopback buffers would take.
    server_socket = slow_client._transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    reader = await connect_feed(server)
    await reader.subscribe("trades")

    peaks = {"queue": 0, "bytes": 0}
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(slow_client, peaks, stop))
    writing = asyncio.create_task(append_events(db, READER_EVENTS, per_transaction=1000))
    received = [event["id"] for event in await reader.events(READER_EVENTS)]
    ids = await writing
    await wait_until(lambda: slow_client.close_code is not None)
    stop.set()
    await sampler

    assert received == ids
    assert peaks["queue"] <= 500
    # The 20,000 frames take about 4 MB; the server keeps at most one queue and one socket buffer of them.
    assert peaks["bytes"] < 500 * 250 + 200_000, peaks
    assert slow_client.frames_sent < READER_EVENTS / 2
    assert slow_client.close_code == 4001
    assert "send timed out" in slow_client.close_reason

    # What the slow client did receive is a prefix of the stream, without a gap.
    prefix = []
    async with asyncio.timeout(10):
        while (message := await slow.ws.receive()).type is aiohttp.WSMsgType.TEXT:
            frame = json.loads(message.data)
            if frame["op"] == "event":
                prefix.append(frame["id"])
    assert prefix == ids[: len(prefix)]
    await wait_until(lambda: hub.stats().clients == 1)
    assert hub.stats().clients_closed_slow == 1


async def _sample_all(clients: list[FeedClient], peaks: dict[int, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for client in clients:
            peaks[client.id] = max(peaks.get(client.id, 0), client.buffered_bytes())
        await asyncio.sleep(0.005)


async def _stalled_server_sockets(server: WebServer, count: int) -> tuple[list[FeedClient], list[socket.socket]]:
    hub = hub_of(server)
    await wait_until(lambda: len(hub._clients) == count and all(client.topics for client in hub._clients))
    clients = list(hub._clients)
    server_sockets = [client._transport.get_extra_info("socket") for client in clients]
    for server_socket in server_sockets:
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    return clients, server_sockets


async def _read_to_end(sock: socket.socket) -> str:
    """Read what the server sent; return "reset" if the connection ends with a reset, "eof" if with a FIN.

    A reset means the server's kernel dropped the unread output instead of holding it for this peer.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        try:
            while await loop.sock_recv(sock, 65536):
                pass
        except ConnectionResetError:
            return "reset"
    return "eof"


async def test_stalled_clients_are_aborted_after_send_timeout(db: Database, start_server: StartServer) -> None:
    # The heartbeat is far off, so only the send watchdog and the bounded close can end these connections.
    server = await start_server(send_queue_max=50, send_timeout_s=0.3, close_timeout_s=0.2, heartbeat_s=60)
    hub = hub_of(server)
    stalled = [await open_stalled_client(server, "trades") for _ in range(STALLED_CLIENTS)]
    try:
        clients, server_sockets = await _stalled_server_sockets(server, STALLED_CLIENTS)
        peaks: dict[int, int] = {}
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_all(clients, peaks, stop))
        await append_events(db, 3000, per_transaction=1000)
        # Expected within send_timeout_s, a watchdog interval and close_timeout_s: about 0.6 s.
        await wait_until(lambda: hub.stats().clients == 0, timeout_s=3)
        stop.set()
        await sampler
        endings = [await _read_to_end(sock) for sock in stalled]
    finally:
        for sock in stalled:
            sock.close()

    assert endings == ["reset"] * STALLED_CLIENTS

    assert hub.stats().clients_closed_slow == STALLED_CLIENTS
    assert [client.close_code for client in clients] == [4001] * STALLED_CLIENTS
    assert [server_socket.fileno() for server_socket in server_sockets] == [-1] * STALLED_CLIENTS
    # One queue of 50 frames of about 250 bytes, plus one socket buffer's worth of unsent output.
    assert max(peaks.values()) < 50 * 250 + 200_000, peaks


async def test_stalled_client_dropped_by_heartbeat_is_aborted(db: Database, start_server: StartServer) -> None:
    # The send watchdog is far off; the missing pong closes the websocket while output is still buffered.
    server = await start_server(send_timeout_s=60, close_timeout_s=0.2, heartbeat_s=0.2)
    hub = hub_of(server)
    stalled = await open_stalled_client(server, "trades")
    try:
        _, (server_socket,) = await _stalled_server_sockets(server, 1)
        await append_events(db, 3000, per_transaction=1000)
        await wait_until(lambda: hub.stats().clients == 0, timeout_s=3)
        await wait_until(lambda: server_socket.fileno() == -1, timeout_s=1)
        assert await _read_to_end(stalled) == "reset"
    finally:
        stalled.close()


async def test_client_overflowing_its_queue_catches_up_without_loss(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    server = await start_server(send_queue_max=10)
    feed = await connect_feed(server)
    await feed.subscribe("trades")
    ids = await append_events(db, 2000, per_transaction=1000)
    assert [event["id"] for event in await feed.events(2000)] == ids
    assert hub_of(server).stats().live_clients == 1


async def test_client_too_far_behind_is_closed(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    server = await start_server(send_queue_max=10, max_lag_events=50)
    feed = await connect_feed(server)
    await feed.subscribe("trades")
    await append_events(db, 200, per_transaction=200)
    await feed.closed()
    assert feed.ws.close_code == 4001


async def test_many_invalid_frames_close_with_policy_violation(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    server = await start_server(max_client_errors=20)
    bystander = await connect_feed(server)
    await bystander.subscribe("trades")
    abuser = await connect_feed(server)
    for n in range(1000):
        try:
            await abuser.ws.send_str(f"garbage {n}")
        except ConnectionError:
            break
    errors = 0
    async with asyncio.timeout(10):
        while (message := await abuser.ws.receive()).type is aiohttp.WSMsgType.TEXT:
            errors += 1
    assert errors == 20
    assert abuser.ws.close_code == 1008
    ids = await append_events(db, 3)
    assert [event["id"] for event in await bystander.events(3)] == ids
    assert hub_of(server).stats().clients_closed_invalid == 1, message


async def test_invalid_frames_each_get_error(start_server: StartServer, connect_feed: ConnectFeed) -> None:
    server = await start_server(max_client_errors=5000)
    feed = await connect_feed(server)
    for n in range(1000):
        await feed.ws.send_str(f'{{"op": "nope{n}"}}')
    codes = [(await feed.expect("error"))["code"] for _ in range(1000)]
    assert codes == ["invalid_op"] * 1000
    await feed.send({"op": "ping"})
    await feed.expect("pong")


async def test_oversized_frame_closes_only_that_client(
    db: Database, start_server: StartServer, connect_feed: ConnectFeed
) -> None:
    server = await start_server(max_message_bytes=4096)
    bystander = await connect_feed(server)
    await bystander.subscribe("trades")
    big = await connect_feed(server)
    await big.ws.send_str('{"op": "ping", "ref": "' + "x" * 100_000 + '"}')
    await big.closed()
    assert big.ws.close_code == 1009
    ids = await append_events(db, 3)
    assert [event["id"] for event in await bystander.events(3)] == ids


async def test_client_that_never_answers_pings_is_dropped(start_server: StartServer, connect_feed: ConnectFeed) -> None:
    server = await start_server(heartbeat_s=0.1)
    feed = await connect_feed(server, autoping=False)
    async with asyncio.timeout(5):
        while (await feed.ws.receive()).type is aiohttp.WSMsgType.PING:
            pass
    hub = hub_of(server)
    await wait_until(lambda: hub.stats().clients == 0)


async def test_clients_disconnecting_mid_broadcast_do_not_affect_others(
    db: Database, server: WebServer, connect_feed: ConnectFeed
) -> None:
    staying = [await connect_feed(server) for _ in range(10)]
    leaving = [await connect_feed(server) for _ in range(10)]
    for feed in staying + leaving:
        await feed.subscribe("trades")
    writing = asyncio.create_task(append_events(db, 3000, per_transaction=100))
    for feed in leaving:
        await feed.events(50)
        transport = feed.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()
    ids = await writing
    for feed in staying:
        assert [event["id"] for event in await feed.events(len(ids))] == ids


async def test_foreign_origin_is_rejected(server: WebServer, http: aiohttp.ClientSession) -> None:
    url = f"{server.url}/ws"
    with pytest.raises(aiohttp.WSServerHandshakeError) as rejected:
        await http.ws_connect(url, origin="https://evil.example")
    assert rejected.value.status == 403
    host = url.removeprefix("http://").split("/")[0]
    async with http.ws_connect(url, origin=f"http://{host}") as ws:
        assert (await ws.receive_json())["op"] == "hello"


async def test_listed_origin_is_accepted(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(cors_origins=("https://dash.example",))
    async with http.ws_connect(f"{server.url}/ws", origin="https://dash.example") as ws:
        assert (await ws.receive_json())["op"] == "hello"


async def test_client_over_the_limit_gets_503(start_server: StartServer, connect_feed: ConnectFeed) -> None:
    server = await start_server(max_clients=2)
    await connect_feed(server)
    await connect_feed(server)
    with pytest.raises(aiohttp.WSServerHandshakeError) as rejected:
        await connect_feed(server)
    assert rejected.value.status == 503
