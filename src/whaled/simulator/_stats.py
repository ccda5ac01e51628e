"""Derived views of the simulated world: the leaderboard and token price history."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from whaled.simulator._format import plain
from whaled.simulator._model import DAY_S, SimMarket
from whaled.simulator._world import World

__all__ = ["INTERVALS_S", "MAX_HISTORY_POINTS", "leaderboard_entries", "price_history"]

# ``interval`` values of /token/price-history; ``max`` is served at daily resolution.
INTERVALS_S = {"1m": 60, "1h": 3_600, "1d": DAY_S, "1w": 7 * DAY_S, "max": DAY_S}
MAX_HISTORY_POINTS = 1_000


def leaderboard_entries(world: World, data_type: str, period_days: int, limit: int) -> list[dict[str, Any]]:
    """Rank the wallets that traded in the period by volume, profit or points, highest first.

    Volume is the sum of trade amounts. Profit is the realised profit in the period plus the current
    unrealised PnL. Points are volume / 10 and exist only for periods 0 (all time) and 7, as documented for
    the web app's leaderboard.
    """
    if data_type == "points" and period_days not in (0, 7):
        return []
    since_s = world.now_s - period_days * DAY_S if period_days else None
    ranked: list[tuple[Decimal, str]] = []
    for wallet, rows in world.trades.items():
        window = [row for row in rows if since_s is None or row["createdAt"] > since_s]
        if not window:
            continue
        volume = sum((Decimal(row["amount"]) for row in window), Decimal(0))
        if data_type == "profit":
            value = sum((Decimal(row["profit"]) for row in window), Decimal(0)) + _unrealized(world, wallet)
        elif data_type == "points":
            value = Decimal(int(volume / 10))
        else:
            value = volume
        ranked.append((value, wallet))
    ranked.sort(key=lambda entry: (-entry[0], entry[1]))
    return [_entry(world, wallet, value) for value, wallet in ranked[:limit]]


def price_history(
    market: SimMarket, outcome_side: int, *, interval_s: int, start_s: int, end_s: int
) -> list[dict[str, Any]]:
    """Return ``{t, p}`` points at interval-aligned times; ``p`` is the price at the end of each interval."""
    first = max(start_s, market.created_at)
    first -= first % interval_s
    if end_s < first:
        return []
    count = min((end_s - first) // interval_s + 1, MAX_HISTORY_POINTS)
    first = end_s - end_s % interval_s - (count - 1) * interval_s
    points = []
    for index in range(count):
        at_s = first + index * interval_s
        price = market.price_at(outcome_side, min(at_s + interval_s - 1, end_s))
        if price is not None:
            points.append({"t": at_s, "p": plain(price)})
    return points


def _unrealized(world: World, wallet: str) -> Decimal:
    total = Decimal(0)
    for position in world.open_positions(wallet):
        market = world.markets[position.market_id]
        total += position.shares * market.price_of(position.outcome_side) - position.cost
    return total


def _entry(world: World, wallet: str, value: Decimal) -> dict[str, Any]:
    name = world.names.get(wallet, "")
    entry: dict[str, Any] = {
        "walletAddress": wallet,
        "userName": name,
        "avatar": "",
        "rankingValue": float(round(value, 2)),
    }
    if name:
        entry["xUsername"] = f"{name.lower()}_trades"
        entry["xUserId"] = str(int(wallet[2:14], 16))
    return entry
