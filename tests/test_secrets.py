"""A recognisable fake API key never leaves the process: not in logs, errors, metrics, pages or the database."""

from __future__ import annotations

import asyncio
import signal
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.service import WAIT_S, StartDaemon, daemon_config
from whaled.simulator import RunningSimulator, start_simulator

FAKE_KEY = "sk-live-FAKE-5ecre7-0123456789abcdef"
FAKE_TOKEN = "tok-FAKE-access-9876543210"


@pytest.fixture
async def keyed_simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator that wants a different key, so that every wallet request fails with HTTP 401."""
    running = await start_simulator(evolve_every_s=None, api_key="the-right-key")
    try:
        yield running
    finally:
        await running.close()


async def fetch_all(port: int) -> str:
    """Read every page and document a person or a scraper would read, with and without the token."""
    bodies = []
    base = f"http://127.0.0.1:{port}"
    paths = ["/", "/healthz", "/metrics", "/api/v1/openapi.json", "/api/v1/job-runs", "/api/v1/events?after=0"]
    async with aiohttp.ClientSession() as http:
        for path in paths:
            for headers in ({}, {"Authorization": f"Bearer {FAKE_TOKEN}"}):
                async with http.get(base + path, headers=headers) as response:
                    bodies.append(await response.text())
    return "\n".join(bodies)


@pytest.mark.timeout(60)
async def test_fake_key_never_leaks(
    keyed_simulator: RunningSimulator, tmp_path: Path, start_daemon: StartDaemon
) -> None:
    config = tmp_path / "whaled.toml"
    config.write_text(daemon_config(keyed_simulator, tmp_path, jobs={"run_at_startup": True}, log={"level": "DEBUG"}))
    daemon = await start_daemon(config, WHALED_OPINION__API_KEY=FAKE_KEY, WHALED_WEB__ACCESS_TOKEN=FAKE_TOKEN)
    async with asyncio.timeout(WAIT_S * 2):
        await daemon.wait_for_line(r"Job cleanup-old-activity run \d+ (succeeded|ended)")
    pages = await fetch_all(tomllib.loads(config.read_text())["web"]["port"])
    daemon.send(signal.SIGTERM)
    async with asyncio.timeout(WAIT_S):
        assert await daemon.wait() == 0

    stderr = daemon.stderr
    assert "401" in stderr or "11002" in stderr, "the wallet requests were expected to fail with the wrong key"
    assert FAKE_KEY not in stderr
    assert FAKE_TOKEN not in stderr
    assert FAKE_KEY not in pages
    assert FAKE_TOKEN not in pages
    for data in await asyncio.to_thread(lambda: [path.read_bytes() for path in tmp_path.glob("whaled.db*")]):
        assert FAKE_KEY.encode() not in data
        assert FAKE_TOKEN.encode() not in data
