"""``compute-whale-stats``: per-wallet figures, positions, the whale flag and a leaderboard.

Volumes and PnL are summed with ``Decimal`` in Python, so they stay exact. A wallet's result on a resolved
market is its cash flow there (sells and merges minus buys) plus one unit per share still held on the
winning side. A positive result is a win, and the win rate is reported with its sample size.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from whaled.clock import now_ms
from whaled.errors import WhaledError
from whaled.governor.opinion import REQUEST_ERRORS
from whaled.jobs.base import JobContext, JobResult
from whaled.log import jobs_logger as logger
from whaled.opinion.models import Position, canonical
from whaled.opinion.pagination import paginate
from whaled.store.db import Transaction
from whaled.store.wallets import TrackedWallet, tracked_wallets

__all__ = ["PositionsUnavailableError", "WalletStats", "compute_wallet_stats", "compute_whale_stats"]

_DAY_MS = 86_400_000
_RESOLVED = 4
_COMPARED = (
    "trade_count",
    "volume_24h",
    "volume_7d",
    "volume_30d",
    "markets_traded",
    "realized_pnl",
    "wins",
    "losses",
    "open_positions",
    "open_value",
    "is_whale",
)


@dataclass(slots=True)
class WalletStats:
    trade_count: int = 0
    volume_24h: Decimal = Decimal(0)
    volume_7d: Decimal = Decimal(0)
    volume_30d: Decimal = Decimal(0)
    markets_traded: int = 0
    realized_pnl: Decimal = Decimal(0)
    wins: int = 0
    losses: int = 0
    open_positions: int = 0
    open_value: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    is_whale: bool = False

    @property
    def win_rate(self) -> Decimal | None:
        sample = self.wins + self.losses
        return None if sample == 0 else Decimal(self.wins) / sample

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            name: canonical(value) if isinstance(value, Decimal) else value for name, value in asdict(self).items()
        }
        rate = self.win_rate
        payload["win_rate"] = None if rate is None else canonical(rate.quantize(Decimal("0.0001")))
        payload["resolved_sample"] = self.wins + self.losses
        return payload


def _winning_side(market: sqlite3.Row) -> int | None:
    result = market["result_token_id"]
    if not result:
        return None
    if result == market["yes_token_id"]:
        return 1
    if result == market["no_token_id"]:
        return 2
    return None


def _add_volumes(stats: WalletStats, trades: list[sqlite3.Row], now: int) -> None:
    for trade in trades:
        notional = Decimal(trade["notional_usd"])
        age = now - trade["created_at_ms"]
        if age <= 30 * _DAY_MS:
            stats.volume_30d += notional
        if age <= 7 * _DAY_MS:
            stats.volume_7d += notional
        if age <= _DAY_MS:
            stats.volume_24h += notional
        stats.realized_pnl += Decimal(trade["profit"])


def _add_results(stats: WalletStats, trades: list[sqlite3.Row], markets: dict[int, sqlite3.Row]) -> None:
    per_market: dict[int, list[sqlite3.Row]] = {}
    for trade in trades:
        per_market.setdefault(trade["market_id"], []).append(trade)
    for market_id, fills in per_market.items():
        market = markets.get(market_id)
        if market is None or market["status"] != _RESOLVED:
            continue
        winner = _winning_side(market)
        if winner is None:
            continue
        cash, winning_shares = Decimal(0), Decimal(0)
        for fill in fills:
            amount, shares = Decimal(fill["amount"]), Decimal(fill["shares"])
            sign = -1 if fill["side"] in ("buy", "split") else 1
            cash += sign * amount
            if fill["outcome_side"] == winner:
                winning_shares -= sign * shares
        if cash + winning_shares > 0:
            stats.wins += 1
        else:
            stats.losses += 1


async def _fetch_positions(ctx: JobContext, wallet: str) -> list[Position]:
    positions: list[Position] = []
    async for _, page in paginate(
        lambda number: ctx.api.user_positions(wallet, number),
        limit=ctx.api.page_limit,
        max_pages=ctx.settings.opinion.max_pages,
        what=f"positions of {wallet}",
    ):
        positions.extend(page.items)
    return positions


def _entry_price(position: Position) -> Decimal:
    # Some captures give the average entry price in cents; a probability is never above 1.
    price = position.avg_entry_price
    return price / 100 if price > 1 else price


async def _store_positions(tx: Transaction, wallet: str, positions: list[Position], now: int) -> None:
    await tx.execute("DELETE FROM positions WHERE wallet = ?", (wallet,))
    rows = [
        (
            wallet,
            p.market_id,
            p.outcome_side,
            p.root_market_id if p.root_market_id is not None else p.market_id,
            p.market_title,
            p.root_market_title or p.market_title,
            p.outcome,
            p.token_id or "",
            p.market_status,
            canonical(p.shares_owned),
            canonical(p.shares_frozen),
            canonical(_entry_price(p)),
            canonical(p.current_value_in_quote_token),
            canonical(p.unrealized_pnl),
            p.claim_status,
            now,
        )
        for p in positions
    ]
    await tx.executemany(
        "INSERT OR REPLACE INTO positions VALUES (" + ",".join("?" * 16) + ")",
        rows,
    )


async def compute_wallet_stats(
    trades: list[sqlite3.Row],
    markets: dict[int, sqlite3.Row],
    positions: list[Position] | None,
    ctx: JobContext,
) -> WalletStats:
    now = now_ms()
    stats = WalletStats(trade_count=len(trades), markets_traded=len({trade["market_id"] for trade in trades}))
    _add_volumes(stats, trades, now)
    _add_results(stats, trades, markets)
    for position in positions or ():
        if position.shares_owned > 0 and position.market_status != _RESOLVED:
            stats.open_positions += 1
            stats.open_value += position.current_value_in_quote_token
            stats.unrealized_pnl += position.unrealized_pnl
    whales = ctx.settings.whales
    stats.is_whale = stats.volume_24h >= whales.whale_volume_24h_usd or stats.volume_30d >= whales.whale_volume_30d_usd
    return stats


def _stats_row(wallet: str, stats: WalletStats, now: int) -> tuple[Any, ...]:
    rate = stats.win_rate
    return (
        wallet,
        now,
        stats.trade_count,
        canonical(stats.volume_24h),
        canonical(stats.volume_7d),
        canonical(stats.volume_30d),
        int(stats.volume_30d * 1_000_000),
        stats.markets_traded,
        canonical(stats.realized_pnl),
        stats.wins,
        stats.losses,
        None if rate is None else canonical(rate.quantize(Decimal("0.0001"))),
        stats.open_positions,
        canonical(stats.open_value),
        canonical(stats.unrealized_pnl),
        int(stats.is_whale),
    )


def _changed(before: sqlite3.Row | None, row: tuple[Any, ...]) -> list[str]:
    if before is None:
        return ["all"]
    current = dict(zip(_ROW_COLUMNS, row, strict=True))
    return [name for name in _COMPARED if str(before[name]) != str(current[name])]


_ROW_COLUMNS = (
    "wallet",
    "computed_ms",
    "trade_count",
    "volume_24h",
    "volume_7d",
    "volume_30d",
    "volume_30d_micro",
    "markets_traded",
    "realized_pnl",
    "wins",
    "losses",
    "win_rate",
    "open_positions",
    "open_value",
    "unrealized_pnl",
    "is_whale",
)


async def _previous_positions(ctx: JobContext, wallet: str, stats: WalletStats) -> None:
    """Carry the last known open-position figures over when the positions endpoint is unavailable."""
    before = await ctx.db.fetchone(
        "SELECT open_positions, open_value, unrealized_pnl FROM wallet_stats WHERE wallet = ?", (wallet,)
    )
    if before is not None:
        stats.open_positions = before["open_positions"]
        stats.open_value = Decimal(before["open_value"])
        stats.unrealized_pnl = Decimal(before["unrealized_pnl"])


async def _update_wallet(ctx: JobContext, wallet: TrackedWallet) -> tuple[bool, bool]:
    """Compute and store one wallet's stats; return (stats changed, positions were read)."""
    trades = await ctx.db.fetchall("SELECT * FROM trades WHERE wallet = ?", (wallet.address,))
    market_ids = sorted({trade["market_id"] for trade in trades})
    placeholders = ",".join("?" * len(market_ids))
    market_rows = await ctx.db.fetchall(f"SELECT * FROM markets WHERE market_id IN ({placeholders})", market_ids)
    markets = {row["market_id"]: row for row in market_rows}

    positions: list[Position] | None
    try:
        positions = await _fetch_positions(ctx, wallet.address)
    except REQUEST_ERRORS as exc:
        logger.warning("Positions of wallet %s unavailable, keeping the last known ones: %s", wallet.address, exc)
        positions = None
    stats = await compute_wallet_stats(trades, markets, positions, ctx)
    if positions is None:
        await _previous_positions(ctx, wallet.address, stats)

    now = now_ms()
    row = _stats_row(wallet.address, stats, now)
    async with ctx.db.transaction() as tx:
        if positions is not None:
            await _store_positions(tx, wallet.address, positions, now)
        before = await tx.fetchone("SELECT * FROM wallet_stats WHERE wallet = ?", (wallet.address,))
        changed = _changed(before, row)
        await tx.execute(
            f"INSERT INTO wallet_stats ({', '.join(_ROW_COLUMNS)}) VALUES ({', '.join('?' * len(row))}) "
            "ON CONFLICT (wallet) DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in _ROW_COLUMNS[1:]),
            row,
        )
        await tx.execute("UPDATE wallets SET is_whale = ? WHERE address = ?", (int(stats.is_whale), wallet.address))
        if changed:
            payload = {
                "wallet": wallet.address,
                "label": wallet.label,
                "stats": stats.as_payload(),
                "changed": changed,
            }
            await tx.append_event("wallet", "wallet.stats_changed", payload, wallet=wallet.address)
    return bool(changed), positions is not None


