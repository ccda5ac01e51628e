"""The web server: where it may listen, the access token, CORS, the access log and shutdown."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from tests.fixtures.web import StartServer, web_settings
from whaled.config import Settings, WebSettings
from whaled.store import Database
from whaled.web import WebContext, WebServer, WebStartError, create_app, start_web
from whaled.web.feed import FEED_HUB

TOKEN = "s3cret-token-for-tests"


def test_config_rejects_public_host_without_token() -> None:
    with pytest.raises(ValidationError, match="access_token is required"):
        WebSettings(host="0.0.0.0")


async def test_start_web_rejects_public_host_without_token(db: Database) -> None:
    # model_construct skips validation, as a settings object built in code might.
    unsafe = Settings.model_construct(web=WebSettings.model_construct(host="0.0.0.0", port=0, access_token=None))
    with pytest.raises(WebStartError, match=r"requires web\.access_token") as refused:
        await start_web(WebContext(db=db, settings=unsafe))
    assert refused.value.host == "0.0.0.0"


async def test_start_web_reports_address_in_use(db: Database, server: WebServer) -> None:
    settings = web_settings(port=server.port)
    with pytest.raises(WebStartError, match=f"127.0.0.1:{server.port}"):
        await start_web(WebContext(db=db, settings=settings))


def test_create_app_installs_every_part(db: Database) -> None:
    app = create_app(WebContext(db=db, settings=web_settings()))
    paths = {resource.canonical for resource in app.router.resources()}
    assert {"/ws", "/api/v1/markets", "/api/v1/openapi.json"} <= paths
    assert isinstance(app[FEED_HUB].settings, WebSettings)


@pytest.fixture
async def guarded(start_server: StartServer) -> WebServer:
    return await start_server(access_token=SecretStr(TOKEN))


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "}],
)
async def test_api_without_valid_token_gets_401(
    guarded: WebServer, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    async with http.get(f"{guarded.url}/api/v1/markets", headers=headers) as response:
        assert response.status == 401
        body = await response.json()
    assert body["error"]["parameter"] == "access_token"
    assert TOKEN not in str(body)


async def test_api_accepts_bearer_header_and_query_token(guarded: WebServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{guarded.url}/api/v1/markets", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 200
    async with http.get(f"{guarded.url}/api/v1/markets", params={"access_token": TOKEN}) as response:
        assert response.status == 200


async def test_feed_requires_token(guarded: WebServer, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as rejected:
        await http.ws_connect(f"{guarded.url}/ws")
    assert rejected.value.status == 401
    async with http.ws_connect(f"{guarded.url}/ws", params={"access_token": TOKEN}) as ws:
        assert (await ws.receive_json())["op"] == "hello"
    async with http.ws_connect(f"{guarded.url}/ws", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert (await ws.receive_json())["op"] == "hello"


async def test_token_never_reaches_the_logs(
    guarded: WebServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="whaled")
    for token in (TOKEN, TOKEN + "x"):
        async with http.get(f"{guarded.url}/api/v1/markets", params={"access_token": token, "limit": "5"}):
            pass
    async with http.ws_connect(f"{guarded.url}/ws", params={"access_token": TOKEN}) as ws:
        await ws.receive_json()
    assert "access_token=***" in caplog.text
    assert TOKEN not in caplog.text


async def test_unprotected_server_needs_no_token(server: WebServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/api/v1/markets") as response:
        assert response.status == 200


async def test_cors_is_off_by_default(server: WebServer, http: aiohttp.ClientSession) -> None:
    headers = {"Origin": "https://dash.example"}
    async with http.get(f"{server.url}/api/v1/markets", headers=headers) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_allows_listed_origin_only(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(cors_origins=("https://dash.example",), access_token=SecretStr(TOKEN))
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    async with http.options(f"{server.url}/api/v1/markets", headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    async with http.get(f"{server.url}/api/v1/markets", headers={"Origin": "https://dash.example"}) as response:
        assert response.status == 401
        assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    async with http.get(f"{server.url}/api/v1/markets", headers={"Origin": "https://evil.example"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_close_logs_and_is_idempotent(server: WebServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="whaled")
    await server.close()
    await server.close()
    assert f"Web server on {server.url} stopped" in caplog.text
    assert "Feed stopped at event 0" in caplog.text


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_config_rejects_short_token(host: str) -> None:
    with pytest.raises(ValidationError, match="access_token: must be at least 16 characters") as rejected:
        WebSettings(host=host, access_token=SecretStr("x" * 15))
    assert "x" * 15 not in str(rejected.value)
    assert WebSettings(host=host, access_token=SecretStr("x" * 16)).access_token is not None


# DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends its own name in Host.
REBOUND_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example:{port}"]
LOOPBACK_HOSTS = ["localhost", "LOCALHOST:{port}", "127.0.0.1", "127.0.0.1:{port}", "127.5.6.7:{port}", "[::1]:{port}"]


@pytest.mark.parametrize("host", REBOUND_HOSTS)
async def test_foreign_host_rejected_without_token(server: WebServer, http: aiohttp.ClientSession, host: str) -> None:
    headers = {"Host": host.format(port=server.port), "Origin": f"http://{host.format(port=server.port)}"}
    for path in ("/api/v1/trades", "/api/v1/dashboard/status", "/healthz", "/metrics", "/"):
        async with http.get(f"{server.url}{path}", headers=headers) as response:
            assert response.status == 421, path
            body = await response.json()
            assert body["error"]["parameter"] == "Host"
    retry = f"{server.url}/api/v1/dashboard/workflows/1/retry"
    async with http.post(retry, data="{}", headers={**headers, "Content-Type": "application/json"}) as response:
        assert response.status == 421
    with pytest.raises(aiohttp.WSServerHandshakeError) as rejected:
        await http.ws_connect(f"{server.url}/ws", headers=headers)
    assert rejected.value.status == 421


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_loopback_host_accepted_without_token(server: WebServer, http: aiohttp.ClientSession, host: str) -> None:
    headers = {"Host": host.format(port=server.port)}
    async with http.get(f"{server.url}/api/v1/trades", headers=headers) as response:
        assert response.status == 200
    async with http.ws_connect(f"{server.url}/ws", headers=headers) as ws:
        assert (await ws.receive_json())["op"] == "hello"


async def test_any_host_accepted_with_token(guarded: WebServer, http: aiohttp.ClientSession) -> None:
    headers = {"Host": "whaled.example.net", "Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{guarded.url}/api/v1/trades", headers=headers) as response:
        assert response.status == 200


async def test_unexpected_error_is_json_500(
    db: Database, server: WebServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with db.transaction() as tx:
        await tx.execute("DROP TABLE job_runs")
    caplog.set_level(logging.ERROR, logger="whaled")
    async with http.get(f"{server.url}/api/v1/job-runs") as response:
        assert response.status == 500
        assert response.content_type == "application/json"
        body = await response.json()
    assert body == {"error": {"message": "internal server error; the server log has the details", "parameter": None}}
    (record,) = [record for record in caplog.records if record.exc_info]
    assert record.getMessage() == "Request GET /api/v1/job-runs failed"
    assert "no such table: job_runs" in caplog.text
