"""The Opinion OpenAPI client: one aiohttp session, one HTTP request per method call.

The client does not pace or retry: the governor wraps every call (see ``whaled.governor``). Errors are typed
(:mod:`whaled.opinion.errors`) and carry ``transient``, from which the governor decides what to retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import aiohttp
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from whaled.log import opinion_logger as logger
from whaled.opinion.errors import (
    OpinionAPIError,
    OpinionConnectionError,
    OpinionHTTPError,
    OpinionPayloadError,
    OpinionTimeoutError,
)
from whaled.opinion.models import LatestPrice, LeaderboardEntry, Market, Page, Position, Trade

__all__ = ["OpinionClient"]

M = TypeVar("M", bound=BaseModel)

_MARKET_LIST = TypeAdapter(list[Market])
_TRADE_LIST = TypeAdapter(list[Trade])
_POSITION_LIST = TypeAdapter(list[Position])
_LEADERBOARD_LIST = TypeAdapter(list[LeaderboardEntry])


class _ListResult(BaseModel, Generic[M]):
    total: int | None = None
    items: list[M] | None = Field(None, alias="list")


class _ListEnvelope(BaseModel, Generic[M]):
    """A successful list response, validated straight from the body bytes by pydantic-core."""

    errno: int | None = None
    code: int | None = None
    result: _ListResult[M]


_TRADE_ENVELOPE = TypeAdapter(_ListEnvelope[Trade])


class OpinionClient:
    """Typed access to the Opinion REST API.

    :param base_url: the OpenAPI base, for example ``https://openapi.opinion.trade/openapi``.
    :param leaderboard_url: the base of the undocumented web-app endpoints (leaderboard).
    :param api_key: sent in the ``apikey`` header; never logged or put in an error.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        leaderboard_url: str | None = None,
        chain_id: str = "56",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        total_timeout_s: float = 30.0,
        page_limit: int = 20,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.leaderboard_url = (leaderboard_url or base_url).rstrip("/")
        self.chain_id = chain_id
        self.page_limit = page_limit
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout_s,
            connect=connect_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OpinionClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "whaled"}
            connector = aiohttp.TCPConnector(limit=32, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(headers=headers, timeout=self._timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Endpoints

    async def list_markets(self, page: int, *, status: str = "activated", sort_by: int | None = None) -> Page[Market]:
        params: dict[str, Any] = {
            "page": page,
            "limit": self.page_limit,
            "status": status,
            "marketType": 2,
            "chainId": self.chain_id,
        }
        if sort_by is not None:
            params["sortBy"] = sort_by
        result = await self._get("/market", params)
        return _page(result, _MARKET_LIST, "/market")

    async def get_market(self, market_id: int) -> Market:
        endpoint = f"/market/{market_id}"
        result = await self._get(endpoint, {})
        return _model(_field(result, "data", endpoint), Market, endpoint)

    async def get_categorical_market(self, market_id: int) -> Market:
        endpoint = f"/market/categorical/{market_id}"
        result = await self._get(endpoint, {})
        return _model(_field(result, "data", endpoint), Market, endpoint)

    async def latest_price(self, token_id: str) -> LatestPrice:
        result = await self._get("/token/latest-price", {"token_id": token_id})
        return _model(result, LatestPrice, "/token/latest-price")

    async def user_trades(self, wallet: str, page: int) -> Page[Trade]:
        endpoint = f"/trade/user/{wallet}"
        params = {"page": page, "limit": self.page_limit, "chainId": self.chain_id}
        status, headers, body = await self._fetch(endpoint, params)
        return self.parse_trade_page(endpoint, status, headers, body)

    def parse_trade_page(self, endpoint: str, status: int, headers: Mapping[str, str], body: bytes) -> Page[Trade]:
        """Parse a trades page; the common case (HTTP 200, error code 0) is validated from the bytes directly."""
        if status == 200:
            try:
                envelope = _TRADE_ENVELOPE.validate_json(body)
            except ValidationError:
                pass  # the slow path below names the problem
            else:
                if (envelope.errno if envelope.errno is not None else envelope.code) == 0:
                    return Page(total=envelope.result.total, items=envelope.result.items or [])
        return _page(self._unwrap(endpoint, status, headers, body), _TRADE_LIST, endpoint)

    async def user_positions(self, wallet: str, page: int) -> Page[Position]:
        endpoint = f"/positions/user/{wallet}"
        params = {"page": page, "limit": self.page_limit, "chainId": self.chain_id}
        return _page(await self._get(endpoint, params), _POSITION_LIST, endpoint)

    async def leaderboard(self, data_type: str, period_days: int, *, limit: int = 100) -> list[LeaderboardEntry]:
        params = {"limit": limit, "dataType": data_type, "chainId": self.chain_id, "period": period_days}
        result = await self._get("/v2/leaderboard", params, base_url=self.leaderboard_url, send_key=False)
        return _page(result, _LEADERBOARD_LIST, "/v2/leaderboard").items

    # Transport

    async def _get(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        *,
        base_url: str | None = None,
        send_key: bool = True,
    ) -> Any:
        status, headers, body = await self._fetch(endpoint, params, base_url=base_url, send_key=send_key)
        return self._unwrap(endpoint, status, headers, body)

    async def _fetch(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        *,
        base_url: str | None = None,
        send_key: bool = True,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one GET; return the status, headers and body, or raise a typed transport error."""
        url = (base_url or self.base_url) + endpoint
        headers = {"apikey": self._api_key} if send_key and self._api_key else None
        logger.debug("GET %s %s", endpoint, dict(params))
        try:
            async with self._get_session().get(url, params=params, headers=headers) as response:
                return response.status, response.headers, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise OpinionTimeoutError(endpoint, f"timed out ({type(exc).__name__})") from None
        except aiohttp.ServerDisconnectedError:
            raise OpinionConnectionError(endpoint, "server disconnected before a full response") from None
        except aiohttp.ClientConnectorError as exc:
            raise OpinionConnectionError(endpoint, f"cannot connect: {exc.os_error}", before_send=True) from None
        except aiohttp.ClientPayloadError as exc:
            raise OpinionConnectionError(endpoint, f"response body broken off: {exc}") from None
        except (aiohttp.ClientOSError, ConnectionResetError) as exc:
            raise OpinionConnectionError(endpoint, f"connection error: {exc}") from None
        except aiohttp.ClientError as exc:
            raise OpinionConnectionError(endpoint, f"{type(exc).__name__}: {self._scrub(str(exc))}") from None
        except asyncio.CancelledError:
            raise

    def _unwrap(self, endpoint: str, status: int, headers: Mapping[str, str], body: bytes) -> Any:
        envelope = _parse_json(endpoint, status, body)
        code, message = _envelope_status(envelope)
        if status >= 400 or not 200 <= status < 300:
            raise OpinionHTTPError(
                endpoint,
                status,
                code=code if code else None,
                message=self._scrub(message),
                retry_after=headers.get("Retry-After"),
            )
        if envelope is None:
            raise OpinionPayloadError(endpoint, f"HTTP {status}: body is not a JSON object")
        if code is None:
            raise OpinionPayloadError(endpoint, f"HTTP {status}: envelope has neither errno nor code")
        if code != 0:
            raise OpinionAPIError(endpoint, status, code, self._scrub(message))
        if "result" not in envelope:
            raise OpinionPayloadError(endpoint, f"HTTP {status}: envelope has no result")
        return envelope["result"]

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            return text.replace(self._api_key, "***")
        return text


def _parse_json(endpoint: str, status: int, body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        if status >= 400:
            return None
        raise OpinionPayloadError(endpoint, f"HTTP {status}: body is not valid JSON ({len(body)} bytes)") from None
    return parsed if isinstance(parsed, dict) else None


def _envelope_status(envelope: dict[str, Any] | None) -> tuple[int | None, str]:
    """Read the error code and message from either envelope spelling: ``errno/errmsg`` or ``code/msg``."""
    if envelope is None:
        return None, ""
    code = envelope.get("errno", envelope.get("code"))
    message = envelope.get("errmsg") or envelope.get("msg") or ""
    try:
        return (int(code) if code is not None else None), str(message)
    except (TypeError, ValueError):
        return -1, f"non-numeric error code {code!r}: {message}"


def _field(result: Any, name: str, endpoint: str) -> Any:
    if not isinstance(result, dict) or name not in result:
        raise OpinionPayloadError(endpoint, f"result has no {name!r} object")
    return result[name]


def _model(data: Any, model: type[M], endpoint: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise OpinionPayloadError(endpoint, _validation_summary(exc)) from None


def _page(result: Any, adapter: TypeAdapter[list[M]], endpoint: str) -> Page[M]:
    if not isinstance(result, dict):
        raise OpinionPayloadError(endpoint, "result is not an object with a list")
    rows = result.get("list")
    if rows is None:
        rows = []
    rejected: tuple[str, ...] = ()
    try:
        items = adapter.validate_python(rows)
    except ValidationError as exc:
        items, rejected = _validate_rows(rows, adapter, endpoint, exc)
    total = result.get("total")
    return Page(
        total=int(total) if isinstance(total, int | str) and str(total).isdigit() else None,
        items=items,
        rejected=rejected,
    )


def _validate_rows(
    rows: Any, adapter: TypeAdapter[list[M]], endpoint: str, first_error: ValidationError
) -> tuple[list[M], tuple[str, ...]]:
    """Validate a list row by row, so that one malformed row does not hide the others.

    :raises OpinionPayloadError: when the list itself is malformed or no row is valid, since that points to a
        changed API rather than one bad row.
    """
    if not isinstance(rows, list) or not rows:
        raise OpinionPayloadError(endpoint, _validation_summary(first_error))
    items: list[M] = []
    rejected: list[str] = []
    for index, row in enumerate(rows):
        try:
            items.extend(adapter.validate_python([row]))
        except ValidationError as exc:
            rejected.append(f"row {index}: {_validation_summary(exc).removeprefix('unexpected payload at 0.')}")
    if not items:
        raise OpinionPayloadError(endpoint, _validation_summary(first_error))
    return items, tuple(rejected)


def _validation_summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"unexpected payload at {where}: {first['msg']}{more}"
