"""Render simulator records as Opinion API payloads: field names, types and units as the real API sends them.

Markets follow ``GET /market`` list items (seconds, 18-place volume strings, ``childMarkets`` null on
binaries, no ``marketType`` on children). Trades and positions follow the OpenAPI field tables. Token
endpoints stamp times in milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from whaled.simulator._format import (
    CHAIN_ID,
    CLAIM_STATUS_NAMES,
    MARKET_STATUS_NAMES,
    OUTCOME_SIDE_NAMES,
    USDT,
    dec18,
    plain,
)
from whaled.simulator._model import DAY_S, SimMarket, SimPosition

__all__ = [
    "TRADE_FIELDS",
    "child_json",
    "latest_price_json",
    "market_json",
    "orderbook_json",
    "position_json",
    "trade_row",
]

_CENT = Decimal("0.01")
_BOOK_LEVELS = 6

# The fields of a ``GET /trade/user/{wallet}`` row, as trade_row renders them.
TRADE_FIELDS = frozenset(
    {
        "txHash",
        "marketId",
        "rootMarketId",
        "marketTitle",
        "rootMarketTitle",
        "side",
        "outcome",
        "outcomeSide",
        "outcomeSideEnum",
        "price",
        "shares",
        "amount",
        "fee",
        "profit",
        "quoteToken",
        "quoteTokenUsdPrice",
        "usdAmount",
        "status",
        "statusEnum",
        "chainId",
        "createdAt",
    }
)


def market_json(market: SimMarket, markets: Mapping[int, SimMarket], now_s: int) -> dict[str, Any]:
    """Render a top-level market (binary or categorical parent) as a ``GET /market`` list item."""
    children = [markets[child_id] for child_id in market.children]
    # Both captured categorical parents keep status 1 (Created) while their children trade and resolve.
    status = 1 if market.kind == "categorical" else market.status
    volume = sum((child.volume for child in children), Decimal(0)) if children else market.volume
    return {
        "marketId": market.market_id,
        "marketTitle": market.title,
        "status": status,
        "statusEnum": MARKET_STATUS_NAMES[status],
        "marketType": 1 if market.kind == "categorical" else 0,
        "childMarkets": [child_json(child) for child in children] if market.kind == "categorical" else None,
        "yesLabel": market.yes_label,
        "noLabel": market.no_label,
        "rules": market.rules,
        "yesTokenId": market.yes_token,
        "noTokenId": market.no_token,
        "conditionId": market.condition_id,
        "resultTokenId": market.result_token,
        "volume": dec18(volume),
        "volume24h": dec18(market.volume_since(now_s - DAY_S)),
        "volume7d": dec18(market.volume_since(now_s - 7 * DAY_S)),
        "quoteToken": USDT,
        "chainId": CHAIN_ID,
        "questionId": market.question_id,
        "createdAt": market.created_at,
        "cutoffAt": market.cutoff_at,
        "resolvedAt": market.resolved_at,
    }


def child_json(market: SimMarket) -> dict[str, Any]:
    """Render one option of a categorical market: the list item's fields minus the parent-only ones."""
    return {
        "marketId": market.market_id,
        "marketTitle": market.title,
        "status": market.status,
        "statusEnum": MARKET_STATUS_NAMES[market.status],
        "yesLabel": market.yes_label,
        "noLabel": market.no_label,
        "rules": market.rules,
        "yesTokenId": market.yes_token,
        "noTokenId": market.no_token,
        "conditionId": market.condition_id,
        "resultTokenId": market.result_token,
        "volume": dec18(market.volume),
        "quoteToken": USDT,
        "chainId": CHAIN_ID,
        "questionId": market.question_id,
        "createdAt": market.created_at,
        "cutoffAt": market.cutoff_at,
        "resolvedAt": market.resolved_at,
    }