async def compute_whale_stats(ctx: JobContext) -> JobResult:
    wallets = await tracked_wallets(ctx.db)
    changed = positions_failed = 0
    for wallet in wallets:
        wallet_changed, positions_read = await _update_wallet(ctx, wallet)
        changed += wallet_changed
        positions_failed += not positions_read
    async with ctx.db.transaction() as tx:
        await tx.execute(
            "UPDATE wallet_stats SET rank = (SELECT count(*) + 1 FROM wallet_stats AS other "
            "WHERE other.volume_30d_micro > wallet_stats.volume_30d_micro)"
        )
    logger.info(
        "Whale stats computed for %d wallets, %d changed, positions unavailable for %d",
        len(wallets), changed, positions_failed,
    )  # fmt: skip
    if wallets and positions_failed == len(wallets):
        # Trade-based figures are stored, but an outage of the positions endpoint must not look like success.
        raise PositionsUnavailableError(len(wallets))
    details = {"wallets": len(wallets), "changed": changed, "positions_failed": positions_failed}
    return JobResult(items=len(wallets), details=details)


class PositionsUnavailableError(WhaledError):
    """The positions endpoint failed for every wallet, so open positions are stale."""

    def __init__(self, wallets: int) -> None:
        super().__init__(
            f"positions unavailable for all {wallets} wallets; trade-based stats were stored, open positions "
            "keep their last known values (see the warnings above for the API errors)"
        )
