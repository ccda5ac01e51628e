"""The dashboard's page, static files, JSON endpoints and retry actions, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from yarl import URL

from tests.fixtures.web import StartServer, web_settings
from whaled.config import Settings
from whaled.store import Database
from whaled.web import WebContext, WebServer, start_web
from whaled.web.redact import Redactor
from whaled.workflows import Step, StepContext, WorkflowDefinition, WorkflowEngine

TOKEN = "dashboard-test-token-0123456789"
STATUS = "/api/v1/dashboard/status"
JSON_HEADERS = {"Content-Type": "application/json"}


async def get_json(http: aiohttp.ClientSession, url: str, **options: Any) -> dict[str, Any]:
    async with http.get(url, **options) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        body: dict[str, Any] = await response.json()
        return body


async def add_run(db: Database, job: str, outcome: str, started_ms: int, error: str | None = None) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO job_runs (job, trigger, started_ms, finished_ms, outcome, error) VALUES (?, 'test', ?, ?, ?, ?)",
            (job, started_ms, started_ms + 1500, outcome, error),
        )


async def add_failed_workflow(
    db: Database, *, delivery_status: str = "unknown", target: str = "ops@example.com"
) -> tuple[int, int]:
    """Store a failed alert workflow with one alert and one delivery; return their ids."""
    async with db.transaction() as tx:
        workflow = await tx.execute(
            "INSERT INTO workflows (name, version, step_names, status, input, next_step, error, created_ms, updated_ms, "
            "finished_ms) VALUES ('alert', 1, '[\"evaluate\", \"deliver\"]', 'failed', '{}', 1, 'SMTP refused', 1, 2, 2)"
        )
        alert = await tx.execute(
            "INSERT INTO alerts (workflow_id, rule, kind, dedupe_key, source_event_id, title, payload, created_ms) "
            "VALUES (?, 'whale_trade', 'new', 'k', 1, 'Minke bought Yes', '{}', 1)",
            (workflow.lastrowid,),
        )
        delivery = await tx.execute(
            "INSERT INTO outbox (alert_id, channel, target, status, attempts, next_attempt_ms, last_error, created_ms, "
            "updated_ms) VALUES (?, ?, ?, ?, 3, 1, ?, 1, 1)",
            (
                alert.lastrowid,
                "webhook" if target.startswith("http") else "email",
                target,
                delivery_status,
                f"POST {target} timed out",
            ),
        )
    assert workflow.lastrowid is not None and delivery.lastrowid is not None
    return workflow.lastrowid, delivery.lastrowid


# The page and its files.


async def test_index_served_with_security_headers(server: WebServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
        csp = response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert '<script type="module" src="/static/dashboard.js"></script>' in html
    # Python's mimetypes maps .js to text/javascript or, with an older /etc/mime.types, application/javascript.
    kinds = {"dashboard.js": ("text/javascript", "application/javascript"), "dashboard.css": ("text/css",)}
    for name, allowed in {**kinds, "favicon.svg": ("image/svg+xml",)}.items():
        async with http.get(f"{server.url}/static/{name}") as response:
            assert response.status == 200, name
            assert response.content_type in allowed
            assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_page_scripts_never_write_html() -> None:
    """Data reaches the page through textContent only; no script assigns markup."""
    from whaled.web.dashboard import STATIC_DIR

    for script in STATIC_DIR.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"


async def test_page_is_open_but_data_needs_token(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(access_token=SecretStr(TOKEN))
    async with http.get(f"{server.url}/") as response:
        assert response.status == 200
        assert TOKEN not in await response.text()
    async with http.get(f"{server.url}{STATUS}") as response:
        assert response.status == 401
    body = await get_json(http, f"{server.url}{STATUS}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert TOKEN not in json.dumps(body)


# Summaries.


async def test_status_lists_jobs_with_last_run_and_history(
    db: Database, server: WebServer, http: aiohttp.ClientSession
) -> None:
    await add_run(db, "sync-markets", "success", 1_000)
    await add_run(db, "sync-markets", "failure", 2_000, error="OpinionHTTPError: HTTP 503")
    body = await get_json(http, f"{server.url}{STATUS}")

    jobs = {job["name"]: job for job in body["jobs"]}
    assert list(jobs) == ["sync-markets", "sync-whale-trades", "compute-whale-stats", "cleanup-old-activity"]
    markets = jobs["sync-markets"]
    assert markets["last_run"]["outcome"] == "failure"
    assert markets["last_run"]["duration_ms"] == 1500
    assert markets["last_run"]["error"] == "OpinionHTTPError: HTTP 503"
    assert markets["last_success_ms"] == 2_500
    assert [run["outcome"] for run in markets["history"]] == ["failure", "success"]
    assert markets["next_run"] is not None
    assert jobs["cleanup-old-activity"]["trigger"] == "daily at 03:00 UTC"
    assert jobs["sync-whale-trades"]["last_run"] is None
    assert body["health"]["status"] in ("ok", "unhealthy")
    assert body["governor"] is None
    assert body["feed"]["clients"] == 0


async def test_wallets_and_markets_summaries(db: Database, server: WebServer, http: aiohttp.ClientSession) -> None:
    wallet = "0x" + "ab" * 20
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO wallets (address, label, source, added_ms, is_whale) VALUES (?, 'Minke', 'config', 0, 1)",
            (wallet,),
        )
        await tx.execute(
            "INSERT INTO sync_cursors (wallet, last_synced_ms, last_error, last_error_ms) VALUES (?, 5, 'HTTP 503', 6)",
            (wallet,),
        )
        await tx.execute(
            "INSERT INTO sync_gaps (wallet, older_than_ms, recorded_ms, reason) VALUES (?, 1, 2, 'page limit')",
            (wallet,),
        )
        for market_id, price in ((1, "0.40"), (2, "0.50")):
            await tx.execute(
                "INSERT INTO markets (market_id, root_market_id, is_root, title, root_title, status, status_name, "
                "yes_price, volume_24h, first_seen_ms, updated_ms) VALUES (?, ?, 1, ?, ?, 2, 'Activated', ?, '1000', 0, 0)",
                (market_id, market_id, f"market {market_id}", f"market {market_id}", price),
            )
        # Market 1 moved from 0.55 to 0.40; market 2 from 0.495 to 0.50, below the 0.02 threshold.
        await tx.execute(
            "INSERT INTO market_snapshots (market_id, taken_ms, volume, yes_price) VALUES (1, 1, '0', '0.55')"
        )
        await tx.execute(
            "INSERT INTO market_snapshots (market_id, taken_ms, volume, yes_price) VALUES (2, 1, '0', '0.495')"
        )

    wallets = await get_json(http, f"{server.url}/api/v1/dashboard/wallets")
    [covered] = wallets["coverage"]
    assert covered["address"] == wallet
    assert covered["last_error"] == "HTTP 503"
    assert covered["gaps"] == 1
    assert wallets["leaderboard"][0]["label"] == "Minke"

    markets = await get_json(http, f"{server.url}/api/v1/dashboard/markets")
    assert [move["market_id"] for move in markets["moves"]] == [1]
    assert Decimal(markets["moves"][0]["change"]) == Decimal("-0.15")
    assert markets["moves"][0]["price_then"] == "0.55"


async def test_workflows_summary_hides_webhook_path(db: Database, http: aiohttp.ClientSession) -> None:
    hook = "https://hooks.example.com/services/T000/B000/secret-path-token"
    settings = Settings(
        web={"host": "127.0.0.1", "port": 0},
        alerts={"webhook_urls": [hook], "webhook_secret": "signing-secret-123"},
    )
    workflow_id, delivery_id = await add_failed_workflow(db, target=hook)
    server = await start_web(WebContext(db=db, settings=settings))
    try:
        body = await get_json(http, f"{server.url}/api/v1/dashboard/workflows")
    finally:
        await server.close()
    text = json.dumps(body, ensure_ascii=False)
    assert "secret-path-token" not in text
    assert "https://hooks.example.com/…" in text
    assert body["workflows"] == {"failed": 1}
    assert body["outbox"] == {"unknown": 1}
    assert [run["id"] for run in body["runs"]] == [workflow_id]
    assert body["runs"][0]["next_step_name"] == "deliver"
    assert [delivery["id"] for delivery in body["deliveries"]] == [delivery_id]
    assert body["deliveries"][0]["workflow_id"] == workflow_id


async def test_short_secret_is_masked_on_pages(db: Database, http: aiohttp.ClientSession) -> None:
    settings = Settings(web={"host": "127.0.0.1", "port": 0}, smtp={"password": "pw7"})
    await add_failed_workflow(db)
    async with db.transaction() as tx:
        await tx.execute("UPDATE outbox SET last_error = 'AUTH PLAIN rejected for ops:pw7 (pw7x kept)'")
    server = await start_web(WebContext(db=db, settings=settings))
    try:
        body = await get_json(http, f"{server.url}/api/v1/dashboard/workflows")
    finally:
        await server.close()
    assert body["deliveries"][0]["last_error"] == "AUTH PLAIN rejected for ops:*** (pw7x kept)"


def test_redactor_masks_secrets_of_any_length() -> None:
    settings = Settings(
        smtp={"password": "a"},
        opinion={"api_key": "opinion-key-0123456789"},
        alerts={"webhook_urls": ["https://hooks.example/T0/opinion-key-0123456789"], "webhook_secret": 's"q'},
    )
    redactor = Redactor(settings)
    assert redactor.text("a") == "***"
    assert redactor.text("user a, about abc") == "user ***, about abc"
    assert redactor.text("key=opinion-key-0123456789x") == "key=***x"
    assert redactor.text("POST https://hooks.example/T0/opinion-key-0123456789 failed") == (
        "POST https://hooks.example/… failed"
    )
    assert redactor.text('sig s"q.') == "sig ***."
    assert redactor.masked({"a": ["a", 1, None], "name": "a b"}) == {"***": ["***", 1, None], "name": "*** b"}


def test_redactor_keeps_metrics_format() -> None:
    redactor = Redactor(Settings(smtp={"password": "3"}, opinion={"api_key": "opinion-key-0123456789"}))
    text = (
        "# HELP whaled_up 3 parts\n"
        'whaled_errors{job="3",error="login 3 failed: \\"3\\""} 3\n'
        'whaled_errors{job="x",error="opinion-key-0123456789"} 3\n'
    )
    assert redactor.exposition(text) == (
        "# HELP whaled_up 3 parts\n"
        'whaled_errors{job="***",error="login *** failed: \\"***\\""} 3\n'
        'whaled_errors{job="x",error="***"} 3\n'
    )


# Retry actions.


async def test_retry_resets_workflow_and_requeues_delivery(
    db: Database, server: WebServer, http: aiohttp.ClientSession
) -> None:
    workflow_id, delivery_id = await add_failed_workflow(db)
    url = f"{server.url}/api/v1/dashboard/workflows/{workflow_id}/retry"
    async with http.post(url, data="{}", headers=JSON_HEADERS) as response:
        assert response.status == 200
        body = await response.json()
    assert body["resumed"] is True
    assert body["requeued"] == 1
    workflow = await db.fetchone("SELECT status, error FROM workflows WHERE id = ?", (workflow_id,))
    delivery = await db.fetchone("SELECT status, attempts FROM outbox WHERE id = ?", (delivery_id,))
    assert workflow is not None and tuple(workflow) == ("pending", None)
    assert delivery is not None and tuple(delivery) == ("pending", 0)

    async with http.post(url, data="{}", headers=JSON_HEADERS) as response:
        assert response.status == 409
        assert "nothing to retry" in (await response.json())["message"]


async def test_retry_delivery_requeues_its_alert(db: Database, server: WebServer, http: aiohttp.ClientSession) -> None:
    _, delivery_id = await add_failed_workflow(db, delivery_status="failed")
    async with http.post(
        f"{server.url}/api/v1/dashboard/deliveries/{delivery_id}/retry", data="{}", headers=JSON_HEADERS
    ) as response:
        assert response.status == 200
        assert (await response.json())["requeued"] == 1
    row = await db.fetchone("SELECT status FROM outbox WHERE id = ?", (delivery_id,))
    assert row is not None and row["status"] == "pending"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({**JSON_HEADERS, "Origin": "https://evil.example"}, 403),
    ],
)
async def test_retry_rejects_requests_a_foreign_page_can_send(
    db: Database, server: WebServer, http: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    workflow_id, _ = await add_failed_workflow(db)
    async with http.post(
        f"{server.url}/api/v1/dashboard/workflows/{workflow_id}/retry", data="{}", headers=headers
    ) as response:
        assert response.status == status
    row = await db.fetchone("SELECT status FROM workflows WHERE id = ?", (workflow_id,))
    assert row is not None and row["status"] == "failed"


async def test_retry_unknown_workflow_is_404(server: WebServer, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{server.url}/api/v1/dashboard/workflows/999/retry", data="{}", headers=JSON_HEADERS
    ) as response:
        assert response.status == 404
        assert (await response.json())["error"]["parameter"] == "workflow_id"


@pytest.fixture
async def engine(db: Database) -> AsyncIterator[WorkflowEngine]:
    engine = WorkflowEngine(db, poll_interval_s=3600)
    yield engine
    await engine.close(0.1)


async def test_retry_with_engine_resumes_run_at_once(
    db: Database, engine: WorkflowEngine, http: aiohttp.ClientSession
) -> None:
    attempts: list[int] = []

    async def flaky(ctx: StepContext) -> dict[str, int]:
        attempts.append(ctx.workflow_id)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails")
        return {"attempts": len(attempts)}

    engine.register(WorkflowDefinition("flaky", 1, (Step("only", flaky),)))
    workflow_id = await engine.start("flaky", {})
    assert (await engine.wait(workflow_id, 5)).status == "failed"

    server = await start_web(WebContext(db=db, settings=web_settings(), workflows=engine))
    try:
        async with http.post(
            f"{server.url}/api/v1/dashboard/workflows/{workflow_id}/retry", data="{}", headers=JSON_HEADERS
        ) as response:
            assert response.status == 200
            assert (await response.json())["resumed"] is True
        assert (await engine.wait(workflow_id, 5)).status == "succeeded"
    finally:
        await server.close()
    assert len(attempts) == 2


@pytest.mark.parametrize("body", ["x", "", "[]", '"{}"', "{", "\xff"])
async def test_retry_rejects_body_that_is_not_json_object(
    db: Database, server: WebServer, http: aiohttp.ClientSession, body: str
) -> None:
    workflow_id, _ = await add_failed_workflow(db)
    url = f"{server.url}/api/v1/dashboard/workflows/{workflow_id}/retry"
    async with http.post(url, data=body.encode("latin-1"), headers=JSON_HEADERS) as response:
        assert response.status == 400
        assert (await response.json())["error"]["parameter"] == "body"
    row = await db.fetchone("SELECT status FROM workflows WHERE id = ?", (workflow_id,))
    assert row is not None and row["status"] == "failed"


@pytest.mark.parametrize(
    ("kind", "value"),
    [("workflows", "%C2%B2"), ("workflows", "0"), ("workflows", "9" * 30), ("deliveries", "%D9%A5")],
)
async def test_retry_rejects_invalid_id(server: WebServer, http: aiohttp.ClientSession, kind: str, value: str) -> None:
    url = URL(f"{server.url}/api/v1/dashboard/{kind}/{value}/retry", encoded=True)
    async with http.post(url, data="{}", headers=JSON_HEADERS) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["parameter"] == ("workflow_id" if kind == "workflows" else "delivery_id")
