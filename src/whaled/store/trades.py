"""Queries on trades, per-wallet sync cursors and sync gaps.

:func:`store_trade_page` is the ingest hot path: one ``executemany`` of ``INSERT … ON CONFLICT DO NOTHING``
stores a page, and one ``INSERT … SELECT`` appends the events of the new rows, on the writer's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from whaled.clock import now_ms
from whaled.opinion.models import Trade, canonical
from whaled.store.db import Database, Transaction

__all__ = [
    "SyncCursor",
    "load_cursor",
    "record_gap",
    "record_sync_error",
    "save_cursor",
    "store_trade_page",
]

_COLUMNS = (
    "wallet, tx_hash, market_id, root_market_id, market_title, root_market_title, side, outcome, "
    "outcome_side, price, shares, amount, fee, profit, quote_token, quote_token_usd_price, usd_amount_raw, "
    "notional_usd, notional_micro, is_whale, status, chain_id, created_at_ms, stored_ms"
)
_INSERT = f"INSERT INTO trades ({_COLUMNS}) VALUES ({','.join('?' * 24)}) ON CONFLICT DO NOTHING"
_KEY_COLUMNS = "tx_hash, market_id, outcome_side, side, price, shares"
_MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class SyncCursor:
    """The end of the last complete walk of a wallet's trades: the time of its newest trade."""

    wallet: str
    newest_created_ms: int | None
    last_synced_ms: int | None


# NOTE: the unique key is the wallet, tx hash, market, outcome side, side, price and shares, because public
# rows hide tradeNo. Two fills of one transaction that match on all of those are stored as one row.
def _row(wallet: str, trade: Trade, whale_trade_usd: Decimal, stored: int) -> tuple[Any, ...]:
    notional = trade.notional_usd
    is_whale = notional >= whale_trade_usd
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
        # Only the key columns need one spelling per value. The others keep their digits as received, in plain
        # notation: str() would turn "0.000000000000000000" into "0E-18".
        format(trade.amount, "f"),
        format(trade.fee, "f"),
        format(trade.profit, "f"),
        trade.quote_token,
        format(trade.quote_token_usd_price, "f"),
        None if trade.usd_amount is None else format(trade.usd_amount, "f"),
        canonical(notional),
        int(notional.quantize(_MICRO, rounding=ROUND_HALF_EVEN) * 1_000_000),
        int(is_whale),
        trade.status,
        trade.chain_id,
        trade.created_at,
        stored,
    )


# Appends the events of the trades just stored, building each JSON payload inside SQLite: one statement
# for the whole page, and no Python JSON encoding on the ingest path. Whale trades get a second event.
_PAYLOAD = (
    "json_object('trade_id', t.id, 'wallet', t.wallet, 'label', coalesce(w.label, ''), 'tx_hash', t.tx_hash, "
    "'market_id', t.market_id, 'root_market_id', t.root_market_id, 'market_title', t.market_title, "
    "'root_market_title', t.root_market_title, 'side', t.side, 'outcome', t.outcome, "
    "'outcome_side', t.outcome_side, 'price', t.price, 'shares', t.shares, 'amount', t.amount, "
    "'notional_usd', t.notional_usd, 'is_whale', json(CASE t.is_whale WHEN 1 THEN 'true' ELSE 'false' END), "
    "'created_at_ms', t.created_at_ms, 'backfill', json(CASE :backfill WHEN 1 THEN 'true' ELSE 'false' END))"
)
_APPEND_EVENTS = (
    "INSERT INTO events (topic, type, wallet, market_id, payload, created_ms) "
    "SELECT 'trade', kind.type, t.wallet, t.market_id, " + _PAYLOAD + ", :now "
    "FROM trades AS t LEFT JOIN wallets AS w ON w.address = t.wallet "
    "JOIN (SELECT 'trade.new' AS type, 0 AS whale_only UNION ALL SELECT 'trade.whale', 1) AS kind "
    "ON kind.whale_only = 0 OR t.is_whale = 1 "
    "WHERE t.id BETWEEN :first AND :last "
    "ORDER BY t.id, kind.whale_only"
)


async def store_trade_page(
    db: Database,
    wallet: str,
    trades: Sequence[Trade],
    *,
    whale_trade_usd: Decimal,
    backfill: bool = False,
) -> list[int]:
    """Store a page of one wallet's trades with events for the new ones, in one transaction.

    A trade already stored (same wallet and key) is skipped, so a page that repeats or shifts stores each
    trade once. Returns the ids of the new trades. The events carry the wallet's label from ``wallets``.
    """
    if not trades:
        return []
    stored = now_ms()
    rows = [_row(wallet, trade, whale_trade_usd, stored) for trade in trades]

    def write_page(conn: sqlite3.Connection) -> tuple[list[int], int]:
        # A new row's id is above every id stored before it (this is the only writer, inside one transaction),
        # so the ids above the old maximum are exactly the new trades. executemany with ON CONFLICT is about
        # twice as fast here as one multi-row INSERT … RETURNING.
        before = conn.execute("SELECT coalesce(max(id), 0) FROM trades").fetchone()[0]
        conn.executemany(_INSERT, rows)
        new_ids = [record[0] for record in conn.execute("SELECT id FROM trades WHERE id > ? ORDER BY id", (before,))]
        if not new_ids:
            return [], 0
        cursor = conn.execute(
            _APPEND_EVENTS,
            {"backfill": int(backfill), "now": stored, "first": new_ids[0], "last": new_ids[-1]},
        )
        return new_ids, cursor.lastrowid or 0

    return await db.write_in_thread(write_page)


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
