"""The simulated world's records and the changes that keep them consistent.

Every change goes through these methods, so that a trade moves the wallet's position, the market's volume
and its last price together, and a resolution settles a market and its token in one step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from whaled.simulator import _catalog
from whaled.simulator._format import SimulatorError, hex_string, new_token_id
from whaled.simulator._model import MarketKind, SimMarket, SimPosition
from whaled.simulator._render import trade_row

__all__ = ["FEE_RATE", "World"]

# Fee charged on every fill, as a fraction of the amount.
FEE_RATE = Decimal("0.002")
_MICRO = Decimal("1e-6")
_MILLI = Decimal("0.001")
_FIRST_MARKET_ID = 100


class World:
    """Markets, wallets, trades (newest first per wallet) and positions at one world time ``clock_s``."""

    def __init__(self, clock_s: float) -> None:
        self.clock_s = clock_s
        self.markets: dict[int, SimMarket] = {}
        self.tokens: dict[str, tuple[int, int]] = {}
        self.whales: list[str] = []
        self.small_traders: list[str] = []
        self.names: dict[str, str] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.positions: dict[str, dict[tuple[int, int], SimPosition]] = {}
        self._next_market_id = _FIRST_MARKET_ID

    @property
    def now_s(self) -> int:
        return int(self.clock_s)

    # Wallets

    def add_wallet(self, address: str, *, whale: bool, name: str = "") -> str:
        address = address.lower()
        if address in self.trades:
            return address
        (self.whales if whale else self.small_traders).append(address)
        self.names[address] = name
        self.trades[address] = []
        self.positions[address] = {}
        return address

    def open_positions(self, wallet: str) -> list[SimPosition]:
        """Return the wallet's positions with shares left in markets that still trade, in a fixed order."""
        held = [
            position
            for key, position in sorted(self.positions.get(wallet, {}).items())
            if position.shares > 0 and self.markets[key[0]].status == 2
        ]
        return held

    # Markets

    def roots(self) -> list[SimMarket]:
        return [market for market in self.markets.values() if market.is_root]

    def root_of(self, market: SimMarket) -> SimMarket:
        return self.markets[market.root_id]

    def active_tradables(self) -> list[SimMarket]:
        return [market for market in self.markets.values() if market.tradable and market.status == 2]

    def root_is_active(self, root: SimMarket) -> bool:
        if root.kind == "categorical":
            return any(self.markets[child].status == 2 for child in root.children)
        return root.status == 2

    def create_market(
        self,
        rng: random.Random,
        title: str,
        *,
        options: Sequence[str] = (),
        created_at: int,
        cutoff_at: int,
        yes_prices: Sequence[Decimal] = (),
        base_volume: Decimal = Decimal(0),
    ) -> SimMarket:
        """Create a binary market, or a categorical one with one child per option, and index its tokens."""
        if options and len(options) < 2:
            raise SimulatorError(f"a categorical market needs at least two options, got {list(options)!r}")
        kind: MarketKind = "categorical" if options else "binary"
        root = SimMarket(
            market_id=self._take_market_id(),
            title=title,
            kind=kind,
            root_id=0,
            created_at=created_at,
            cutoff_at=cutoff_at,
            rules="" if options else _catalog.binary_rules(title),
        )
        root.root_id = root.market_id
        self.markets[root.market_id] = root
        if not options:
            self._make_tradable(rng, root, yes_prices[0] if yes_prices else Decimal("0.5"), base_volume)
            return root
        for index, option in enumerate(options):
            child = SimMarket(
                market_id=self._take_market_id(),
                title=option,
                kind="child",
                root_id=root.market_id,
                created_at=created_at + 1 + index,
                cutoff_at=0,
                rules=_catalog.child_rules(title, option),
            )
            self.markets[child.market_id] = child
            root.children.append(child.market_id)
            price = yes_prices[index] if index < len(yes_prices) else Decimal("0.5")
            self._make_tradable(rng, child, price, base_volume / len(options))
        return root

    def set_yes_price(self, market: SimMarket, yes_price: Decimal) -> None:
        market.set_price(min(max(yes_price.quantize(_MILLI), Decimal("0.01")), Decimal("0.99")), self.now_s)

    def count_volume(self, market: SimMarket, amount: Decimal, at_s: int) -> None:
        market.volume += amount
        self.root_of(market).add_fill(at_s, amount)

    # Trades

    def record_trade(
        self,
        wallet: str,
        market: SimMarket,
        *,
        side: str,
        outcome_side: int,
        fills: Sequence[tuple[Decimal, Decimal]],
        tx_hash: str,
        created_at: int,
    ) -> list[dict[str, Any]]:
        """Record one transaction of ``(price, shares)`` fills; returns the trade rows, first fill first."""
        root = self.root_of(market)
        position = self.positions[wallet].setdefault(
            (market.market_id, outcome_side), SimPosition(market.market_id, outcome_side)
        )
        rows = []
        for price, shares in fills:
            amount = price * shares
            profit = _apply_to_position(position, side, price, shares)
            fee = (amount * FEE_RATE).quantize(_MICRO)
            rows.append(
                trade_row(
                    market,
                    root,
                    tx_hash=tx_hash,
                    side=side,
                    outcome_side=outcome_side,
                    price=price,
                    shares=shares,
                    fee=fee,
                    profit=profit,
                    created_at=created_at,
                )
            )
            self.count_volume(market, amount, created_at)
        market.last_side = "sell-limit" if side.lower().startswith("sell") else "buy-limit"
        market.last_size = fills[-1][1] if fills else Decimal(0)
        market.last_trade_at = max(market.last_trade_at, created_at)
        for row in rows:
            self.insert_trade_row(wallet, row)
        return rows

    def insert_trade_row(self, wallet: str, row: dict[str, Any]) -> None:
        """Insert a row newest first; it goes before older rows and rows of the same second."""
        rows = self.trades[wallet]
        index = 0
        while index < len(rows) and rows[index]["createdAt"] > row["createdAt"]:
            index += 1
        rows.insert(index, row)

    # Resolution

    def resolve_binary(self, market: SimMarket, *, yes_wins: bool, at_s: int) -> None:
        """Settle a binary market or one child: ``resultTokenId`` becomes the winning token."""
        if not market.tradable:
            raise SimulatorError(f"market {market.market_id} is a categorical parent; resolve one of its options")
        market.status = 4
        market.result_token = market.yes_token if yes_wins else market.no_token
        market.resolved_at = at_s
        if market.kind == "binary" and (market.cutoff_at == 0 or market.cutoff_at > at_s):
            market.cutoff_at = at_s

    def resolve_categorical(self, root: SimMarket, *, winner_id: int, at_s: int) -> None:
        """Settle every open option: the winner's Yes token wins, every other option resolves No."""
        if winner_id not in root.children:
            raise SimulatorError(
                f"market {winner_id} is not an option of categorical market {root.market_id}; "
                f"options are {root.children}"
            )
        for child_id in root.children:
            child = self.markets[child_id]
            if child.status == 2:
                self.resolve_binary(child, yes_wins=child_id == winner_id, at_s=at_s)
        if root.cutoff_at == 0 or root.cutoff_at > at_s:
            root.cutoff_at = at_s

    def _take_market_id(self) -> int:
        market_id = self._next_market_id
        self._next_market_id += 1
        return market_id

    def _make_tradable(self, rng: random.Random, market: SimMarket, yes_price: Decimal, volume: Decimal) -> None:
        market.yes_token = new_token_id(rng)
        market.no_token = new_token_id(rng)
        market.condition_id = hex_string(rng, 64)
        market.question_id = hex_string(rng, 64)
        market.volume = volume
        market.last_trade_at = market.created_at
        self.tokens[market.yes_token] = (market.market_id, 1)
        self.tokens[market.no_token] = (market.market_id, 2)
        market.set_price(min(max(yes_price.quantize(_MILLI), Decimal("0.01")), Decimal("0.99")), market.created_at)


def _apply_to_position(position: SimPosition, side: str, price: Decimal, shares: Decimal) -> Decimal:
    """Move the position by one fill; returns the realised profit (non-zero on sells only)."""
    word = side.lower()
    if word.startswith("buy"):
        position.shares += shares
        position.cost += price * shares
        return Decimal(0)
    if not word.startswith("sell"):
        return Decimal(0)
    sold = min(shares, position.shares)
    average = position.avg_entry_price
    position.shares -= sold
    position.cost = position.cost - average * sold if position.shares else Decimal(0)
    return ((price - average) * sold).quantize(_MICRO)
