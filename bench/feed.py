"""Benchmark the websocket feed against a bare aiohttp broadcast loop, and measure commit-to-receipt latency.

Run: .venv/bin/python bench/feed.py [--clients 1000] [--burst 200] [--rounds 3] [--rate 100] [--seconds 5]

Both servers run in this process. The websocket clients run in a child process (``--client`` mode), so
that they do not share an event loop with the server. Each throughput round sends ``burst`` messages to
every client as fast as the server can, and is timed from the first send (or the first commit) until
the last client has received the last message. The latency phase commits one event every 1/rate s
and compares each commit's time with the time a sampled client received the event (CLOCK_MONOTONIC is
shared between processes on Linux). The run stops itself after about 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from whaled.config import Settings, WebSettings
from whaled.store import Database
from whaled.store import events as store_events
from whaled.web import WebContext, start_web

_EVENT_PREFIX = '{"op":"event","id":'
_TIME_LIMIT_S = 60.0
_SAMPLE_EVERY = 10
_PAYLOAD: dict[str, Any] = {
    "trade_id": 1,
    "wallet": "0x" + "ab" * 20,
    "market_id": 7,
    "side": "buy",
    "outcome": "YES",
    "price": "0.61",
    "shares": "10000",
    "amount": "6100",
    "notional_usd": "6100",
    "is_whale": True,
}


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# The client process. Each client is a bare asyncio protocol that counts websocket frames as they arrive,
# so that a thousand clients fit in one process without a task per message.

_HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: d2hhbGVkLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
_EVENT_BYTES = _EVENT_PREFIX.encode()


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


class _CountingClient(asyncio.Protocol):
    def __init__(self, sample: list[tuple[int, int]] | None) -> None:
        self.events = 0
        self.sample = sample
        self.upgraded = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._open = False

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(bytes(self._buffer[:80]).decode(errors="replace")))
                return
            del self._buffer[: end + 4]
            self._open = True
            self.upgraded.set_result(None)
        self._read_frames()

    def _read_frames(self) -> None:
        buffer = self._buffer
        position = 0
        while len(buffer) - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                header = 4
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
            elif length == 127:
                header = 10
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
            start = position + header
            if len(buffer) < start + length:
                break
            if buffer.startswith(_EVENT_BYTES, start):
                self.events += 1
                if self.sample is not None:
                    id_start = start + len(_EVENT_BYTES)
                    event_id = int(buffer[id_start : buffer.index(b",", id_start)])
                    self.sample.append((event_id, time.monotonic_ns()))
            position = start + length
        del buffer[:position]


async def _connect(url: str, sample: list[tuple[int, int]] | None) -> tuple[asyncio.Transport, _CountingClient]:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        lambda: _CountingClient(sample), parts.hostname or "127.0.0.1", parts.port or 80
    )
    transport.write(_HANDSHAKE.format(path=parts.path, host=parts.netloc).encode())
    await client.upgraded
    transport.write(_masked_text_frame(json.dumps({"op": "subscribe", "topics": ["trades"]})))
    return transport, client


async def _client_main(url: str, clients: int, rounds: list[int]) -> None:
    samples: list[list[tuple[int, int]]] = []
    connections = []
    for index in range(clients):
        sample: list[tuple[int, int]] | None = [] if index % _SAMPLE_EVERY == 0 else None
        if sample is not None:
            samples.append(sample)
        connections.append(await _connect(url, sample))
    counters = [client for _, client in connections]
    await asyncio.sleep(0.5)  # let the subscribe requests arrive before the parent starts
    print("READY", flush=True)
    finished = await _wait_rounds(counters, rounds)
    print("RESULT " + json.dumps({"finished_ns": finished, "samples": samples}), flush=True)
    for transport, _ in connections:
        transport.abort()


async def _wait_rounds(clients: list[_CountingClient], rounds: list[int]) -> list[int]:
    finished = []
    target = 0
    for size in rounds:
        target += size
        # Polling keeps the per-frame path free of any check; a round lasts much longer than the poll.
        while min(client.events for client in clients) < target:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        finished.append(time.monotonic_ns())
        print(f"ROUND {len(finished)} cpu_s={time.process_time():.3f}", flush=True)
    return finished


# The parent: servers and producers.


class _Clients:
    """The client process, with its READY/ROUND/RESULT lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, clients: int, rounds: list[int]) -> _Clients:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            url,
            str(clients),
            ",".join(map(str, rounds)),
            stdout=asyncio.subprocess.PIPE,
            limit=2**28,
        )
        started = cls(process)
        await started.expect("READY")
        return started

    async def expect(self, prefix: str) -> str:
        assert self.process.stdout is not None
        line = (await self.process.stdout.readline()).decode()
        if not line.startswith(prefix):
            raise RuntimeError(f"client process printed {line[:200]!r}, expected {prefix}")
        return line

    async def result(self) -> dict[str, Any]:
        line = await self.expect("RESULT ")
        await self.process.wait()
        result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
        return result


