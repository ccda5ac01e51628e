"""``whaled demo`` end to end, as a newcomer runs it: a real process, its config, and ``jobs list --json``."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from whaled.store import Database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def jobs_list(config: Path) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whaled",
        "jobs",
        "list",
        "--json",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    rows: list[dict[str, Any]] = json.loads(stdout)
    return rows


@pytest.mark.timeout(90)
async def test_demo_runs_all_jobs_within_a_minute(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whaled",
        "demo",
        "--state-dir",
        str(state),
        "--port",
        str(free_port()),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    config = state / "whaled.toml"
    try:
        async with asyncio.timeout(60):
            while True:
                if config.exists():
                    rows = await jobs_list(config)
                    outcomes = {row["name"]: (row["last_run"] or {}).get("outcome") for row in rows}
                    if all(outcome == "success" for outcome in outcomes.values()):
                        break
                await asyncio.sleep(0.1)
        assert set(outcomes) == {"sync-markets", "sync-whale-trades", "compute-whale-stats", "cleanup-old-activity"}
        db = await Database.open(state / "whaled.db")
        try:
            markets = await db.fetchone("SELECT count(*) FROM markets")
            whale_trades = await db.fetchone("SELECT count(*) FROM trades WHERE is_whale = 1")
        finally:
            await db.close()
        assert markets is not None and markets[0] > 0
        assert whale_trades is not None and whale_trades[0] > 0
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await demo.communicate()
    assert demo.returncode == 0, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
