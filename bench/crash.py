"""Crash safety: ``whaled run`` killed with SIGKILL at random moments, then left to finish, loses nothing.

The harness starts the Opinion simulator (and the mail sink, with alerts to it) in this process and moves the
simulated world forward at ``--speed`` times real time, so that trades keep arriving. It then starts
``python -m whaled run`` ``--restarts`` times and kills each one with SIGKILL: one start in five at a random
moment of its startup, the others a random time (up to ``--max-kill-s``) after it reported READY over
sd_notify. A restart survives when the process was still running at its kill and, for a kill after startup,
had reported READY. Every job runs at each start, so most kills land inside a job or an alert workflow.

Finally the world stops moving and one more daemon runs until it has caught up, then stops with SIGTERM. The
checks, all against the simulator's own records:

- trades: each tracked wallet's trades in the database equal the simulator's (by transaction hash, with
  multiplicity); ``lost`` and ``duplicated`` count the differences;
- events: every stored trade has exactly one ``trade.new`` event;
- emails (when the mail sink exists): every alert's email is in the sink exactly once. A delivery left
  ``unknown`` (killed during SMTP DATA) counts as lost only when the sink has no copy;
- workflows (when the table exists): none is left pending or running.

Usage: python bench/crash.py [--restarts 30] [--seed 1] [--speed 60] [--max-kill-s 3]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whaled.simulator import RunningSimulator, start_simulator

READY_TIMEOUT_S = 20.0
CATCH_UP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0
TRACKED_WALLETS = 4
# One start in this many is killed during its startup instead of after READY.
STARTUP_KILL_EVERY = 5


class Notify:
    """A datagram socket in the abstract namespace that receives the daemons' sd_notify messages."""

    def __init__(self) -> None:
        self.address = f"@whaled-crash-{uuid.uuid4().hex}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.address[1:])
        self._socket.setblocking(False)

    def drain(self) -> None:
        """Drop messages left by a killed daemon."""
        while True:
            try:
                self._socket.recv(4096)
            except BlockingIOError:
                return

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        while b"READY=1" not in (await loop.sock_recv(self._socket, 4096)).split(b"\n"):
            pass

    def close(self) -> None:
        self._socket.close()


@dataclass
class Cycle:
    kind: str
    survived: bool
    ready_s: float | None
    exit_code: int | None = None


@dataclass
class Harness:
    folder: Path
    simulator: RunningSimulator
    notify: Notify
    config: Path
    log: Path
    mail: Path | None
    rng: random.Random
    cycles: list[Cycle] = field(default_factory=list)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value))


