"""The JSON API's reads. Each function runs on one pooled reader connection and returns JSON-ready data.

Decimal columns are stored as exact decimal text and returned as strings, in plain notation: a value
stored with an exponent (``0E-18``) is rewritten without one (``0.000000000000000000``), with the same
value. Sorting by a decimal column uses ``CAST(... AS REAL)``, so two values that differ only beyond about
15 significant digits may come out in either order; the values themselves stay exact.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import aiosqlite

from whaled.store import Event

__all__ = [
    "DECIMAL_COLUMNS",
    "MARKET_SORTS",
    "WALLET_SORTS",
    "EventsPage",
    "MarketFilter",
    "TradeFilter",
    "list_alerts",
    "list_events",
    "list_job_runs",
    "list_markets",
    "list_trades",
    "list_wallets",
    "market_history",
    "plain_decimal",
    "read_market",
    "read_wallet",
    "row_to_json",
    "table_exists",
]

MARKET_SORTS = {
    "volume": "CAST(volume AS REAL)",
    "volume_24h": "CAST(volume_24h AS REAL)",
    "price": "CAST(yes_price AS REAL)",
    "updated": "updated_ms",
    "created": "created_at_ms",
    "cutoff": "cutoff_at_ms",
    "title": "title",
}
WALLET_SORTS = {
    "volume_30d": "s.volume_30d_micro",
    "volume_24h": "CAST(s.volume_24h AS REAL)",
    "realized_pnl": "CAST(s.realized_pnl AS REAL)",
    "win_rate": "CAST(s.win_rate AS REAL)",
    "trade_count": "s.trade_count",
    "rank": "s.rank",
}
# Integer copies of decimal values, kept only for SQL ordering; the exact decimal text is returned instead.
_HIDDEN_COLUMNS = {"notional_micro", "volume_30d_micro"}
_BOOLEAN_COLUMNS = {"is_root", "is_whale", "tracked"}
# Every column the OpenAPI document declares as a decimal string; wallet stats carry a ``stats_`` prefix here.
DECIMAL_COLUMNS = frozenset(
    {
        "amount",
        "avg_entry_price",
        "current_value",
        "fee",
        "notional_usd",
        "open_value",
        "price",
        "profit",
        "quote_token_usd_price",
        "realized_pnl",
        "shares",
        "shares_frozen",
        "shares_owned",
        "unrealized_pnl",
        "volume",
        "volume_24h",
        "volume_30d",
        "volume_7d",
        "win_rate",
        "yes_price",
    }
)
_JSON_COLUMNS = {"payload", "details", "step_names", "input"}
_STATS_COLUMNS = (
    "computed_ms, trade_count, volume_24h, volume_7d, volume_30d, markets_traded, realized_pnl, wins, losses, "
    "win_rate, open_positions, open_value, unrealized_pnl, rank"
)


def _decode_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def plain_decimal(value: Any) -> Any:
    """Return decimal text without an exponent (``"1E+3"`` becomes ``"1000"``); other values unchanged."""
    if not isinstance(value, str) or ("E" not in value and "e" not in value):
        return value
    try:
        number = Decimal(value)
    except InvalidOperation:
        return value
    return format(number, "f") if number.is_finite() else value


def row_to_json(row: sqlite3.Row) -> dict[str, Any]:
    """Convert one row: flags become booleans, JSON text columns are decoded, decimals are written in plain
    notation and ordering helpers are dropped."""
    result: dict[str, Any] = {}
    for key in row.keys():  # noqa: SIM118 (sqlite3.Row iterates over values, not names)
        value = row[key]
        if key in _HIDDEN_COLUMNS:
            continue
        if key in _BOOLEAN_COLUMNS and value is not None:
            value = bool(value)
        elif key in _JSON_COLUMNS:
            value = _decode_json(value)
        elif key.removeprefix("stats_") in DECIMAL_COLUMNS:
            value = plain_decimal(value)
        result[key] = value
    return result


async def _fetchall(conn: aiosqlite.Connection, sql: str, parameters: Sequence[Any]) -> list[sqlite3.Row]:
    async with conn.execute(sql, parameters) as cursor:
        return list(await cursor.fetchall())


async def _fetchone(conn: aiosqlite.Connection, sql: str, parameters: Sequence[Any]) -> sqlite3.Row | None:
    async with conn.execute(sql, parameters) as cursor:
        row: sqlite3.Row | None = await cursor.fetchone()
        return row


async def table_exists(conn: aiosqlite.Connection, name: str) -> bool:
    row = await _fetchone(conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row is not None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Markets.


@dataclass(frozen=True, slots=True)
class MarketFilter:
    status: int | None
    search: str | None
    sort: str
    descending: bool
    limit: int
    offset: int


async def list_markets(conn: aiosqlite.Connection, query: MarketFilter) -> dict[str, Any]:
    where: list[str] = []
    parameters: list[Any] = []
    if query.status is not None:
        where.append("status = ?")
        parameters.append(query.status)
    if query.search is not None:
        where.append("(title LIKE ? ESCAPE '\\' OR root_title LIKE ? ESCAPE '\\')")
        pattern = f"%{_escape_like(query.search)}%"
        parameters.extend((pattern, pattern))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    direction = "DESC" if query.descending else "ASC"
    order = f"{MARKET_SORTS[query.sort]} {direction} NULLS LAST, market_id {direction}"
    total_row = await _fetchone(conn, f"SELECT count(*) FROM markets {clause}", parameters)
    rows = await _fetchall(
        conn,
        f"SELECT * FROM markets {clause} ORDER BY {order} LIMIT ? OFFSET ?",
        [*parameters, query.limit, query.offset],
    )
    return {
        "markets": [row_to_json(row) for row in rows],
        "total": int(total_row[0]) if total_row else 0,
        "limit": query.limit,
        "offset": query.offset,
    }


async def read_market(conn: aiosqlite.Connection, market_id: int) -> dict[str, Any] | None:
    row = await _fetchone(conn, "SELECT * FROM markets WHERE market_id = ?", (market_id,))
    return None if row is None else row_to_json(row)


async def market_history(
    conn: aiosqlite.Connection, market_id: int, since_ms: int | None, limit: int
) -> list[dict[str, Any]]:
    """Return the newest ``limit`` snapshots taken at or after ``since_ms``, oldest first."""
    rows = await _fetchall(
        conn,
        "SELECT taken_ms, yes_price, volume, volume_24h FROM market_snapshots "
        "WHERE market_id = ? AND taken_ms >= ? ORDER BY taken_ms DESC LIMIT ?",
        (market_id, since_ms or 0, limit),
    )
    return [row_to_json(row) for row in reversed(rows)]


# Wallets.


def _wallet_json(row: sqlite3.Row) -> dict[str, Any]:
    data = row_to_json(row)
    stats = {key: data.pop(f"stats_{key}") for key in _STATS_COLUMNS.split(", ")}
    data["stats"] = None if stats["computed_ms"] is None else stats
    return data


def _wallet_select() -> str:
    stats = ", ".join(f"s.{name} AS stats_{name}" for name in _STATS_COLUMNS.split(", "))
    return (
        "SELECT w.address, w.label, w.source, w.tracked, w.added_ms, w.discovered_rank, w.is_whale, "
        f"{stats} FROM wallets w LEFT JOIN wallet_stats s ON s.wallet = w.address"
    )


async def list_wallets(
    conn: aiosqlite.Connection, *, sort: str, whales: bool | None, tracked: bool | None, limit: int, offset: int
) -> dict[str, Any]:
    where: list[str] = []
    parameters: list[Any] = []
    if whales is not None:
        where.append("w.is_whale = ?")
        parameters.append(int(whales))
    if tracked is not None:
        where.append("w.tracked = ?")
        parameters.append(int(tracked))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    direction = "ASC" if sort == "rank" else "DESC"
    rows = await _fetchall(
        conn,
        f"{_wallet_select()} {clause} ORDER BY {WALLET_SORTS[sort]} {direction} NULLS LAST, w.address LIMIT ? OFFSET ?",
        [*parameters, limit, offset],
    )
    total_row = await _fetchone(conn, f"SELECT count(*) FROM wallets w {clause}", parameters)
    return {
        "wallets": [_wallet_json(row) for row in rows],
        "total": int(total_row[0]) if total_row else 0,
        "limit": limit,
        "offset": offset,
    }


async def read_wallet(conn: aiosqlite.Connection, address: str, trades_limit: int) -> dict[str, Any] | None:
    row = await _fetchone(conn, f"{_wallet_select()} WHERE w.address = ?", (address,))
    if row is None:
        return None
    wallet = _wallet_json(row)
    trades = await _fetchall(
        conn,
        "SELECT * FROM trades WHERE wallet = ? ORDER BY created_at_ms DESC, id DESC LIMIT ?",
        (address, trades_limit),
    )
    positions = await _fetchall(
        conn, "SELECT * FROM positions WHERE wallet = ? ORDER BY updated_ms DESC, market_id", (address,)
    )
    wallet["recent_trades"] = [row_to_json(trade) for trade in trades]
    wallet["positions"] = [row_to_json(position) for position in positions]
    return wallet


# Trades.


@dataclass(frozen=True, slots=True)
class TradeFilter:
    wallet: str | None
    market_id: int | None
    whale_only: bool
    since_ms: int | None
    until_ms: int | None
    after_key: tuple[int, ...] | None
    limit: int


async def list_trades(conn: aiosqlite.Connection, query: TradeFilter) -> tuple[list[dict[str, Any]], bool]:
    """Return one page of trades, newest first, and whether another page follows."""
    where: list[str] = []
    parameters: list[Any] = []
    for column, value in (("wallet", query.wallet), ("market_id", query.market_id)):
        if value is not None:
            where.append(f"{column} = ?")
            parameters.append(value)
    if query.whale_only:
        where.append("is_whale = 1")
    if query.since_ms is not None:
        where.append("created_at_ms >= ?")
        parameters.append(query.since_ms)
    if query.until_ms is not None:
        where.append("created_at_ms < ?")
        parameters.append(query.until_ms)
    if query.after_key is not None:
        created_ms, trade_id = query.after_key
        where.append("(created_at_ms < ? OR (created_at_ms = ? AND id < ?))")
        parameters.extend((created_ms, created_ms, trade_id))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await _fetchall(
        conn,
        f"SELECT * FROM trades {clause} ORDER BY created_at_ms DESC, id DESC LIMIT ?",
        [*parameters, query.limit + 1],
    )
    return [row_to_json(row) for row in rows[: query.limit]], len(rows) > query.limit


# Alerts, job runs and events.


async def list_alerts(
    conn: aiosqlite.Connection,
    *,
    wallet: str | None,
    market_id: int | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Return one page of alerts, newest first; an empty page if the alerts table does not exist yet."""
    if not await table_exists(conn, "alerts"):
        return [], False
    return await _newest_first(conn, "alerts", {"wallet": wallet, "market_id": market_id}, before_id, limit)


