"""Signals on a real ``whaled run`` process: SIGTERM and SIGINT shut down in order, SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import tomllib
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.service import WAIT_S, NotifyListener, StartDaemon, daemon_config
from whaled.simulator import RunningSimulator

# SIGTERM to exit: the grace period for runs (3 s) plus closing everything else.
STOP_BOUND_S = 10.0


def web_port(config: Path) -> int:
    port: int = tomllib.loads(config.read_text())["web"]["port"]
    return port


def tracked_wallets(database: Path) -> set[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT address FROM wallets WHERE tracked = 1")}


async def receive_until_close(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    while True:
        message = await ws.receive()
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return message


@pytest.mark.timeout(45)
async def test_sigterm_during_hung_request(
    simulator: RunningSimulator, tmp_path: Path, start_daemon: StartDaemon, notify_listener: NotifyListener
) -> None:
    """A run waiting on an API request that gets no response, and a feed client, must not hold up the exit."""
    simulator.faults.hang(path="/trade/user")
    config = tmp_path / "whaled.toml"
    config.write_text(daemon_config(simulator, tmp_path, jobs={"run_at_startup": True}))
    daemon = await start_daemon(config, notify=notify_listener)
    async with asyncio.timeout(WAIT_S):
        await notify_listener.wait_for("READY")
        await simulator.faults.wait_for_requests(1, "/trade/user")

    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{web_port(config)}/ws") as ws:
        hello = await asyncio.wait_for(ws.receive_json(), WAIT_S)
        started = loop.time()
        daemon.send(signal.SIGTERM)
        async with asyncio.timeout(STOP_BOUND_S):
            closing = await receive_until_close(ws)
            stopping = await notify_listener.wait_for("STOPPING")
            code = await daemon.wait()
        elapsed = loop.time() - started

    assert "last_id" in hello
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == 1001
    assert code == 0, daemon.stderr
    assert elapsed < STOP_BOUND_S
    assert stopping["STATUS"] == "stopping (SIGTERM)"
    assert "Task was destroyed" not in daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert "1 job runs were cancelled at shutdown" in daemon.stderr
    final = daemon.lines[-1]
    assert "whaled stopped: up " in final
    assert "1 cancelled" in final


async def test_sigint_stops_cleanly(
    simulator: RunningSimulator, tmp_path: Path, start_daemon: StartDaemon, notify_listener: NotifyListener
) -> None:
    config = tmp_path / "whaled.toml"
    config.write_text(daemon_config(simulator, tmp_path))
    daemon = await start_daemon(config, notify=notify_listener)
    async with asyncio.timeout(WAIT_S):
        await notify_listener.wait_for("READY")
        daemon.send(signal.SIGINT)
        code = await daemon.wait()

    assert code == 0, daemon.stderr
    assert "Received SIGINT: shutting down" in daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert (tmp_path / "whaled.db.lock").read_text() == ""


async def test_sighup_rejects_broken_config(
    simulator: RunningSimulator, tmp_path: Path, start_daemon: StartDaemon, notify_listener: NotifyListener
) -> None:
    config = tmp_path / "whaled.toml"
    original = daemon_config(simulator, tmp_path)
    config.write_text(original)
    daemon = await start_daemon(config, notify=notify_listener)
    async with asyncio.timeout(WAIT_S):
        await notify_listener.wait_for("READY")
        config.write_text(original.replace("rate_per_s = 15", "rate_per_s = 99\nbogus_key = 1"))
        daemon.send(signal.SIGHUP)
        await notify_listener.wait_for("RELOADING")
        ready = await notify_listener.wait_for("READY")
        rejected = await daemon.wait_for_line(r"Configuration reload rejected")
        rate = await daemon.wait_for_line(r"Invalid configuration: governor\.rate_per_s")
        bogus = await daemon.wait_for_line(r"Invalid configuration: governor\.bogus_key")

        # Still serving on the old configuration: a valid reload afterwards works.
        config.write_text(original)
        daemon.send(signal.SIGHUP)
        await notify_listener.wait_for("READY")
        await daemon.wait_for_line(r"Configuration reloaded: 0 keys applied")
        daemon.send(signal.SIGTERM)
        code = await daemon.wait()

    assert "2 problems" in rejected
    assert "received 99" in rate
    assert "bogus_key" in bogus
    assert ready["STATUS"].startswith("running; the last reload was rejected")
    assert code == 0, daemon.stderr
    assert "reloads: 1 applied, 1 rejected" in daemon.lines[-1]


async def test_sighup_applies_new_wallet(
    simulator: RunningSimulator, tmp_path: Path, start_daemon: StartDaemon, notify_listener: NotifyListener
) -> None:
    config = tmp_path / "whaled.toml"
    config.write_text(daemon_config(simulator, tmp_path, wallets=1))
    database = tmp_path / "whaled.db"
    daemon = await start_daemon(config, notify=notify_listener)
    async with asyncio.timeout(WAIT_S):
        await notify_listener.wait_for("READY")
        before = tracked_wallets(database)
        port = web_port(config)
        changed = daemon_config(simulator, tmp_path, wallets=2, whales={"whale_trade_usd": 777})
        changed = re.sub(r"(?m)^port = \d+$", f"port = {port + 1}", changed)
        config.write_text(changed)
        daemon.send(signal.SIGHUP)
        await notify_listener.wait_for("READY")
        applied = await daemon.wait_for_line(r"Configuration reloaded")
        restart = await daemon.wait_for_line(r"Configuration key web\.port changed")
        after = tracked_wallets(database)
        daemon.send(signal.SIGTERM)
        code = await daemon.wait()

    whales = simulator.state.whale_wallets
    assert before == {whales[0]}
    assert after == {whales[0], whales[1]}
    assert "wallets" in applied
    assert "whales.whale_trade_usd" in applied
    assert f"from {port} to {port + 1}" in restart
    assert "next restart" in restart
    assert "1 waiting for a restart" in applied
    assert code == 0, daemon.stderr
