"""``/metrics``: the Prometheus text format, parsed back with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from tests.fixtures.web import StartServer
from whaled.app import build_opinion
from whaled.config import Settings
from whaled.jobs import JobRunner
from whaled.monitor import Monitor
from whaled.simulator import RunningSimulator
from whaled.store import Database
from whaled.store.wallets import sync_config_wallets
from whaled.web import WebContext, WebServer, start_web
from whaled.web.feed import FEED_HUB

TOKEN = "metrics-test-token-0123456789"
# Families every server exposes.
ALWAYS = {
    # Jobs.
    "whaled_job_runs": "counter",
    "whaled_job_run_duration_seconds": "histogram",
    "whaled_job_last_success_timestamp_seconds": "gauge",
    "whaled_job_stale": "gauge",
    # Health.
    "whaled_healthy": "gauge",
    "whaled_health_problems": "gauge",
    "whaled_database_writable": "gauge",
    # The websocket feed.
    "whaled_feed_clients": "gauge",
    "whaled_feed_events_broadcast": "counter",
    "whaled_feed_clients_dropped": "counter",
    # Workflows, the outbox and the database.
    "whaled_workflows": "gauge",
    "whaled_workflows_stuck": "gauge",
    "whaled_outbox_deliveries": "gauge",
    "whaled_outbox_depth": "gauge",
    "whaled_outbox_oldest_due_age_seconds": "gauge",
    "whaled_database_size_bytes": "gauge",
    "whaled_database_wal_size_bytes": "gauge",
}
# Families of the parts the daemon wires in: the governor and the running scheduler.
WIRED = {
    "whaled_job_running": "gauge",
    "whaled_governor_state": "gauge",
    "whaled_governor_tokens": "gauge",
    "whaled_governor_rate_limit_per_second": "gauge",
    "whaled_governor_queue_depth": "gauge",
    "whaled_governor_queue_wait_seconds": "histogram",
    "whaled_governor_requests": "counter",
    "whaled_governor_retries": "counter",
    "whaled_governor_pauses": "counter",
}


async def scrape(
    http: aiohttp.ClientSession, server: WebServer, *, wired: bool = False, **options: Any
) -> dict[str, list[Sample]]:
    """Scrape ``/metrics``, parse it and check that the expected families are there with their types."""
    async with http.get(f"{server.url}/metrics", **options) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    families = list(text_string_to_metric_families(text))
    types = {family.name: family.type for family in families}
    for name, kind in {**ALWAYS, **(WIRED if wired else {})}.items():
        assert types.get(name) == kind, f"{name}: expected a {kind}, found {types.get(name)}"
    return {family.name: family.samples for family in families}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [sample.value for sample in samples if sample.name == name and sample.labels == labels]
    assert len(found) == 1, f"{name}{labels} not found once in {samples}"
    return found[0]


@pytest.fixture
async def metrics_server(make_settings: Callable[..., Settings]) -> Any:
    """A server wired like the daemon's (governor, job schedule) and a job runner on the same database."""
    settings = make_settings(web={"host": "127.0.0.1", "port": 0})
    db = await Database.open(settings.store.path)
    client, governor, api = build_opinion(settings)
    async with db.transaction() as tx:
        await sync_config_wallets(tx, [(wallet.address, wallet.label) for wallet in settings.wallets])
    runner = JobRunner(db, api, settings)
    schedule = [{"name": "sync-markets", "enabled": True, "next_run": None, "running_run_id": None}]
    # No cache, so that a scrape right after a run includes it. The daemon's monitor caches a check for 1 s.
    monitor = Monitor(db, settings, governor_snapshot=governor.snapshot, cache_s=0)
    server = await start_web(
        WebContext(
            db=db,
            settings=settings,
            governor_snapshot=governor.snapshot,
            job_schedule=lambda: schedule,
            monitor=monitor,
        )
    )
    try:
        yield server, runner
    finally:
        await server.close()
        await client.close()
        await governor.close()
        await db.close()