def trade_row(
    market: SimMarket,
    root: SimMarket,
    *,
    tx_hash: str,
    side: str,
    outcome_side: int,
    price: Decimal,
    shares: Decimal,
    fee: Decimal,
    profit: Decimal,
    created_at: int,
) -> dict[str, Any]:
    """Render one filled trade as ``GET /trade/user/{wallet}`` lists it (``amount`` in USDT, not wei)."""
    amount = price * shares
    return {
        "txHash": tx_hash,
        "marketId": market.market_id,
        "rootMarketId": root.market_id,
        "marketTitle": market.title,
        "rootMarketTitle": root.title,
        "side": side,
        "outcome": market.outcome_label(outcome_side),
        "outcomeSide": outcome_side,
        "outcomeSideEnum": OUTCOME_SIDE_NAMES[outcome_side],
        "price": dec18(price),
        "shares": plain(shares),
        "amount": dec18(amount),
        "fee": dec18(fee),
        "profit": dec18(profit),
        "quoteToken": USDT,
        "quoteTokenUsdPrice": dec18(Decimal(1)),
        # NOTE: the scale of usdAmount is disputed. One developer report has it wei-scaled (x 1e18), so it is
        # sent that way here, and clients must compute the notional from amount x quoteTokenUsdPrice.
        "usdAmount": dec18(amount * Decimal(10) ** 18),
        "status": 2,
        "statusEnum": "Filled",
        "chainId": CHAIN_ID,
        "createdAt": created_at,
    }


def position_json(position: SimPosition, market: SimMarket, root: SimMarket, now_s: int) -> dict[str, Any]:
    """Render one holding as ``GET /positions/user/{wallet}`` lists it; resolved markets pay 1 or 0."""
    side = position.outcome_side
    token = market.token_for(side)
    price = _mark_price(market, side)
    value = position.shares * price
    pnl = value - position.cost

    before = market.price_at(side, now_s - DAY_S)
    price_before = price if before is None else before
    daily = position.shares * (price - price_before)

    won = market.status == 4 and market.result_token == token
    claim_status = 1 if won else 0
    return {
        "marketId": market.market_id,
        "marketTitle": market.title,
        "rootMarketId": root.market_id,
        "rootMarketTitle": root.title,
        "marketStatus": market.status,
        "marketStatusEnum": MARKET_STATUS_NAMES[market.status],
        "marketCutoffAt": root.cutoff_at,
        "outcome": market.outcome_label(side),
        "outcomeSide": side,
        "outcomeSideEnum": OUTCOME_SIDE_NAMES[side],
        "sharesOwned": plain(position.shares),
        "sharesFrozen": "0",
        "avgEntryPrice": dec18(position.avg_entry_price),
        "currentValueInQuoteToken": dec18(value),
        "unrealizedPnl": dec18(pnl),
        "unrealizedPnlPercent": dec18(_ratio(pnl, position.cost)),
        "dailyPnlChange": dec18(daily),
        "dailyPnlChangePercent": dec18(_ratio(daily, position.shares * price_before)),
        "conditionId": market.condition_id,
        "tokenId": token,
        "claimStatus": claim_status,
        "claimStatusEnum": CLAIM_STATUS_NAMES[claim_status],
        "quoteToken": USDT,
    }


def latest_price_json(market: SimMarket, outcome_side: int) -> dict[str, Any]:
    return {
        "tokenId": market.token_for(outcome_side),
        "price": plain(market.price_of(outcome_side)),
        "side": market.last_side,
        "size": plain(market.last_size),
        "timestamp": market.last_trade_at * 1000,
    }


def orderbook_json(market: SimMarket, outcome_side: int, *, seed: int, now_s: int) -> dict[str, Any]:
    """Render a book around the current price; the sizes depend only on the seed, token and last trade."""
    token = market.token_for(outcome_side)
    bids: list[dict[str, str]] = []
    asks: list[dict[str, str]] = []
    if market.status == 2:
        # A string seed is hashed with SHA-512, so the book is the same in every process.
        rng = random.Random(f"{seed}:{token}:{market.last_trade_at}")
        price = market.price_of(outcome_side)
        for level in range(1, _BOOK_LEVELS + 1):
            bid, ask = price - level * _CENT, price + (level - 1) * _CENT + _CENT
            size_bid = Decimal(rng.randrange(1_000, 2_000_000)) / 100
            size_ask = Decimal(rng.randrange(1_000, 2_000_000)) / 100
            if bid > 0:
                bids.append({"price": plain(bid), "size": plain(size_bid)})
            if ask < 1:
                asks.append({"price": plain(ask), "size": plain(size_ask)})
    return {
        "market": market.condition_id,
        "tokenId": token,
        "timestamp": now_s * 1000,
        "bids": bids,
        "asks": asks,
    }


def _mark_price(market: SimMarket, outcome_side: int) -> Decimal:
    if market.status == 4:
        return Decimal(1) if market.result_token == market.token_for(outcome_side) else Decimal(0)
    return market.price_of(outcome_side)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    return numerator / denominator if denominator else Decimal(0)
