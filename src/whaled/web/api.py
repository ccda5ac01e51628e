"""The read-only JSON API under ``/api/v1``; ``/api/v1/openapi.json`` describes every endpoint.

Handlers parse their parameters first, then read inside one ``db.reader()`` block and leave it before the
response is written, so that no read transaction stays open while the client receives data.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from whaled.web import api_queries as queries
from whaled.web.api_params import EVENT_TOPICS, MAX_ID, Query, encode_cursor, parse_integer, parse_wallet
from whaled.web.context import WEB_CONTEXT, WebContext
from whaled.web.errors import ApiParameterError, json_error
from whaled.web.openapi import build_openapi

__all__ = ["API_PREFIX", "install"]

API_PREFIX = "/api/v1"
_MAX_OFFSET = 100_000


def install(app: web.Application, ctx: WebContext) -> None:
    """Add the ``/api/v1`` routes and the middleware that turns every API error into the JSON error body."""
    app.middlewares.append(_api_errors)
    routes = [
        web.get(f"{API_PREFIX}/openapi.json", _openapi),
        web.get(f"{API_PREFIX}/markets", _markets),
        web.get(f"{API_PREFIX}/markets/{{market_id}}", _market),
        web.get(f"{API_PREFIX}/wallets", _wallets),
        web.get(f"{API_PREFIX}/wallets/{{address}}", _wallet),
        web.get(f"{API_PREFIX}/trades", _trades),
        web.get(f"{API_PREFIX}/alerts", _alerts),
        web.get(f"{API_PREFIX}/job-runs", _job_runs),
        web.get(f"{API_PREFIX}/events", _events),
    ]
    app.router.add_routes(routes)


@web.middleware
async def _api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiParameterError as exc:
        return json_error(exc.status, str(exc), exc.parameter)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, f"{exc.reason}: {request.method} {request.path}", headers=_allow(exc))


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


def _context(request: web.Request) -> WebContext:
    return request.app[WEB_CONTEXT]


def _path_int(request: web.Request, name: str) -> int:
    return parse_integer(request.match_info[name], name, minimum=1, maximum=MAX_ID)


def _not_found(what: str, parameter: str) -> ApiParameterError:
    return ApiParameterError(parameter, f"{what} not found", status=404)


async def _openapi(request: web.Request) -> web.Response:
    Query(request.query, ())
    return web.json_response(build_openapi(API_PREFIX))


async def _markets(request: web.Request) -> web.Response:
    query = Query(request.query, ("status", "search", "sort", "order", "limit", "offset"))
    sort = query.choice("sort", tuple(queries.MARKET_SORTS), "volume")
    default_order = "asc" if sort == "title" else "desc"
    market_filter = queries.MarketFilter(
        status=query.market_status("status"),
        search=query.text("search"),
        sort=sort,
        descending=query.choice("order", ("asc", "desc"), default_order) == "desc",
        limit=query.limit(50, 200),
        offset=query.integer("offset", 0, minimum=0, maximum=_MAX_OFFSET) or 0,
    )
    async with _context(request).db.reader() as conn:
        await conn.execute("BEGIN")
        body = await queries.list_markets(conn, market_filter)
    return web.json_response(body)


async def _market(request: web.Request) -> web.Response:
    market_id = _path_int(request, "market_id")
    query = Query(request.query, ("since", "limit"))
    since_ms = query.time_ms("since")
    limit = query.limit(500, 5000)
    async with _context(request).db.reader() as conn:
        await conn.execute("BEGIN")
        market = await queries.read_market(conn, market_id)
        history = await queries.market_history(conn, market_id, since_ms, limit) if market else []
    if market is None:
        raise _not_found(f"market {market_id}", "market_id")
    return web.json_response({"market": market, "history": history})


async def _wallets(request: web.Request) -> web.Response:
    query = Query(request.query, ("sort", "whales", "tracked", "limit", "offset"))
    options: dict[str, Any] = {
        "sort": query.choice("sort", tuple(queries.WALLET_SORTS), "volume_30d"),
        "whales": query.boolean("whales"),
        "tracked": query.boolean("tracked"),
        "limit": query.limit(50, 500),
        "offset": query.integer("offset", 0, minimum=0, maximum=_MAX_OFFSET) or 0,
    }
    async with _context(request).db.reader() as conn:
        await conn.execute("BEGIN")
        body = await queries.list_wallets(conn, **options)
    return web.json_response(body)


async def _wallet(request: web.Request) -> web.Response:
    address = parse_wallet(request.match_info["address"], "address")
    query = Query(request.query, ("trades_limit",))
    trades_limit = query.integer("trades_limit", 50, minimum=0, maximum=500) or 0
    async with _context(request).db.reader() as conn:
        await conn.execute("BEGIN")
        wallet = await queries.read_wallet(conn, address, trades_limit)
    if wallet is None:
        raise _not_found(f"wallet {address}", "address")
    return web.json_response({"wallet": wallet})


def _next_cursor(items: list[dict[str, Any]], more: bool, *keys: str) -> str | None:
    if not more or not items:
        return None
    return encode_cursor(*(int(items[-1][key]) for key in keys))


async def _trades(request: web.Request) -> web.Response:
    query = Query(request.query, ("wallet", "market", "whale", "since", "until", "limit", "cursor"))
    trade_filter = queries.TradeFilter(
        wallet=query.wallet("wallet"),
        market_id=query.integer("market", None, minimum=1, maximum=MAX_ID),
        whale_only=bool(query.boolean("whale")),
        since_ms=query.time_ms("since"),
        until_ms=query.time_ms("until"),
        after_key=query.cursor(2),
        limit=query.limit(100, 500),
    )
    async with _context(request).db.reader() as conn:
        trades, more = await queries.list_trades(conn, trade_filter)
    return web.json_response({"trades": trades, "next_cursor": _next_cursor(trades, more, "created_at_ms", "id")})


async def _alerts(request: web.Request) -> web.Response:
    query = Query(request.query, ("wallet", "market", "limit", "cursor"))
    cursor = query.cursor(1)
    options: dict[str, Any] = {
        "wallet": query.wallet("wallet"),
        "market_id": query.integer("market", None, minimum=1, maximum=MAX_ID),
        "before_id": cursor[0] if cursor else None,
        "limit": query.limit(50, 500),
    }
    async with _context(request).db.reader() as conn:
        await conn.execute("BEGIN")
        alerts, more = await queries.list_alerts(conn, **options)
    return web.json_response({"alerts": alerts, "next_cursor": _next_cursor(alerts, more, "id")})


async def _job_runs(request: web.Request) -> web.Response:
    query = Query(request.query, ("job", "outcome", "limit", "cursor"))
    cursor = query.cursor(1)
    options: dict[str, Any] = {
        "job": query.text("job", max_chars=64),
        "outcome": query.text("outcome", max_chars=32),
        "before_id": cursor[0] if cursor else None,
        "limit": query.limit(50, 500),
    }
    async with _context(request).db.reader() as conn:
        runs, more = await queries.list_job_runs(conn, **options)
    return web.json_response({"job_runs": runs, "next_cursor": _next_cursor(runs, more, "id")})


async def _events(request: web.Request) -> web.Response:
    query = Query(request.query, ("after", "topic", "limit"))
    after_id = query.integer("after", 0, minimum=0, maximum=MAX_ID) or 0
    topic = query.optional_choice("topic", EVENT_TOPICS)
    limit = query.limit(100, 1000)
    async with _context(request).db.reader() as conn:
        await conn.execute("BEGIN")
        page = await queries.list_events(conn, after_id=after_id, topic=topic, limit=limit)
    first_kept = page.oldest_id if page.oldest_id is not None else page.newest_id + 1
    events = [event.to_json() for event in page.events]
    return web.json_response(
        {
            "events": events,
            "last_id": events[-1]["id"] if events else max(after_id, 0),
            "oldest_id": page.oldest_id,
            "newest_id": page.newest_id,
            "expired": after_id < first_kept - 1,
        }
    )