async def test_metrics_parse_and_count_job_runs(
    metrics_server: tuple[WebServer, JobRunner], simulator: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    server, runner = metrics_server
    before = await scrape(http, server, wired=True)
    assert not [sample for sample in before["whaled_job_runs"] if sample.name == "whaled_job_runs_total"]
    assert value(before["whaled_healthy"], "whaled_healthy") == 1.0

    first = await runner.run("sync-markets")
    await runner.run("sync-markets")
    simulator.faults.api_error(10403, "forbidden", path="/market", count=1)
    assert (await runner.run("sync-markets")).outcome == "failure"

    after = await scrape(http, server, wired=True)
    runs = after["whaled_job_runs"]
    assert value(runs, "whaled_job_runs_total", job="sync-markets", outcome="success") == 2
    assert value(runs, "whaled_job_runs_total", job="sync-markets", outcome="failure") == 1
    durations = after["whaled_job_run_duration_seconds"]
    assert value(durations, "whaled_job_run_duration_seconds_count", job="sync-markets") == 3
    assert value(durations, "whaled_job_run_duration_seconds_bucket", job="sync-markets", le="+Inf") == 3
    last_success = value(
        after["whaled_job_last_success_timestamp_seconds"],
        "whaled_job_last_success_timestamp_seconds",
        job="sync-markets",
    )
    assert last_success > first.finished_ms / 1000
    assert value(after["whaled_job_running"], "whaled_job_running", job="sync-markets") == 0
    requests = after["whaled_governor_requests"]
    assert value(requests, "whaled_governor_requests_total", outcome="ok") > 0
    assert value(after["whaled_governor_state"], "whaled_governor_state", state="running") == 1
    assert value(after["whaled_governor_rate_limit_per_second"], "whaled_governor_rate_limit_per_second") == 15
    assert value(after["whaled_database_size_bytes"], "whaled_database_size_bytes") > 0
    assert value(after["whaled_workflows"], "whaled_workflows", status="failed") == 0


async def test_metrics_count_feed_clients(
    metrics_server: tuple[WebServer, JobRunner], http: aiohttp.ClientSession
) -> None:
    server, _ = metrics_server
    async with http.ws_connect(f"{server.url}/ws") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == "hello"
        samples = await scrape(http, server, wired=True)
        assert value(samples["whaled_feed_clients"], "whaled_feed_clients") == 1
    assert server.app[FEED_HUB].stats().clients_closed_slow == 0
    dropped = samples["whaled_feed_clients_dropped"]
    assert value(dropped, "whaled_feed_clients_dropped_total", reason="slow") == 0


async def test_metrics_show_outbox_depth_and_stuck_age(db: Database, http: aiohttp.ClientSession) -> None:
    settings = Settings(web={"host": "127.0.0.1", "port": 0})
    server = await start_web(WebContext(db=db, settings=settings))
    try:
        async with db.transaction() as tx:
            alert = await tx.execute(
                "INSERT INTO alerts (rule, kind, dedupe_key, source_event_id, title, payload, created_ms) "
                "VALUES ('whale_trade', 'new', 'k1', 1, 't', '{}', 0)"
            )
            for target, status in (("a@example.com", "pending"), ("b@example.com", "unknown")):
                await tx.execute(
                    "INSERT INTO outbox (alert_id, channel, target, status, next_attempt_ms, created_ms, updated_ms) "
                    "VALUES (?, 'email', ?, ?, 1000, 0, 0)",
                    (alert.lastrowid, target, status),
                )
        samples = await scrape(http, server)
    finally:
        await server.close()
    assert value(samples["whaled_outbox_depth"], "whaled_outbox_depth") == 1
    assert value(samples["whaled_outbox_deliveries"], "whaled_outbox_deliveries", status="unknown") == 1
    assert value(samples["whaled_outbox_oldest_due_age_seconds"], "whaled_outbox_oldest_due_age_seconds") > 1e6
    assert value(samples["whaled_health_problems"], "whaled_health_problems", kind="outbox_stuck") == 1
    assert value(samples["whaled_healthy"], "whaled_healthy") == 0


async def test_metrics_need_token_when_configured(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(access_token=SecretStr(TOKEN))
    async with http.get(f"{server.url}/metrics") as response:
        assert response.status == 401
    samples = await scrape(http, server, headers={"Authorization": f"Bearer {TOKEN}"})
    assert "whaled_build_info" in samples


async def test_two_servers_keep_separate_registries(
    db: Database, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    first = await start_server()
    second = await start_server()
    async with http.ws_connect(f"{first.url}/ws") as ws:
        await ws.receive_json(timeout=5)
        assert value((await scrape(http, first))["whaled_feed_clients"], "whaled_feed_clients") == 1
        assert value((await scrape(http, second))["whaled_feed_clients"], "whaled_feed_clients") == 0