def render_config(tables: dict[str, dict[str, Any]], wallets: list[str]) -> str:
    """Render ``[table]`` sections; a name in double brackets, such as ``[[alerts.whale_trades]]``, stays so."""
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(table if table.startswith("[[") else f"[{table}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    for index, address in enumerate(wallets, 1):
        lines.extend(["[[wallets]]", f'address = "{address}"', f'label = "crash whale {index}"'])
    return "\n".join(lines) + "\n"


def daemon_config(folder: Path, simulator: RunningSimulator, smtp_port: int | None) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    tables: dict[str, dict[str, Any]] = {
        "opinion": {"base_url": simulator.base_url, "leaderboard_url": simulator.leaderboard_url, "max_pages": 500},
        "governor": {"rate_per_s": 15, "burst": 50},
        "store": {"path": str(folder / "whaled.db")},
        "web": {"host": "127.0.0.1", "port": web_port},
        "jobs": {"run_at_startup": True},
        "jobs.sync_markets": {"interval_s": 5, "timeout_s": 4, "misfire_grace_s": 2},
        "jobs.sync_whale_trades": {"interval_s": 2, "timeout_s": 1.8, "misfire_grace_s": 1},
        "jobs.compute_whale_stats": {"interval_s": 10, "timeout_s": 8, "misfire_grace_s": 2},
        "alerts": {"enabled": False},
    }
    if smtp_port is not None:
        tables["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "connect_timeout_s": 2}
        tables["alerts"] = {
            "recipients": ["bench@crash.invalid"],
            "digest_threshold": 100_000,
            "max_emails_per_hour": 100_000,
            "retry_base_s": 0.5,
            "retry_max_s": 2.0,
            "poll_interval_s": 0.5,
            "shutdown_grace_s": 2.0,
        }
        # Every live trade of a tracked wallet above 100 USD alerts, so that many workflows run.
        tables["[[alerts.whale_trades]]"] = {"name": "every_trade", "min_notional_usd": 100, "cooldown_s": 0}
    wallets = simulator.state.whale_wallets[:TRACKED_WALLETS]
    return render_config(tables, wallets)


async def advance_world(simulator: RunningSimulator, speed: float, frozen: asyncio.Event) -> None:
    """Move the simulated world forward ``speed`` times as fast as real time until ``frozen`` is set."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while not frozen.is_set():
        await asyncio.sleep(0.2)
        now = loop.time()
        simulator.state.advance((now - last) * speed)
        last = now


async def spawn(harness: Harness) -> asyncio.subprocess.Process:
    harness.notify.drain()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WHALED_")}
    environment["NOTIFY_SOCKET"] = harness.notify.address
    with harness.log.open("ab") as log:
        log.write(f"----- start {len(harness.cycles) + 1}\n".encode())
        log.flush()
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "whaled", "run", "--config", str(harness.config),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log, env=environment,
        )  # fmt: skip


async def wait_ready(harness: Harness, process: asyncio.subprocess.Process, timeout_s: float) -> float | None:
    """Return the seconds until READY, or None when the process exited or the timeout passed first."""
    started = time.monotonic()
    ready = asyncio.ensure_future(harness.notify.wait_ready())
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait({ready, exited}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for task in (ready, exited):
        task.cancel()
    await asyncio.gather(ready, exited, return_exceptions=True)
    return time.monotonic() - started if ready in done and ready.exception() is None else None


async def kill(process: asyncio.subprocess.Process) -> int | None:
    """SIGKILL ``process``; return its exit code when it had already exited on its own, else None."""
    if process.returncode is not None:
        return process.returncode
    process.send_signal(signal.SIGKILL)
    await process.wait()
    return None


async def crash_cycle(harness: Harness, max_kill_s: float) -> Cycle:
    process = await spawn(harness)
    if len(harness.cycles) % STARTUP_KILL_EVERY == 1:
        ready_s = await wait_ready(harness, process, harness.rng.uniform(0.0, 1.0))
        exit_code = await kill(process)
        return Cycle("startup", exit_code is None, ready_s, exit_code)
    ready_s = await wait_ready(harness, process, READY_TIMEOUT_S)
    if ready_s is not None:
        await asyncio.sleep(harness.rng.uniform(0.0, max_kill_s))
    exit_code = await kill(process)
    return Cycle("running", ready_s is not None and exit_code is None, ready_s, exit_code)


def query(database: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)) as conn:
        return list(conn.execute(sql, parameters))


def table_exists(database: Path, name: str) -> bool:
    return bool(query(database, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


def trade_differences(database: Path, simulator: RunningSimulator) -> tuple[int, int, int]:
    """Return (simulator trades, lost, duplicated) over the tracked wallets, by transaction hash."""
    expected = total = lost = duplicated = 0
    for wallet in simulator.state.whale_wallets[:TRACKED_WALLETS]:
        simulated = Counter(trade["txHash"] for trade in simulator.state.trades(wallet))
        stored = Counter(row[0] for row in query(database, "SELECT tx_hash FROM trades WHERE wallet = ?", (wallet,)))
        expected += sum(simulated.values())
        total += sum(stored.values())
        lost += sum((simulated - stored).values())
        duplicated += sum((stored - simulated).values())
    return expected, lost, duplicated


def event_differences(database: Path) -> tuple[int, int]:
    """Return (trades without a trade.new event, extra trade.new events)."""
    trades = {row[0] for row in query(database, "SELECT id FROM trades")}
    events = Counter(
        row[0]
        for row in query(database, "SELECT json_extract(payload, '$.trade_id') FROM events WHERE type = 'trade.new'")
    )
    missing = len(trades - set(events))
    extra = sum(count - 1 for count in events.values() if count > 1) + sum(
        count for trade_id, count in events.items() if trade_id not in trades
    )
    return missing, extra


def email_differences(database: Path, mail: Path) -> dict[str, int]:
    """Compare the email deliveries in the outbox with the messages in the sink, by Message-ID."""
    found: Counter[str] = Counter()
    for path in mail.glob("*.eml"):
        with path.open("rb") as file:
            found[str(email.message_from_binary_file(file)["Message-ID"])] += 1
    without_delivery = query(
        database,
        "SELECT count(*) FROM alerts a WHERE NOT EXISTS "
        "(SELECT 1 FROM outbox o WHERE o.alert_id = a.id AND o.channel = 'email')",
    )[0][0]
    rows = query(database, "SELECT status, message_id FROM outbox WHERE channel = 'email'")
    sent = {message_id for status, message_id in rows if status == "sent"}
    unknown = {message_id for status, message_id in rows if status == "unknown"}
    open_rows = sum(1 for status, _ in rows if status in ("pending", "sending"))
    lost = sum(1 for message_id in sent if message_id not in found)
    lost += sum(1 for message_id in unknown if message_id not in found) + open_rows + without_delivery
    duplicated = sum(count - 1 for count in found.values()) + sum(1 for key in found if key not in sent | unknown)
    return {"emails": len(found), "emails_lost": lost, "emails_duplicated": duplicated, "emails_unknown": len(unknown)}


def caught_up(database: Path, simulator: RunningSimulator) -> bool:
    if not database.exists():
        return False
    _, lost, _ = trade_differences(database, simulator)
    if lost:
        return False
    if table_exists(database, "workflows"):
        unfinished = query(database, "SELECT count(*) FROM workflows WHERE status IN ('pending', 'running')")[0][0]
        due = query(database, "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")[0][0]
        if unfinished or due:
            return False
    return True


async def final_run(harness: Harness) -> tuple[bool, int | None, float]:
    """Run one daemon until the store has caught up (twice in a row, 0.5 s apart), then stop it with SIGTERM."""
    process = await spawn(harness)
    started = time.monotonic()
    ready_s = await wait_ready(harness, process, READY_TIMEOUT_S)
    database = harness.folder / "whaled.db"
    streak = 0
    while ready_s is not None and streak < 2 and time.monotonic() - started < CATCH_UP_TIMEOUT_S:
        await asyncio.sleep(0.5)
        streak = streak + 1 if caught_up(database, harness.simulator) else 0
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        await kill(process)
        code = None
    return streak >= 2, code, time.monotonic() - started


def log_problems(log: Path) -> int:
    text = log.read_text(errors="replace")
    return text.count("Traceback") + text.count("Task was destroyed but it is pending")


def collect_figures(harness: Harness) -> dict[str, Any]:
    """Compare the store with the simulator and the mail sink; return the figures of the RESULT line."""
    database = harness.folder / "whaled.db"
    expected, lost, duplicated = trade_differences(database, harness.simulator)
    events_missing, events_extra = event_differences(database)
    figures: dict[str, Any] = {
        "restarts": len(harness.cycles),
        "survived": sum(cycle.survived for cycle in harness.cycles),
        "startup_kills": sum(cycle.kind == "startup" for cycle in harness.cycles),
        "trades": expected,
        "lost": lost,
        "duplicated": duplicated,
        "events_missing": events_missing,
        "events_duplicated": events_extra,
    }

    if harness.mail is not None and table_exists(database, "outbox"):
        figures.update(email_differences(database, harness.mail))
    if table_exists(database, "workflows"):
        statuses = dict(query(database, "SELECT status, count(*) FROM workflows GROUP BY status"))
        print(f"workflows by status: {statuses}")
        figures["workflows_unfinished"] = statuses.get("pending", 0) + statuses.get("running", 0)
    figures["log_problems"] = log_problems(harness.log)
    return figures


def report(harness: Harness, caught: bool, stop_code: int | None, elapsed_s: float) -> int:
    """Print the figures and the RESULT line; return 0 when every check passed, else 1."""
    ready = [cycle.ready_s for cycle in harness.cycles if cycle.ready_s is not None]
    print(f"starts reaching READY: {len(ready)}, median {statistics.median(ready) if ready else 0:.2f} s")
    print(f"final run: caught up {caught}, exit code {stop_code}; whole harness {elapsed_s:.0f} s")

    figures = collect_figures(harness)
    restarts, survived = figures["restarts"], figures["survived"]
    figures["ratio"] = f"{survived / restarts:.2f}"
    print("RESULT crash " + " ".join(f"{key}={value}" for key, value in figures.items()))

    failed = any(figures.get(key) for key in _MUST_BE_ZERO) or survived < restarts
    return 1 if failed or not caught or stop_code != 0 else 0


_MUST_BE_ZERO = {
    "lost", "duplicated", "events_missing", "events_duplicated", "emails_lost", "emails_duplicated",
    "workflows_unfinished", "log_problems",
}  # fmt: skip


async def start_mail_sink_if_any(stack: AsyncExitStack, folder: Path) -> tuple[Path | None, int | None]:
    try:
        from whaled.simulator.mailsink import start_mail_sink
    except ImportError:
        return None, None
    sink = await start_mail_sink(folder / "mail")
    stack.push_async_callback(sink.close)
    return sink.folder, int(sink.port)


async def run(arguments: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="whaled-crash-"))
    async with AsyncExitStack() as stack:
        simulator = await start_simulator(seed=arguments.seed, evolve_every_s=None)
        stack.push_async_callback(simulator.close)
        mail, smtp_port = await start_mail_sink_if_any(stack, folder)
        notify = Notify()
        stack.callback(notify.close)
        config = folder / "whaled.toml"
        config.write_text(daemon_config(folder, simulator, smtp_port))
        harness = Harness(folder, simulator, notify, config, folder / "daemon.log", mail, random.Random(arguments.seed))
        frozen = asyncio.Event()
        world = asyncio.create_task(advance_world(simulator, arguments.speed, frozen), name="crash-world")
        started = time.monotonic()
        try:
            for _ in range(arguments.restarts):
                harness.cycles.append(await crash_cycle(harness, arguments.max_kill_s))
        finally:
            frozen.set()
            await world
        caught, stop_code, _ = await final_run(harness)
        code = report(harness, caught, stop_code, time.monotonic() - started)
    if code == 0 and not arguments.keep:
        shutil.rmtree(folder)
    else:
        print(f"state folder kept: {folder} (daemon log: {harness.log.name})")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=30, help="daemons to kill with SIGKILL (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulator and the kill times (default 1)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    parser.add_argument("--max-kill-s", type=float, default=3.0, help="latest kill after READY, in s (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the state folder even when every check passes")
    arguments = parser.parse_args()
    if arguments.restarts < 1:
        parser.error("--restarts must be at least 1")
    raise SystemExit(asyncio.run(run(arguments)))


if __name__ == "__main__":
    main()
