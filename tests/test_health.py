"""``/healthz`` over HTTP: real jobs against the simulator, a real server, and time moved by time-machine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import time_machine
from pydantic import SecretStr

from tests.fixtures.web import StartServer
from whaled.app import build_opinion
from whaled.config import Settings
from whaled.governor import Governor, Priority
from whaled.jobs import JobRunner
from whaled.monitor import Monitor
from whaled.opinion.errors import OpinionHTTPError
from whaled.simulator import RunningSimulator
from whaled.store import Database
from whaled.store.wallets import sync_config_wallets
from whaled.web import WebContext, WebServer, start_web

TOKEN = "health-test-token-0123456789"
OTHER_JOBS_OFF = {
    "sync_whale_trades": {"enabled": False},
    "compute_whale_stats": {"enabled": False},
    "cleanup_old_activity": {"enabled": False},
}


async def get_health(http: aiohttp.ClientSession, server: WebServer) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{server.url}/healthz") as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


@pytest.fixture
async def job_stack(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Settings, Database, JobRunner]]:
    """Settings with only sync-markets enabled and no startup grace, its database and a job runner."""
    settings = make_settings(
        jobs=OTHER_JOBS_OFF,
        monitor={"startup_grace_s": 0},
        web={"host": "127.0.0.1", "port": 0},
    )
    db = await Database.open(settings.store.path)
    client, governor, api = build_opinion(settings)
    async with db.transaction() as tx:
        await sync_config_wallets(tx, [(wallet.address, wallet.label) for wallet in settings.wallets])
    try:
        yield settings, db, JobRunner(db, api, settings)
    finally:
        await client.close()
        await governor.close()
        await db.close()


async def test_healthz_503_until_job_recovers(
    job_stack: tuple[Settings, Database, JobRunner], simulator: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    settings, db, runner = job_stack
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), tick=True) as traveller:
        server = await start_web(WebContext(db=db, settings=settings, monitor=Monitor(db, settings, cache_s=0)))
        try:
            assert (await runner.run("sync-markets")).outcome == "success"
            status, body = await get_health(http, server)
            assert status == 200, body
            assert body["status"] == "ok"
            assert body["reasons"] == []

            fault = simulator.faults.api_error(10403, "forbidden", path="/market")
            for _ in range(3):
                traveller.shift(timedelta(seconds=310))
                assert (await runner.run("sync-markets")).outcome == "failure"
            status, body = await get_health(http, server)
            assert status == 503
            assert body["status"] == "unhealthy"
            assert len(body["reasons"]) == 1
            assert body["reasons"][0].startswith("job sync-markets last succeeded")
            assert body["problems"][0]["key"] == "job:sync-markets"

            fault.remaining = 0
            assert (await runner.run("sync-markets")).outcome == "success"
            status, body = await get_health(http, server)
            assert status == 200, body
        finally:
            await server.close()


async def test_healthz_needs_no_token(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(access_token=SecretStr(TOKEN))
    async with http.get(f"{server.url}/healthz") as response:
        assert response.status == 200
        text = await response.text()
    assert TOKEN not in text
    async with http.head(f"{server.url}/healthz") as response:
        assert response.status == 200


async def test_healthz_reports_503_on_unwritable_database(db: Database, http: aiohttp.ClientSession) -> None:
    settings = Settings(web={"host": "127.0.0.1", "port": 0}, monitor={"db_write_timeout_s": 0.05})
    server = await start_web(WebContext(db=db, settings=settings, monitor=Monitor(db, settings, cache_s=0)))
    try:
        async with db.transaction():
            status, body = await get_health(http, server)
        assert status == 503
        assert body["database"] == {"writable": False}
        assert [problem["kind"] for problem in body["problems"]] == ["database_unwritable"]
        status, _ = await get_health(http, server)
        assert status == 200
    finally:
        await server.close()


async def test_healthz_body_holds_no_secret(db: Database, http: aiohttp.ClientSession) -> None:
    """A reason built from an error that carries a secret still reaches the client without it."""
    api_key = "opinion-key-that-must-not-leak"
    settings = Settings(
        web={"host": "127.0.0.1", "port": 0},
        opinion={"api_key": api_key},
        governor={"failure_threshold": 1, "pause_s": 3600, "max_tries": 1},
        monitor={"governor_paused_max_s": 1},
    )
    governor = Governor(settings.governor)

    async def failing() -> None:
        raise OpinionHTTPError("/market", 503, message=f"upstream rejected apikey={api_key}")

    clock = [1_800_000_000_000]
    monitor = Monitor(db, settings, governor_snapshot=governor.snapshot, clock=lambda: clock[0], cache_s=0)
    server = await start_web(WebContext(db=db, settings=settings, governor_snapshot=governor.snapshot, monitor=monitor))
    try:
        with pytest.raises(OpinionHTTPError):
            await governor.call(failing, priority=Priority.markets, name="market list")
        assert api_key in governor.snapshot().state_reason
        await get_health(http, server)
        clock[0] += 2000
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            text = await response.text()
        assert "governor" in text
        assert api_key not in text
        assert "apikey=***" in text
    finally:
        await server.close()
        await governor.close()
