"""The Opinion client against a real aiohttp server on 127.0.0.1 serving the captured samples."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from whaled.opinion import (
    OpinionAPIError,
    OpinionClient,
    OpinionHTTPError,
    OpinionPaginationError,
    OpinionPayloadError,
    OpinionTimeoutError,
    paginate,
)
from whaled.opinion.models import Page, to_ms

SAMPLES = Path(__file__).parent / "data" / "opinion"
FAKE_KEY = "sk-live-FAKE-0123456789abcdef"

Route = Callable[[web.Request], Any]


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Route]], Any]]:
    servers: list[TestServer] = []
    clients: list[OpinionClient] = []

    async def start(routes: dict[str, Route], **client_options: Any) -> OpinionClient:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        client = OpinionClient(str(server.make_url("/openapi")), api_key=FAKE_KEY, **client_options)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


def json_route(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    return handler


async def test_market_list_sample_parses(serve: Any) -> None:
    client = await serve({"/openapi/market": json_route(sample("market-list.json"))})
    page = await client.list_markets(1)
    assert page.total == 152
    categorical, binary = page.items
    assert categorical.market_type == 1
    assert categorical.child_markets is not None
    assert len(categorical.child_markets) == 8
    assert categorical.child_markets[0].yes_token_id == (
        "104075403407096613753978496718862265645897749420885727155534538642992038841179"
    )
    assert categorical.volume == Decimal("43093739.358262820690157600")
    assert categorical.cutoff_at == 1767110400 * 1000
    assert categorical.resolved_at is None
    assert binary.child_markets is None
    assert binary.volume_24h == Decimal(0)


async def test_categorical_sample_records_winner(serve: Any) -> None:
    client = await serve(
        {
            "/openapi/market/categorical/788": json_route(
                {"errno": 0, "result": {"data": sample("market-categorical.json")}}
            )
        }
    )
    market = await client.get_categorical_market(788)
    assert market.child_markets is not None
    first, second = market.child_markets
    assert first.winning_outcome == "Yes"
    assert second.winning_outcome == "No"
    assert market.labels == ["Politics"]


async def test_latest_price_milliseconds_kept(serve: Any) -> None:
    body = sample("latest-price.json")
    body["result"]["tokenId"] = "123"
    client = await serve({"/openapi/token/latest-price": json_route(body)})
    price = await client.latest_price("123")
    assert price.price == Decimal("0.002")
    assert price.timestamp == 1766844546000


async def test_code_msg_envelope_accepted(serve: Any) -> None:
    body = {"code": 0, "msg": "success", "result": {"total": 0, "list": []}}
    client = await serve({"/openapi/market": json_route(body)})
    page = await client.list_markets(1)
    assert page.items == []


async def test_nonzero_errno_with_http_200_is_error(serve: Any) -> None:
    body = {"errno": 11002, "errmsg": f"invalid API key {FAKE_KEY}", "result": None}
    client = await serve({"/openapi/trade/user/{wallet}": json_route(body)})
    with pytest.raises(OpinionAPIError) as caught:
        await client.user_trades("0x" + "1" * 40, 1)
    message = str(caught.value)
    assert "/trade/user/0x1111111111111111111111111111111111111111" in message
    assert "HTTP 200" in message
    assert "11002" in message
    assert FAKE_KEY not in message
    assert caught.value.transient is False


async def test_http_429_carries_retry_after(serve: Any) -> None:
    client = await serve({"/openapi/market": json_route({"code": 429, "msg": "slow down"}, 429, {"Retry-After": "7"})})
    with pytest.raises(OpinionHTTPError) as caught:
        await client.list_markets(1)
    assert caught.value.status == 429
    assert caught.value.retry_after == "7"
    assert caught.value.transient is True
    assert "HTTP 429" in str(caught.value)


async def test_malformed_json_is_payload_error(serve: Any) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(text='{"errno": 0, "result": {', content_type="application/json")

    client = await serve({"/openapi/market": broken})
    with pytest.raises(OpinionPayloadError, match="not valid JSON"):
        await client.list_markets(1)


async def test_wrong_field_type_is_payload_error(serve: Any) -> None:
    body = {"errno": 0, "result": {"total": 1, "list": [{"marketId": "not-a-number", "status": 2}]}}
    client = await serve({"/openapi/market": json_route(body)})
    with pytest.raises(OpinionPayloadError, match=r"/market: unexpected payload at 0\.marketId"):
        await client.list_markets(1)


async def test_unanswered_request_times_out(serve: Any) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        raise AssertionError("unreachable")

    client = await serve({"/openapi/market": hang}, connect_timeout_s=0.2, read_timeout_s=0.2, total_timeout_s=0.5)
    with pytest.raises(OpinionTimeoutError, match="/market"):
        async with asyncio.timeout(5):
            await client.list_markets(1)


async def test_api_key_sent_but_never_logged(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str | None] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("apikey"))
        return web.json_response({"errno": 0, "result": {"total": 0, "list": []}})

    caplog.set_level(logging.DEBUG)
    client = await serve({"/openapi/trade/user/{wallet}": echo, "/openapi/v2/leaderboard": echo})
    await client.user_trades("0x" + "2" * 40, 1)
    assert seen == [FAKE_KEY]
    assert FAKE_KEY not in caplog.text


def test_timestamps_normalised() -> None:
    assert to_ms(1736410809) == 1736410809000
    assert to_ms(1766844546000) == 1766844546000
    assert to_ms(0) is None
    assert to_ms("") is None


async def test_paginate_stops_on_repeated_page() -> None:
    calls: list[int] = []

    async def fetch(number: int) -> Page[int]:
        calls.append(number)
        return Page(total=None, items=list(range(20)))

    pages: list[int] = []
    with pytest.raises(OpinionPaginationError, match="page 2 repeats page 1"):
        async for number, _ in paginate(fetch, limit=20, max_pages=50, what="numbers"):
            pages.append(number)
    assert pages == [1]
    assert calls == [1, 2]


async def test_paginate_stops_on_total_and_limit() -> None:
    async def fetch(number: int) -> Page[int]:
        return Page(total=40, items=[number] * 20)

    pages = [number async for number, _ in paginate(fetch, limit=20, max_pages=50, what="numbers")]
    assert pages == [1, 2]

    async def endless(number: int) -> Page[int]:
        return Page(total=None, items=[number] * 20)

    capped = [number async for number, _ in paginate(endless, limit=20, max_pages=5, what="numbers")]
    assert capped == [1, 2, 3, 4, 5]
