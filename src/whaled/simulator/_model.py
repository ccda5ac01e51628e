"""The simulator's own records of markets and positions; rendered to API payloads by ``_render``."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

__all__ = ["DAY_S", "MarketKind", "SimMarket", "SimPosition"]

DAY_S = 86_400
# Price points kept per market for /token/price-history; older points are dropped first.
_MAX_PRICE_POINTS = 5_000

MarketKind = Literal["binary", "categorical", "child"]


@dataclass(eq=False)
class SimMarket:
    """A binary market, a categorical parent, or one child (option) of a categorical parent.

    Prices are kept for the Yes token; the No token's price is ``1 - yes_price``.
    """

    market_id: int
    title: str
    kind: MarketKind
    root_id: int
    created_at: int
    cutoff_at: int
    rules: str
    yes_price: Decimal = Decimal("0.5")
    yes_token: str = ""
    no_token: str = ""
    condition_id: str = ""
    question_id: str = ""
    status: int = 2
    result_token: str = ""
    resolved_at: int = 0
    volume: Decimal = Decimal(0)
    children: list[int] = field(default_factory=list)
    prices: list[tuple[int, Decimal]] = field(default_factory=list)
    # Volume events of the last seven days, on top-level markets only (for volume24h and volume7d).
    fills: deque[tuple[int, Decimal]] = field(default_factory=deque)
    last_side: str = "buy-limit"
    last_size: Decimal = Decimal(0)
    last_trade_at: int = 0

    @property
    def tradable(self) -> bool:
        return self.kind != "categorical"

    @property
    def is_root(self) -> bool:
        return self.kind != "child"

    @property
    def yes_label(self) -> str:
        return "" if self.kind == "categorical" else "Yes"

    @property
    def no_label(self) -> str:
        return "" if self.kind == "categorical" else "No"

    def outcome_label(self, outcome_side: int) -> str:
        return "Yes" if outcome_side == 1 else "No"

    def token_for(self, outcome_side: int) -> str:
        return self.yes_token if outcome_side == 1 else self.no_token

    def price_of(self, outcome_side: int) -> Decimal:
        return self.yes_price if outcome_side == 1 else 1 - self.yes_price

    def set_price(self, yes_price: Decimal, at_s: int) -> None:
        self.yes_price = yes_price
        if self.prices and self.prices[-1][0] == at_s:
            self.prices[-1] = (at_s, yes_price)
        else:
            self.prices.append((at_s, yes_price))
        if len(self.prices) > _MAX_PRICE_POINTS:
            del self.prices[: len(self.prices) - _MAX_PRICE_POINTS]

    def yes_price_at(self, at_s: int) -> Decimal | None:
        """Return the Yes price in force at ``at_s``, or None before the first known point."""
        index = bisect.bisect_right(self.prices, at_s, key=lambda point: point[0])
        return self.prices[index - 1][1] if index else None

    def price_at(self, outcome_side: int, at_s: int) -> Decimal | None:
        """Return the outcome's price in force at ``at_s``, or None before the first known point."""
        yes = self.yes_price_at(at_s)
        if yes is None:
            return None
        return yes if outcome_side == 1 else 1 - yes

    def add_fill(self, at_s: int, amount: Decimal) -> None:
        self.fills.append((at_s, amount))
        while self.fills and self.fills[0][0] <= at_s - 7 * DAY_S:
            self.fills.popleft()

    def volume_since(self, since_s: int) -> Decimal:
        return sum((amount for at_s, amount in self.fills if at_s > since_s), Decimal(0))


@dataclass(eq=False)
class SimPosition:
    """The shares of one outcome in one wallet, with their total cost in quote token."""

    market_id: int
    outcome_side: int
    shares: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    @property
    def avg_entry_price(self) -> Decimal:
        return self.cost / self.shares if self.shares else Decimal(0)
