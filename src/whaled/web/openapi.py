"""The OpenAPI 3.1 document of the JSON API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from whaled import __version__
from whaled.web.api_params import EVENT_TOPICS

__all__ = ["build_openapi"]

_DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "exact decimal number"}
_DECIMAL_OR_NULL = {"type": ["string", "null"], "description": "exact decimal number, or null"}
_MS = {"type": "integer", "description": "Unix time in milliseconds (UTC)"}
_MS_OR_NULL = {"type": ["integer", "null"], "description": "Unix time in milliseconds (UTC), or null"}
_STRING = {"type": "string"}
_STRING_OR_NULL = {"type": ["string", "null"]}
_INTEGER = {"type": "integer"}
_INTEGER_OR_NULL = {"type": ["integer", "null"]}
_BOOLEAN = {"type": "boolean"}
_CURSOR = {"type": ["string", "null"], "description": "pass as cursor to get the next page; null on the last"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": extra,
    }


def _list_of(name: str, key: str, **more: Any) -> dict[str, Any]:
    return _object({key: {"type": "array", "items": _ref(name)}, **more})


def _parameter(name: str, description: str, schema: dict[str, Any], *, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return _parameter(
        "limit", "items per page", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    )


_OFFSET = _parameter("offset", "items to skip", {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 0})
_PAGE_CURSOR = _parameter("cursor", "next_cursor of the previous page", _STRING)
_WALLET = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}

_MARKET = _object(
    {
        "market_id": _INTEGER,
        "root_market_id": _INTEGER,
        "is_root": _BOOLEAN,
        "market_type": _INTEGER_OR_NULL,
        "title": _STRING,
        "root_title": _STRING,
        "status": {
            "type": "integer",
            "description": "1 created, 2 activated, 3 resolving, 4 resolved, 5 failed, 6 deleted",
        },
        "status_name": _STRING,
        "yes_label": _STRING,
        "no_label": _STRING,
        "yes_token_id": _STRING_OR_NULL,
        "no_token_id": _STRING_OR_NULL,
        "condition_id": _STRING_OR_NULL,
        "question_id": _STRING_OR_NULL,
        "result_token_id": _STRING_OR_NULL,
        "winning_outcome": _STRING_OR_NULL,
        "volume": _DECIMAL,
        "volume_24h": _DECIMAL_OR_NULL,
        "volume_7d": _DECIMAL_OR_NULL,
        "yes_price": _DECIMAL_OR_NULL,
        "quote_token": _STRING_OR_NULL,
        "chain_id": _STRING_OR_NULL,
        "slug": _STRING_OR_NULL,
        "created_at_ms": _MS_OR_NULL,
        "cutoff_at_ms": _MS_OR_NULL,
        "resolved_at_ms": _MS_OR_NULL,
        "first_seen_ms": _MS,
        "updated_ms": _MS,
    }
)
_SNAPSHOT = _object(
    {"taken_ms": _MS, "yes_price": _DECIMAL_OR_NULL, "volume": _DECIMAL, "volume_24h": _DECIMAL_OR_NULL}
)
_STATS = _object(
    {
        "computed_ms": _MS,
        "trade_count": _INTEGER,
        "volume_24h": _DECIMAL,
        "volume_7d": _DECIMAL,
        "volume_30d": _DECIMAL,
        "markets_traded": _INTEGER,
        "realized_pnl": _DECIMAL,
        "wins": _INTEGER,
        "losses": _INTEGER,
        "win_rate": _DECIMAL_OR_NULL,
        "open_positions": _INTEGER,
        "open_value": _DECIMAL,
        "unrealized_pnl": _DECIMAL,
        "rank": _INTEGER_OR_NULL,
    }
)
_WALLET_SUMMARY_FIELDS: dict[str, Any] = {
    "address": _WALLET,
    "label": _STRING,
    "source": {"type": "string", "enum": ["config", "discovery", "cli"]},
    "tracked": _BOOLEAN,
    "added_ms": _MS,
    "discovered_rank": _INTEGER_OR_NULL,
    "is_whale": _BOOLEAN,
    "stats": {"oneOf": [_ref("WalletStats"), {"type": "null"}]},
}
_TRADE = _object(
    {
        "id": _INTEGER,
        "wallet": _WALLET,
        "tx_hash": _STRING,
        "market_id": _INTEGER,
        "root_market_id": _INTEGER,
        "market_title": _STRING,
        "root_market_title": _STRING,
        "side": _STRING,
        "outcome": _STRING,
        "outcome_side": {"type": "integer", "description": "1 yes, 2 no"},
        "price": _DECIMAL,
        "shares": _DECIMAL,
        "amount": _DECIMAL,
        "fee": _DECIMAL,
        "profit": _DECIMAL,
        "quote_token": _STRING,
        "quote_token_usd_price": _DECIMAL,
        "usd_amount_raw": _STRING_OR_NULL,
        "notional_usd": _DECIMAL,
        "is_whale": _BOOLEAN,
        "status": _INTEGER,
        "chain_id": _STRING,
        "created_at_ms": _MS,
        "stored_ms": _MS,
    }
)
_POSITION = _object(
    {
        "wallet": _WALLET,
        "market_id": _INTEGER,
        "outcome_side": _INTEGER,
        "root_market_id": _INTEGER,
        "market_title": _STRING,
        "root_market_title": _STRING,
        "outcome": _STRING,
        "token_id": _STRING,
        "market_status": _INTEGER,
        "shares_owned": _DECIMAL,
        "shares_frozen": _DECIMAL,
        "avg_entry_price": _DECIMAL,
        "current_value": _DECIMAL,
        "unrealized_pnl": _DECIMAL,
        "claim_status": _INTEGER,
        "updated_ms": _MS,
    }
)
_ALERT = {
    "type": "object",
    "description": "one row of the alerts table; payload is decoded JSON",
    "properties": {"id": _INTEGER, "rule": _STRING, "title": _STRING, "payload": {}, "created_ms": _MS},
    "required": ["id"],
    "additionalProperties": True,
}
_JOB_RUN = _object(
    {
        "id": _INTEGER,
        "job": _STRING,
        "trigger": _STRING,
        "scheduled_ms": _MS_OR_NULL,
        "started_ms": _MS,
        "finished_ms": _MS_OR_NULL,
        "outcome": {
            "type": "string",
            "enum": ["running", "success", "failure", "timeout", "cancelled", "missed", "skipped"],
        },
        "items": _INTEGER,
        "api_calls": _INTEGER,
        "error": _STRING_OR_NULL,
        "details": {"description": "decoded JSON details, or null"},
    }
)
_EVENT = _object(
    {
        "id": _INTEGER,
        "topic": _STRING,
        "type": _STRING,
        "wallet": _STRING_OR_NULL,
        "market_id": _INTEGER_OR_NULL,
        "payload": {"type": "object", "description": "see docs/events.md; decimals are strings"},
        "created_ms": _MS,
    }
)
_ERROR = _object(
    {
        "error": _object(
            {"message": _STRING, "parameter": {"type": ["string", "null"], "description": "the bad parameter"}}
        )
    }
)


def _response(schema_name: str) -> dict[str, Any]:
    return {
        "200": {"description": "OK", "content": {"application/json": {"schema": _ref(schema_name)}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }


def _get(summary: str, schema_name: str, parameters: list[dict[str, Any]], *, not_found: bool = False) -> Any:
    responses = _response(schema_name)
    if not_found:
        responses["404"] = {"$ref": "#/components/responses/NotFound"}
    return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}


def _catalog_paths() -> dict[str, Any]:
    since = _parameter("since", "only items at or after this time (ms)", _MS)
    return {
        "/markets": _get(
            "List markets",
            "MarketList",
            [
                _parameter("status", "created, activated, resolving, resolved, failed, deleted or 1-6", _STRING),
                _parameter("search", "case-insensitive text in the title or root title", _STRING),
                _parameter(
                    "sort",
                    "sort key",
                    {"enum": ["volume", "volume_24h", "price", "updated", "created", "cutoff", "title"]},
                ),
                _parameter("order", "asc or desc; desc by default, asc for title", {"enum": ["asc", "desc"]}),
                _limit(50, 200),
                _OFFSET,
            ],
        ),
        "/markets/{market_id}": _get(
            "One market with its price history",
            "MarketDetail",
            [_parameter("market_id", "market id", _INTEGER, where="path"), since, _limit(500, 5000)],
            not_found=True,
        ),
        "/wallets": _get(
            "The wallet leaderboard",
            "WalletList",
            [
                _parameter(
                    "sort",
                    "sort key",
                    {"enum": ["volume_30d", "volume_24h", "realized_pnl", "win_rate", "trade_count", "rank"]},
                ),
                _parameter("whales", "only whales (true) or only others (false)", _BOOLEAN),
                _parameter("tracked", "only tracked (true) or untracked (false) wallets", _BOOLEAN),
                _limit(50, 500),
                _OFFSET,
            ],
        ),
        "/wallets/{address}": _get(
            "One wallet with stats, recent trades and positions",
            "WalletDetail",
            [
                _parameter("address", "wallet address", _WALLET, where="path"),
                _parameter("trades_limit", "recent trades to include (0-500, default 50)", _INTEGER),
            ],
            not_found=True,
        ),
    }


def _activity_paths() -> dict[str, Any]:
    since = _parameter("since", "only items at or after this time (ms)", _MS)
    return {
        "/trades": _get(
            "Trades, newest first",
            "TradePage",
            [
                _parameter("wallet", "only this wallet", _WALLET),
                _parameter("market", "only this market id", _INTEGER),
                _parameter("whale", "only whale trades when true", _BOOLEAN),
                since,
                _parameter("until", "only trades before this time (ms)", _MS),
                _limit(100, 500),
                _PAGE_CURSOR,
            ],
        ),
        "/alerts": _get(
            "Alerts, newest first",
            "AlertPage",
            [
                _parameter("wallet", "only this wallet", _WALLET),
                _parameter("market", "only this market id", _INTEGER),
                _limit(50, 500),
                _PAGE_CURSOR,
            ],
        ),
        "/job-runs": _get(
            "Job runs, newest first",
            "JobRunPage",
            [
                _parameter("job", "only this job, such as sync-markets", _STRING),
                _parameter("outcome", "only runs with this outcome", _STRING),
                _limit(50, 500),
                _PAGE_CURSOR,
            ],
        ),
        "/events": _get(
            "Events after an id, oldest first",
            "EventPage",
            [
                _parameter("after", "return events with a greater id (default 0)", _INTEGER),
                _parameter("topic", "only this event topic", {"enum": list(EVENT_TOPICS)}),
                _limit(100, 1000),
            ],
        ),
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
    }


def _schemas() -> dict[str, Any]:
    return {
        "Error": _ERROR,
        "Market": _MARKET,
        "MarketSnapshot": _SNAPSHOT,
        "MarketList": _list_of("Market", "markets", total=_INTEGER, limit=_INTEGER, offset=_INTEGER),
        "MarketDetail": _object(
            {"market": _ref("Market"), "history": {"type": "array", "items": _ref("MarketSnapshot")}}
        ),
        "WalletStats": _STATS,
        "WalletSummary": _object(_WALLET_SUMMARY_FIELDS),
        "WalletList": _list_of("WalletSummary", "wallets", total=_INTEGER, limit=_INTEGER, offset=_INTEGER),
        "WalletDetail": _object(
            {
                "wallet": _object(
                    {
                        **_WALLET_SUMMARY_FIELDS,
                        "recent_trades": {"type": "array", "items": _ref("Trade")},
                        "positions": {"type": "array", "items": _ref("Position")},
                    }
                )
            }
        ),
        "Trade": _TRADE,
        "TradePage": _list_of("Trade", "trades", next_cursor=_CURSOR),
        "Position": _POSITION,
        "Alert": _ALERT,
        "AlertPage": _list_of("Alert", "alerts", next_cursor=_CURSOR),
        "JobRun": _JOB_RUN,
        "JobRunPage": _list_of("JobRun", "job_runs", next_cursor=_CURSOR),
        "Event": _EVENT,
        "EventPage": _list_of(
            "Event",
            "events",
            last_id={"type": "integer", "description": "pass as after to read on"},
            oldest_id=_INTEGER_OR_NULL,
            newest_id=_INTEGER,
            expired={"type": "boolean", "description": "events right after `after` were deleted by retention"},
        ),
    }


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def build_openapi(prefix: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for the API mounted at ``prefix``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whaled API",
            "version": __version__,
            "description": "Read-only access to the markets, wallets, trades, alerts, job runs and events "
            "whaled has stored. Decimal numbers are strings; times are Unix milliseconds (UTC).",
        },
        "servers": [{"url": prefix}],
        "security": [{}, {"bearer": []}, {"queryToken": []}],
        "paths": {**_catalog_paths(), **_activity_paths()},
        "components": {
            "schemas": _schemas(),
            "responses": {
                "BadRequest": _error_response("A parameter is invalid; error.parameter names it"),
                "Unauthorized": _error_response("The access token is missing or wrong"),
                "NotFound": _error_response("No such item"),
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "web.access_token, when set"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
    }
