"""Webhook deliveries through the outbox: signed JSON POSTs, retried on 5xx, given up on other 4xx."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.fixtures.smtp import alert_settings, append_trade, eventually, free_port
from whaled.notify import sign_body
from whaled.store import Database
from whaled.workflows import AlertService

SECRET = "webhook-secret-for-tests"


def receiver(replies: list[int], received: list[dict[str, Any]]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        received.append({"body": body, "headers": dict(request.headers)})
        return web.Response(status=replies.pop(0) if replies else 200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    return app


async def run_service(tmp_path: Path, db: Database, url: str, check: Any) -> None:
    settings = alert_settings(tmp_path, free_port(), recipients=[], webhook_urls=[url], webhook_secret=SECRET)
    service = AlertService(db, settings, None)
    await service.start()
    try:
        await append_trade(db, 1, title="Zürich")
        await eventually(check)
    finally:
        await service.close()


async def outbox_row(db: Database) -> dict[str, Any]:
    row = await db.fetchone("SELECT * FROM outbox")
    return dict(row) if row is not None else {}


async def test_webhook_is_signed_and_retried_after_503(
    tmp_path: Path, db: Database, aiohttp_server: AiohttpServer
) -> None:
    received: list[dict[str, Any]] = []
    server = await aiohttp_server(receiver([503, 503], received))

    async def sent() -> bool:
        return (await outbox_row(db)).get("status") == "sent"

    await run_service(tmp_path, db, str(server.make_url("/hook")), sent)
    assert len(received) == 3
    assert (await outbox_row(db))["attempts"] == 3
    body, headers = received[-1]["body"], received[-1]["headers"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Whaled-Signature"] == expected
    assert sign_body(SECRET, body) == expected
    assert {r["headers"]["Idempotency-Key"] for r in received} == {headers["Idempotency-Key"]}
    payload = json.loads(body)
    assert payload["type"] == "alert"
    assert payload["alert"]["market_title"] == "Zürich"
    assert payload["alert"]["rule"] == "whale_trade"


async def test_webhook_rejected_with_400_is_failed(tmp_path: Path, db: Database, aiohttp_server: AiohttpServer) -> None:
    received: list[dict[str, Any]] = []
    server = await aiohttp_server(receiver([400], received))

    async def failed() -> bool:
        return (await outbox_row(db)).get("status") == "failed"

    await run_service(tmp_path, db, str(server.make_url("/hook")), failed)
    assert len(received) == 1
    assert "HTTP 400" in (await outbox_row(db))["last_error"]
