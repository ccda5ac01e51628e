"""Queries on trades, per-wallet sync cursors and sync gaps.

:func:`store_trade_page` is the ingest hot path: one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``
stores a page and tells which rows were new, and one multi-row insert appends their events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from whaled.clock import now_ms
from whaled.opinion.models import Trade, canonical
from whaled.store.db import Database, Transaction
from whaled.store.events import append_events

__all__ = [
    "SyncCursor",
    "load_cursor",
    "record_gap",
    "record_sync_error",
    "save_cursor",
    "store_trade_page",
    "trade_payload",
]

_COLUMNS = (
    "wallet, tx_hash, market_id, root_market_id, market_title, root_market_title, side, outcome, "
    "outcome_side, price, shares, amount, fee, profit, quote_token, quote_token_usd_price, usd_amount_raw, "
    "notional_usd, notional_micro, is_whale, status, chain_id, created_at_ms, stored_ms"
)
_ROW_PLACEHOLDER = "(" + ",".join("?" * 24) + ")"
_KEY_COLUMNS = "tx_hash, market_id, outcome_side, side, price, shares"
_MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class SyncCursor:
    """Where the last complete walk of a wallet's trades ended: its newest trade's time."""

    wallet: str
    newest_created_ms: int | None
    last_synced_ms: int | None


def _row(wallet: str, trade: Trade, is_whale: bool, stored: int) -> tuple[Any, ...]:
    notional = trade.notional_usd
    return (
        wallet,
        trade.tx_hash.lower(),
        trade.market_id,
        trade.root_market_id if trade.root_market_id is not None else trade.market_id,
        trade.market_title,
        trade.root_market_title or trade.market_title,
        trade.side,
        trade.outcome,
        trade.outcome_side,
        canonical(trade.price),
        canonical(trade.shares),
        canonical(trade.amount),
        canonical(trade.fee),
        canonical(trade.profit),
        trade.quote_token,
        canonical(trade.quote_token_usd_price),
        None if trade.usd_amount is None else str(trade.usd_amount),
        canonical(notional),
        int(notional.quantize(_MICRO, rounding=ROUND_HALF_EVEN) * 1_000_000),
        int(is_whale),
        trade.status,
        trade.chain_id,
        trade.created_at,
        stored,
    )


def trade_payload(row: tuple[Any, ...], trade_id: int, label: str, backfill: bool) -> dict[str, Any]:
    """Build the ``trade.new``/``trade.whale`` event payload from a stored row."""
    return {
        "trade_id": trade_id,
        "wallet": row[0],
        "label": label,
        "tx_hash": row[1],
        "market_id": row[2],
        "root_market_id": row[3],
        "market_title": row[4],
        "root_market_title": row[5],
        "side": row[6],
        "outcome": row[7],
        "outcome_side": row[8],
        "price": row[9],
        "shares": row[10],
        "amount": row[11],
        "notional_usd": row[17],
        "is_whale": bool(row[19]),
        "created_at_ms": row[22],
        "backfill": backfill,
    }


async def store_trade_page(
    tx: Transaction,
    wallet: str,
    label: str,
    trades: Sequence[Trade],
    *,
    whale_trade_usd: Decimal,
    backfill: bool = False,
) -> list[int]:
    """Store a page of one wallet's trades; append events for the new ones; return the new trade ids.

    A trade already stored (same wallet and key) is skipped, so a page that repeats or shifts stores each
    trade once.
    """
    if not trades:
        return []
    stored = now_ms()
    rows = [_row(wallet, trade, trade.notional_usd >= whale_trade_usd, stored) for trade in trades]
    sql = (
        f"INSERT INTO trades ({_COLUMNS}) VALUES {','.join([_ROW_PLACEHOLDER] * len(rows))} "
        f"ON CONFLICT DO NOTHING RETURNING id, {_KEY_COLUMNS}"
    )
    inserted = await tx.fetchall(sql, [value for row in rows for value in row])
    if not inserted:
        return []
    by_key = {(row[1], row[2], row[8], row[6], row[9], row[10]): row for row in rows}
    events: list[tuple[str, str, str | None, int | None, dict[str, Any]]] = []
    new_ids = []
    for record in sorted(inserted, key=lambda record: record["id"]):
        key = (
            record["tx_hash"],
            record["market_id"],
            record["outcome_side"],
            record["side"],
            record["price"],
            record["shares"],
        )
        row = by_key[key]
        payload = trade_payload(row, record["id"], label, backfill)
        events.append(("trade", "trade.new", wallet, row[2], payload))
        if row[19]:
            events.append(("trade", "trade.whale", wallet, row[2], payload))
        new_ids.append(record["id"])
    last_id, count = await append_events(tx.conn, events)
    tx.note_events(last_id, count)
    return new_ids


async def load_cursor(db: Database, wallet: str) -> SyncCursor:
    row = await db.fetchone("SELECT newest_created_ms, last_synced_ms FROM sync_cursors WHERE wallet = ?", (wallet,))
    if row is None:
        return SyncCursor(wallet, None, None)
    return SyncCursor(wallet, row["newest_created_ms"], row["last_synced_ms"])


async def save_cursor(tx: Transaction, wallet: str, newest_created_ms: int | None) -> None:
    """Move the cursor forward (never back) and mark the wallet synced now."""
    await tx.execute(
        "INSERT INTO sync_cursors (wallet, newest_created_ms, last_synced_ms, last_error) VALUES (?, ?, ?, NULL) "
        "ON CONFLICT (wallet) DO UPDATE SET "
        "newest_created_ms = max(coalesce(newest_created_ms, 0), coalesce(excluded.newest_created_ms, 0)), "
        "last_synced_ms = excluded.last_synced_ms, last_error = NULL",
        (wallet, newest_created_ms, now_ms()),
    )


async def record_sync_error(tx: Transaction, wallet: str, error: str) -> None:
    await tx.execute(
        "INSERT INTO sync_cursors (wallet, last_error, last_error_ms) VALUES (?, ?, ?) "
        "ON CONFLICT (wallet) DO UPDATE SET last_error = excluded.last_error, last_error_ms = excluded.last_error_ms",
        (wallet, error, now_ms()),
    )


async def record_gap(
    tx: Transaction, wallet: str, *, older_than_ms: int, newer_than_ms: int | None, reason: str
) -> None:
    """Record trades between two times that were not imported, so that coverage shows the hole."""
    await tx.execute(
        "INSERT INTO sync_gaps (wallet, older_than_ms, newer_than_ms, recorded_ms, reason) VALUES (?, ?, ?, ?, ?)",
        (wallet, older_than_ms, newer_than_ms, now_ms(), reason),
    )
