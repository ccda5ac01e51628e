"""The simulator's HTTP API: the Opinion OpenAPI under ``/openapi`` and the leaderboard under ``/api/bsc/api``.

Every response uses the live envelope ``{"errno", "errmsg", "result"}``, errors included. Parameters are
checked strictly, so that a client bug shows up here rather than against the real API. A ``limit`` above 20
(100 on the leaderboard), a page below 1 or an unknown ``status`` is rejected with HTTP 400 and errno 400
instead of being clamped. A ``chainId`` other than ``"56"`` matches nothing and returns an empty list.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from whaled.simulator._format import CHAIN_ID, SimulatorError
from whaled.simulator._stats import INTERVALS_S
from whaled.simulator.faults import REPLACING_KINDS, FaultKind, Faults
from whaled.simulator.state import SimulatorState

__all__ = [
    "FAULTS_KEY",
    "LEADERBOARD_PREFIX",
    "MAX_LEADERBOARD_LIMIT",
    "MAX_PAGE_LIMIT",
    "OPENAPI_PREFIX",
    "STATE_KEY",
    "create_app",
]

OPENAPI_PREFIX = "/openapi"
LEADERBOARD_PREFIX = "/api/bsc/api"
MAX_PAGE_LIMIT = 20
MAX_LEADERBOARD_LIMIT = 100
_DEFAULT_PAGE_LIMIT = 10
_INVALID_KEY_ERRNO = 11002
_KEY_ONLY_PREFIXES = (f"{OPENAPI_PREFIX}/trade/", f"{OPENAPI_PREFIX}/positions/")
# A JSON envelope cut off in the middle of the first list item.
_MALFORMED_BODY = b'{"errno":0,"errmsg":"","result":{"total":1,"list":[{"marketId":'

STATE_KEY = web.AppKey("simulator_state", SimulatorState)
FAULTS_KEY = web.AppKey("simulator_faults", Faults)
_API_KEY = web.AppKey("simulator_api_key", str)
# Keep-alive connections (their request handlers) to close when their next request arrives.
_DOOMED_KEY = web.AppKey("simulator_doomed_connections", set[object])

_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _ApiProblem(SimulatorError):
    """A request the API rejects, with the HTTP ``status`` and ``errno`` of the error response."""

    def __init__(self, status: int, message: str, *, errno: int | None = None) -> None:
        self.status = status
        self.errno = status if errno is None else errno
        self.message = message
        super().__init__(message)


def create_app(state: SimulatorState, faults: Faults, *, api_key: str | None = None) -> web.Application:
    """Build the simulator's application.

    :param api_key: when set, ``/trade/*`` and ``/positions/*`` require it in the ``apikey`` header, and a
        wrong key is rejected on every ``/openapi`` path. Both get HTTP 401 with errno 11002.
    """
    app = web.Application(middlewares=[_fault_middleware, _envelope_middleware])
    app[STATE_KEY] = state
    app[FAULTS_KEY] = faults
    app[_API_KEY] = api_key or ""
    app[_DOOMED_KEY] = set()
    app.router.add_get(f"{OPENAPI_PREFIX}/market", _list_markets)
    app.router.add_get(f"{OPENAPI_PREFIX}/market/categorical/{{market_id}}", _categorical_market)
    app.router.add_get(f"{OPENAPI_PREFIX}/market/{{market_id}}", _market)
    app.router.add_get(f"{OPENAPI_PREFIX}/token/latest-price", _latest_price)
    app.router.add_get(f"{OPENAPI_PREFIX}/token/orderbook", _orderbook)
    app.router.add_get(f"{OPENAPI_PREFIX}/token/price-history", _price_history)
    app.router.add_get(f"{OPENAPI_PREFIX}/trade/user/{{wallet}}", _user_trades)
    app.router.add_get(f"{OPENAPI_PREFIX}/positions/user/{{wallet}}", _user_positions)
    app.router.add_get(f"{LEADERBOARD_PREFIX}/v2/leaderboard", _leaderboard)
    app.on_shutdown.append(_release_waiting)
    return app


async def _release_waiting(app: web.Application) -> None:
    app[FAULTS_KEY].release()


# Middlewares


@web.middleware
async def _fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log the request and apply the switched-on faults around the real handler."""
    faults = request.app[FAULTS_KEY]
    endpoint = _endpoint(request.path)
    record = faults.record(request.path, endpoint, dict(request.query))
    doomed = request.app[_DOOMED_KEY]
    if request.protocol in doomed:
        doomed.discard(request.protocol)
        return _drop(request)
    latency = faults.take(FaultKind.latency, endpoint, request.path)
    if latency is not None:
        await faults.sleep(latency.seconds)
    if faults.take(FaultKind.hang, endpoint, request.path) is not None:
        await faults.wait_released()
        return _drop(request)
    if faults.take(FaultKind.disconnect, endpoint, request.path) is not None:
        return _drop(request)
    replacement = _replacement(faults, endpoint, request.path)
    response = replacement if replacement is not None else await handler(request)
    if faults.take(FaultKind.code_msg_envelope, endpoint, request.path) is not None:
        response = _as_code_msg(response)
    if faults.take(FaultKind.drop_connection, endpoint, request.path) is not None:
        doomed.add(request.protocol)
    record.status = response.status
    return response


@web.middleware
async def _envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the API key, and return rejected requests and unknown paths as error envelopes."""
    try:
        _check_api_key(request)
        return await handler(request)
    except _ApiProblem as problem:
        return _envelope(None, status=problem.status, errno=problem.errno, errmsg=problem.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = f"not found: {request.path}" if exc.status == 404 else exc.reason
        return _envelope(None, status=exc.status, errno=exc.status, errmsg=message)


def _check_api_key(request: web.Request) -> None:
    expected = request.app[_API_KEY]
    if not expected or not request.path.startswith(OPENAPI_PREFIX):
        return
    given = request.headers.get("apikey")
    needed = request.path.startswith(_KEY_ONLY_PREFIXES)
    if (given is None and needed) or (given is not None and given != expected):
        raise _ApiProblem(401, "invalid API key", errno=_INVALID_KEY_ERRNO)


def _replacement(faults: Faults, endpoint: str, path: str) -> web.Response | None:
    for kind in REPLACING_KINDS:
        fault = faults.take(kind, endpoint, path)
        if fault is None:
            continue
        if kind is FaultKind.malformed_json:
            return web.Response(status=200, body=_MALFORMED_BODY, content_type="application/json")
        response = _envelope(None, status=fault.status, errno=fault.errno, errmsg=fault.errmsg)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response
    return None


def _as_code_msg(response: web.StreamResponse) -> web.StreamResponse:
    """Respell an ``errno/errmsg`` envelope as ``code/msg``; other bodies pass through."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    try:
        body = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(body, dict) or "errno" not in body:
        return response
    respelled = {"code": body["errno"], "msg": body.get("errmsg") or "success", "result": body.get("result")}
    replaced = web.Response(status=response.status, body=_dumps(respelled).encode(), content_type="application/json")
    for name in ("Retry-After",):
        if name in response.headers:
            replaced.headers[name] = response.headers[name]
    return replaced


def _drop(request: web.Request) -> web.Response:
    """Close the connection without a response. aiohttp then fails to write the placeholder and moves on."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


# Market handlers


async def _list_markets(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in ("activated", "resolved"):
        raise _ApiProblem(400, f"invalid status {status!r}; use activated or resolved")
    market_type = _int_param(request, "marketType", default=0, low=0, high=2)
    sort_by = _int_param(request, "sortBy", default=0, low=0, high=8) or None
    page, limit = _page_params(request, MAX_PAGE_LIMIT)
    items: list[dict[str, Any]] = []
    if _chain_matches(request):
        items = request.app[STATE_KEY].list_markets(status=status, market_type=market_type, sort_by=sort_by)
    return _envelope(_paginate(items, _served_page(request, page), limit))


async def _market(request: web.Request) -> web.Response:
    market_id = _path_int(request, "market_id")
    data = request.app[STATE_KEY].market(market_id)
    if data is None:
        raise _ApiProblem(404, f"market {market_id} not found")
    return _envelope({"data": data})


async def _categorical_market(request: web.Request) -> web.Response:
    market_id = _path_int(request, "market_id")
    data = request.app[STATE_KEY].categorical_market(market_id)
    if data is None:
        raise _ApiProblem(404, f"categorical market {market_id} not found")
    return _envelope({"data": data})


# Token handlers


async def _latest_price(request: web.Request) -> web.Response:
    token_id = _token_param(request)
    return _envelope(_found(request.app[STATE_KEY].latest_price(token_id), token_id))


async def _orderbook(request: web.Request) -> web.Response:
    token_id = _token_param(request)
    return _envelope(_found(request.app[STATE_KEY].orderbook(token_id), token_id))


async def _price_history(request: web.Request) -> web.Response:
    token_id = _token_param(request)
    # Unknown intervals fall back to one day, as the live API was seen to do.
    interval_s = INTERVALS_S.get(request.query.get("interval", "1d"), INTERVALS_S["1d"])
    start_s = _int_param(request, "start_at", default=-1, low=0, high=None)
    end_s = _int_param(request, "end_at", default=-1, low=0, high=None)
    history = request.app[STATE_KEY].price_history(
        token_id,
        interval_s=interval_s,
        start_s=start_s if start_s >= 0 else None,
        end_s=end_s if end_s >= 0 else None,
    )
    return _envelope({"history": _found(history, token_id)})


# Wallet handlers


async def _user_trades(request: web.Request) -> web.Response:
    wallet = _wallet_param(request)
    page, limit = _page_params(request, MAX_PAGE_LIMIT)
    market_id = _int_param(request, "marketId", default=0, low=0, high=None) or None
    state = request.app[STATE_KEY]
    faults = request.app[FAULTS_KEY]
    shift = faults.take(FaultKind.shift_pages, _endpoint(request.path), request.path) if page > 1 else None
    if shift is not None:
        _add_shifting_trades(state, wallet, market_id, shift.new_trades)
    rows = state.trades(wallet, market_id=market_id) if _chain_matches(request) else []
    return _envelope(_paginate(rows, _served_page(request, page), limit))


def _add_shifting_trades(state: SimulatorState, wallet: str, market_id: int | None, count: int) -> None:
    """Add ``count`` new trades to the top of the wallet's list, in the filtered market where it trades."""
    overrides: dict[str, Any] = {}
    market = state.market(market_id) if market_id else None
    if market is not None and market.get("marketType") != 1:
        overrides["marketId"] = market_id
    for _ in range(count):
        state.add_trade(wallet, **overrides)


async def _user_positions(request: web.Request) -> web.Response:
    wallet = _wallet_param(request)
    page, limit = _page_params(request, MAX_PAGE_LIMIT)
    market_id = _int_param(request, "marketId", default=0, low=0, high=None) or None
    rows = request.app[STATE_KEY].positions(wallet) if _chain_matches(request) else []
    if market_id is not None:
        rows = [row for row in rows if market_id in (row["marketId"], row["rootMarketId"])]
    return _envelope(_paginate(rows, _served_page(request, page), limit))


async def _leaderboard(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", default=MAX_LEADERBOARD_LIMIT, low=1, high=MAX_LEADERBOARD_LIMIT)
    data_type = request.query.get("dataType", "volume")
    if data_type not in ("volume", "profit", "points"):
        raise _ApiProblem(400, f"invalid dataType {data_type!r}; use volume, profit or points")
    period = _int_param(request, "period", default=0, low=0, high=None)
    if period not in (0, 1, 7, 30):
        raise _ApiProblem(400, f"invalid period {period}; use 0 (all time), 1, 7 or 30")
    entries = request.app[STATE_KEY].leaderboard(data_type, period, limit) if _chain_matches(request) else []
    return _envelope({"list": entries})


# Parameters and responses


def _envelope(result: Any, *, status: int = 200, errno: int = 0, errmsg: str = "") -> web.Response:
    body = {"errno": errno, "errmsg": errmsg, "result": result}
    return web.Response(status=status, body=_dumps(body).encode(), content_type="application/json")


def _paginate(items: list[dict[str, Any]], page: int, limit: int) -> dict[str, Any]:
    start = (page - 1) * limit
    return {"total": len(items), "list": items[start : start + limit]}


def _served_page(request: web.Request, page: int) -> int:
    """Return the page to serve: page 1 instead of a later one while a repeat-first-page fault is on."""
    if page > 1 and request.app[FAULTS_KEY].take(FaultKind.repeat_first_page, _endpoint(request.path), request.path):
        return 1
    return page


def _page_params(request: web.Request, max_limit: int) -> tuple[int, int]:
    page = _int_param(request, "page", default=1, low=1, high=None)
    limit = _int_param(request, "limit", default=_DEFAULT_PAGE_LIMIT, low=1, high=max_limit)
    return page, limit


def _int_param(request: web.Request, name: str, *, default: int, low: int, high: int | None) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _ApiProblem(400, f"invalid {name} {text!r}; expected an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise _ApiProblem(400, f"invalid {name} {value}; expected {bound}")
    return value


def _path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isdigit():
        raise _ApiProblem(400, f"invalid {name} {text!r}; expected a positive integer")
    return int(text)


def _token_param(request: web.Request) -> str:
    token_id = request.query.get("token_id", "")
    if not token_id.isdigit():
        raise _ApiProblem(400, f"invalid token_id {token_id!r}; expected a decimal integer string")
    return token_id


def _wallet_param(request: web.Request) -> str:
    wallet = request.match_info["wallet"]
    digits = wallet[2:]
    if len(wallet) != 42 or not wallet.startswith("0x") or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise _ApiProblem(400, f"invalid wallet address {wallet!r}; expected 0x and 40 hex digits")
    return wallet.lower()


def _chain_matches(request: web.Request) -> bool:
    return request.query.get("chainId", CHAIN_ID) == CHAIN_ID


def _found(result: Any, token_id: str) -> Any:
    if result is None:
        raise _ApiProblem(404, f"token {token_id} not found")
    return result


def _endpoint(path: str) -> str:
    """Return the path after the API base, as the client names endpoints (``/trade/user/0x…``)."""
    for prefix in (OPENAPI_PREFIX, LEADERBOARD_PREFIX):
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return path