async def _baseline(clients: int, burst: int, rounds: int) -> list[float]:
    """Deliveries per second of a bare aiohttp server that sends each message to each socket in turn."""
    sockets: set[web.WebSocketResponse] = set()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        async for _ in ws:
            pass
        sockets.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    frame_tail = "," + json.dumps({"topic": "trade", "type": "trade.new", "payload": _PAYLOAD})[1:]
    try:
        client_process = await _Clients.start(f"http://127.0.0.1:{port}/ws", clients, [burst] * rounds)
        rates = []
        next_id = 1
        for round_number in range(1, rounds + 1):
            started = time.monotonic_ns()
            for _ in range(burst):
                frame = f"{_EVENT_PREFIX}{next_id}{frame_tail}"
                next_id += 1
                for ws in list(sockets):
                    await ws.send_str(frame)
            await client_process.expect(f"ROUND {round_number}")
            rates.append(clients * burst / ((time.monotonic_ns() - started) / 1e9))
        await client_process.result()
        return rates
    finally:
        for ws in list(sockets):
            await ws.close()
        await runner.cleanup()


async def _commit(db: Database, count: int) -> tuple[int, int]:
    rows: list[tuple[str, str, str | None, int | None, dict[str, Any]]]
    rows = [("trade", "trade.new", str(_PAYLOAD["wallet"]), 7, _PAYLOAD)] * count
    async with db.transaction() as tx:
        last_id, appended = await store_events.append_events(tx.conn, rows)
        tx.note_events(last_id, appended)
    return last_id, time.monotonic_ns()


async def _whaled(db: Database, clients: int, burst: int, rounds: int, rate: int, seconds: float) -> dict[str, Any]:
    settings = Settings(web=WebSettings(host="127.0.0.1", port=0, max_clients=clients + 10))
    server = await start_web(WebContext(db=db, settings=settings))
    latency_events = int(rate * seconds)
    try:
        client_process = await _Clients.start(f"{server.url}/ws", clients, [burst] * rounds + [latency_events])
        rates = []
        line = ""
        for round_number in range(1, rounds + 1):
            started = time.monotonic_ns()
            for _ in range(burst // 100):
                await _commit(db, 100)
            await _commit(db, burst % 100) if burst % 100 else None
            line = await client_process.expect(f"ROUND {round_number}")
            rates.append(clients * burst / ((time.monotonic_ns() - started) / 1e9))
        # The latency phase, with the CPU time each process spends in it.
        client_cpu_s = _cpu_seconds(line)
        server_cpu_s = time.process_time()
        phase_started = time.monotonic()
        committed: dict[int, int] = {}
        interval_ns = int(1e9 / rate)
        next_ns = time.monotonic_ns()
        for _ in range(latency_events):
            event_id, commit_ns = await _commit(db, 1)
            committed[event_id] = commit_ns
            next_ns += interval_ns
            await asyncio.sleep(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))
        line = await client_process.expect(f"ROUND {rounds + 1}")
        phase_s = time.monotonic() - phase_started
        server_load = (time.process_time() - server_cpu_s) / phase_s
        client_load = (_cpu_seconds(line) - client_cpu_s) / phase_s
        result = await client_process.result()
    finally:
        await server.close()
    latencies_ms = [
        (received_ns - committed[event_id]) / 1e6
        for sample in result["samples"]
        for event_id, received_ns in sample
        if event_id in committed
    ]
    return {"rates": rates, "latencies_ms": latencies_ms, "loads": (server_load, client_load)}


def _cpu_seconds(round_line: str) -> float:
    return float(round_line.rsplit("cpu_s=", 1)[1])


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def _main(args: argparse.Namespace) -> None:
    _raise_file_limit()
    async with asyncio.timeout(_TIME_LIMIT_S):
        baseline = await _baseline(args.clients, args.burst, args.rounds)
        with tempfile.TemporaryDirectory() as directory:
            db = await Database.open(Path(directory) / "bench.db")
            try:
                whaled = await _whaled(db, args.clients, args.burst, args.rounds, args.rate, args.seconds)
            finally:
                await db.close()
    baseline_rate = statistics.median(baseline)
    whaled_rate = statistics.median(whaled["rates"])
    latencies = whaled["latencies_ms"]
    print(f"clients={args.clients} burst={args.burst} rounds={args.rounds}")
    print("baseline deliveries/s per round: " + ", ".join(f"{rate:,.0f}" for rate in baseline))
    print("whaled   deliveries/s per round: " + ", ".join(f"{rate:,.0f}" for rate in whaled["rates"]))
    print(
        f"latency at {args.rate} events/s for {args.seconds:g} s, {len(latencies)} samples: "
        f"median {statistics.median(latencies):.1f} ms, p99 {_p99(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )
    server_load, client_load = whaled["loads"]
    print(f"CPU use in the latency phase: server {server_load:.0%} of a core, clients {client_load:.0%} of a core")
    print(
        f"RESULT feed deliveries_per_s={whaled_rate:.0f} baseline_per_s={baseline_rate:.0f} "
        f"p99_ms={_p99(latencies):.1f} ratio={whaled_rate / baseline_rate:.2f}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _raise_file_limit()
        url, clients, rounds = sys.argv[2], int(sys.argv[3]), [int(n) for n in sys.argv[4].split(",")]
        asyncio.run(_client_main(url, clients, rounds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=200, help="messages per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per server")
    parser.add_argument("--rate", type=int, default=100, help="events per second in the latency phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
