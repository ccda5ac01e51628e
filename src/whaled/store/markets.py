"""Queries on markets and market snapshots.

Categorical parents are stored with their children flattened beside them: every tradable market is one row
keyed by ``market_id``, with ``root_market_id`` naming its parent (itself for binaries and parents).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from whaled.opinion.models import ChildMarket, Market, canonical
from whaled.store.db import Transaction

__all__ = [
    "RESOLVED",
    "MarketChange",
    "MarketRow",
    "add_snapshot",
    "classify_change",
    "flatten_market",
    "load_markets",
    "market_payload",
    "upsert_market",
]

RESOLVED = 4


@dataclass(frozen=True, slots=True)
class MarketRow:
    market_id: int
    root_market_id: int
    is_root: bool
    market_type: int | None
    title: str
    root_title: str
    status: int
    status_name: str
    yes_label: str
    no_label: str
    yes_token_id: str | None
    no_token_id: str | None
    condition_id: str
    question_id: str
    result_token_id: str | None
    winning_outcome: str | None
    volume: str
    volume_24h: str | None
    volume_7d: str | None
    quote_token: str
    chain_id: str
    slug: str | None
    created_at_ms: int | None
    cutoff_at_ms: int | None
    resolved_at_ms: int | None


@dataclass(frozen=True, slots=True)
class MarketChange:
    """The kind of change an upsert made to one market, for the events of the sync."""

    kind: str  # "new", "changed", "resolved" or "same"
    changes: dict[str, tuple[Any, Any]]


def _row(market: ChildMarket, root: Market, *, is_root: bool) -> MarketRow:
    top = market if isinstance(market, Market) else None
    return MarketRow(
        market_id=market.market_id,
        root_market_id=root.market_id,
        is_root=is_root,
        market_type=top.market_type if top is not None else None,
        title=market.market_title,
        root_title=root.market_title,
        status=market.status,
        status_name=market.status_enum,
        yes_label=market.yes_label,
        no_label=market.no_label,
        yes_token_id=market.yes_token_id,
        no_token_id=market.no_token_id,
        condition_id=market.condition_id,
        question_id=market.question_id,
        result_token_id=market.result_token_id,
        winning_outcome=market.winning_outcome,
        volume=canonical(market.volume),
        volume_24h=canonical(top.volume_24h) if top is not None and top.volume_24h is not None else None,
        volume_7d=canonical(top.volume_7d) if top is not None and top.volume_7d is not None else None,
        quote_token=market.quote_token,
        chain_id=market.chain_id,
        slug=market.slug,
        created_at_ms=market.created_at,
        cutoff_at_ms=market.cutoff_at,
        resolved_at_ms=market.resolved_at,
    )


def flatten_market(market: Market) -> Iterator[MarketRow]:
    """Yield the market itself, then each child of a categorical market with the parent as its root."""
    yield _row(market, market, is_root=True)
    for child in market.child_markets or ():
        yield _row(child, market, is_root=False)


async def load_markets(tx: Transaction, market_ids: list[int]) -> dict[int, sqlite3.Row]:
    if not market_ids:
        return {}
    placeholders = ",".join("?" * len(market_ids))
    rows = await tx.fetchall(f"SELECT * FROM markets WHERE market_id IN ({placeholders})", market_ids)
    return {row["market_id"]: row for row in rows}


_FIELDS = [name for name in MarketRow.__dataclass_fields__]
_UPSERT = (
    f"INSERT INTO markets ({', '.join(_FIELDS)}, yes_price, first_seen_ms, updated_ms) "
    f"VALUES ({', '.join('?' * (len(_FIELDS) + 3))}) "
    "ON CONFLICT (market_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _FIELDS if name != "market_id")
    + ", yes_price = coalesce(excluded.yes_price, yes_price), updated_ms = excluded.updated_ms"
)


def _relative_change_pct(old: str | None, new: str | None) -> Decimal:
    if old is None or new is None:
        return Decimal(0) if old == new else Decimal(100)
    before, after = Decimal(old), Decimal(new)
    if before == 0:
        return Decimal(0) if after == 0 else Decimal(100)
    return abs(after - before) / before * 100


def classify_change(
    before: sqlite3.Row | None,
    row: MarketRow,
    yes_price: str | None,
    *,
    price_change: Decimal,
    volume_change_pct: Decimal,
) -> MarketChange:
    """Compare a stored market with a fresh one; small price or volume moves are not a change."""
    if before is None:
        return MarketChange("new", {})
    changes: dict[str, tuple[Any, Any]] = {}
    if before["status"] != row.status:
        changes["status"] = (before["status_name"], row.status_name)
    old_price = before["yes_price"]
    if yes_price is not None and old_price is not None and abs(Decimal(yes_price) - Decimal(old_price)) >= price_change:
        changes["yes_price"] = (old_price, yes_price)
    if _relative_change_pct(before["volume"], row.volume) >= volume_change_pct and before["volume"] != row.volume:
        changes["volume"] = (before["volume"], row.volume)
    if row.status == RESOLVED and row.result_token_id and before["result_token_id"] != row.result_token_id:
        return MarketChange("resolved", changes)
    return MarketChange("changed" if changes else "same", changes)


async def upsert_market(tx: Transaction, row: MarketRow, yes_price: str | None, now: int) -> None:
    values = [getattr(row, name) for name in _FIELDS]
    values[_FIELDS.index("is_root")] = int(row.is_root)
    await tx.execute(_UPSERT, [*values, yes_price, now, now])


async def add_snapshot(tx: Transaction, row: MarketRow, yes_price: str | None, taken_ms: int) -> bool:
    """Insert a volume/price snapshot unless it equals the market's latest one; return True if inserted."""
    latest = await tx.fetchone(
        "SELECT volume, yes_price FROM market_snapshots WHERE market_id = ? ORDER BY taken_ms DESC LIMIT 1",
        (row.market_id,),
    )
    if latest is not None and latest["volume"] == row.volume and latest["yes_price"] == yes_price:
        return False
    cursor = await tx.execute(
        "INSERT OR IGNORE INTO market_snapshots (market_id, taken_ms, volume, volume_24h, yes_price) "
        "VALUES (?, ?, ?, ?, ?)",
        (row.market_id, taken_ms, row.volume, row.volume_24h, yes_price),
    )
    return cursor.rowcount > 0


def market_payload(row: MarketRow, yes_price: str | None) -> dict[str, Any]:
    return {
        "market_id": row.market_id,
        "root_market_id": row.root_market_id,
        "title": row.title,
        "root_title": row.root_title,
        "status": row.status,
        "status_name": row.status_name,
        "yes_price": yes_price,
        "volume": row.volume,
        "volume_24h": row.volume_24h,
    }