async def list_job_runs(
    conn: aiosqlite.Connection, *, job: str | None, outcome: str | None, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    return await _newest_first(conn, "job_runs", {"job": job, "outcome": outcome}, before_id, limit)


async def _newest_first(
    conn: aiosqlite.Connection, table: str, equal: dict[str, Any], before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Return one page of ``table``, newest id first, filtered by the non-None ``equal`` columns.

    ``table`` and the column names come from this module, never from a request.
    """
    where = [f"{column} = ?" for column, value in equal.items() if value is not None]
    parameters: list[Any] = [value for value in equal.values() if value is not None]
    if before_id is not None:
        where.append("id < ?")
        parameters.append(before_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await _fetchall(conn, f"SELECT * FROM {table} {clause} ORDER BY id DESC LIMIT ?", [*parameters, limit + 1])
    return [row_to_json(row) for row in rows[:limit]], len(rows) > limit


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: list[Event]
    oldest_id: int | None
    newest_id: int


async def list_events(conn: aiosqlite.Connection, *, after_id: int, topic: str | None, limit: int) -> EventsPage:
    bounds = await _fetchone(conn, "SELECT min(id), max(id) FROM events", ())
    oldest, newest = (bounds[0], bounds[1]) if bounds is not None else (None, None)
    sql = "SELECT * FROM events WHERE id > ?"
    parameters: list[Any] = [after_id]
    if topic is not None:
        sql += " AND topic = ?"
        parameters.append(topic)
    rows = await _fetchall(conn, f"{sql} ORDER BY id LIMIT ?", [*parameters, limit])
    return EventsPage([Event.from_row(row) for row in rows], oldest, newest or 0)
