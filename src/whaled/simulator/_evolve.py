"""The simulator's event stream: trades, price drift, new markets and resolutions over world time.

Events arrive as one Poisson process whose kind is drawn by rate, and every draw comes from one seeded
``random.Random``. The stream is therefore the same for the same seed and the same sequence of
``run_until`` calls. The time of the next event is carried from one call to the next.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from whaled.log import simulator_logger as logger
from whaled.simulator import _catalog
from whaled.simulator._format import new_tx_hash
from whaled.simulator._model import DAY_S, SimMarket
from whaled.simulator._world import World

__all__ = ["HISTORY_RATES", "LIVE_RATES", "Evolver", "Rates"]

_CENT = Decimal("0.01")
_TICK = Decimal("0.001")
# Bounds on how many top-level markets trade at once: new markets stop above the first, resolutions below
# the second, so the world neither empties nor grows without end.
_MAX_ACTIVE_ROOTS = 14
_MIN_ACTIVE_ROOTS = 6
# One advance processes at most this many random events; later ones in the same span are skipped.
_MAX_EVENTS_PER_RUN = 50_000


@dataclass(frozen=True)
class Rates:
    """Expected events per second of world time, by kind."""

    whale_trade: float
    small_trade: float
    drift: float
    new_market: float
    resolution: float

    @property
    def total(self) -> float:
        return self.whale_trade + self.small_trade + self.drift + self.new_market + self.resolution


# Live: about four whale transactions a minute across all whales, half of them above 5,000 USDT.
LIVE_RATES = Rates(whale_trade=4 / 60, small_trade=6 / 60, drift=12 / 60, new_market=1 / 240, resolution=1 / 600)
# History before the start: about 60 transactions per whale over a week, so a first sync is a few pages.
HISTORY_RATES = Rates(whale_trade=1 / 1200, small_trade=1 / 1500, drift=1 / 300, new_market=0.0, resolution=0.0)


class Evolver:
    """Draws events from ``rng`` and applies them to ``world`` in time order."""

    def __init__(self, world: World, rng: random.Random, rates: Rates) -> None:
        self._world = world
        self._rng = rng
        self._rates = rates
        self._total_rate = rates.total
        self._next_at = world.clock_s + rng.expovariate(self._total_rate)
        self._scheduled: list[tuple[float, int, int]] = []
        self.binary_titles_used = 0
        self.categorical_titles_used = 0

    def set_rates(self, rates: Rates) -> None:
        self._rates = rates
        self._total_rate = rates.total
        self._next_at = self._world.clock_s + self._rng.expovariate(self._total_rate)

    def schedule_resolution(self, at_s: float, market_id: int, winner: int) -> None:
        """Resolve a market at ``at_s``: ``winner`` is 1/2 for Yes/No, or the winning option's market id."""
        heapq.heappush(self._scheduled, (at_s, market_id, winner))

    def run_until(self, end_s: float) -> None:
        events = 0
        while True:
            scheduled_at = self._scheduled[0][0] if self._scheduled else math.inf
            due = min(self._next_at, scheduled_at)
            if due > end_s:
                break
            self._world.clock_s = due
            if scheduled_at <= self._next_at:
                _, market_id, winner = heapq.heappop(self._scheduled)
                self._resolve(self._world.markets[market_id], winner)
                continue
            events += 1
            if events > _MAX_EVENTS_PER_RUN:
                logger.warning("Simulator skipped random events after %d in one advance", _MAX_EVENTS_PER_RUN)
                self._next_at = end_s + self._rng.expovariate(self._total_rate)
                break
            self._apply_random_event()
            self._next_at = due + self._rng.expovariate(self._total_rate)
        self._world.clock_s = end_s

    # Events

    def _apply_random_event(self) -> None:
        rates = self._rates
        pick = self._rng.random() * self._total_rate
        if pick < rates.whale_trade:
            self._trade(self._rng.choice(self._world.whales), Decimal(400), Decimal(60_000))
        elif (pick := pick - rates.whale_trade) < rates.small_trade:
            self._trade(self._rng.choice(self._world.small_traders), Decimal(5), Decimal(600))
        elif (pick := pick - rates.small_trade) < rates.drift:
            self._drift()
        elif pick - rates.drift < rates.new_market:
            self._new_market()
        else:
            self._random_resolution()

    def _trade(self, wallet: str, low: Decimal, high: Decimal) -> None:
        """Record one transaction of ``wallet``, split into one to three fills at adjacent price ticks.

        Now and then it sells part of a holding. Otherwise it buys for a notional drawn log-uniformly from
        ``[low, high]`` USDT.
        """
        rng = self._rng
        held = self._world.open_positions(wallet)
        if held and rng.random() < 0.3:
            position = rng.choice(held)
            market, outcome_side, side = self._world.markets[position.market_id], position.outcome_side, "Sell"
            fraction = Decimal(rng.randrange(30, 101)) / 100
            shares = (position.shares * fraction).quantize(_CENT, rounding=ROUND_DOWN)
        else:
            tradable = self._world.active_tradables()
            if not tradable:
                return
            market, outcome_side, side = rng.choice(tradable), rng.choice((1, 2)), "Buy"
            notional = Decimal(round(math.exp(rng.uniform(math.log(low), math.log(high))), 2))
            shares = (notional / market.price_of(outcome_side)).quantize(_CENT)
        if shares <= 0:
            return
        fills = _split_fills(rng, side, market.price_of(outcome_side), shares)
        at_s = self._world.now_s
        self._world.record_trade(
            wallet, market, side=side, outcome_side=outcome_side, fills=fills, tx_hash=new_tx_hash(rng), created_at=at_s
        )
        notional_total = sum((price * size for price, size in fills), Decimal(0))
        toward_yes = (side == "Buy") == (outcome_side == 1)
        impact = max(_TICK, min(Decimal("0.03"), (notional_total / 300_000).quantize(_TICK)))
        self._world.set_yes_price(market, market.yes_price + (impact if toward_yes else -impact))

    def _drift(self) -> None:
        """Apply trading by untracked wallets: the price moves a few ticks and the volume grows.

        The step leans toward 0.5 by 2% of the distance, so that prices spread out without piling up at the
        bounds over a long run.
        """
        tradable = self._world.active_tradables()
        if not tradable:
            return
        market = self._rng.choice(tradable)
        pull = ((Decimal("0.5") - market.yes_price) / 50).quantize(_TICK)
        step = Decimal(self._rng.randrange(-15, 16)) * _TICK + pull
        self._world.set_yes_price(market, market.yes_price + step)
        size = Decimal(self._rng.randrange(1_000, 300_000)) / 100
        self._world.count_volume(market, (size * market.yes_price).quantize(_CENT), self._world.now_s)
        market.last_side = "buy-limit" if step >= 0 else "sell-limit"
        market.last_size = size
        market.last_trade_at = self._world.now_s

    def _new_market(self) -> None:
        active = [root for root in self._world.roots() if self._world.root_is_active(root)]
        if len(active) >= _MAX_ACTIVE_ROOTS:
            return
        now_s = self._world.now_s
        cutoff_at = now_s + self._rng.randrange(3, 60) * DAY_S
        if self._rng.random() < 0.6:
            self.create_binary(created_at=now_s, cutoff_at=cutoff_at)
        else:
            self.create_categorical(created_at=now_s, cutoff_at=cutoff_at)

    def _random_resolution(self) -> None:
        active = [root for root in self._world.roots() if self._world.root_is_active(root)]
        if len(active) <= _MIN_ACTIVE_ROOTS:
            return
        root = self._rng.choice(active)
        if root.kind == "binary":
            self._resolve(root, 1 if self._rng.random() < float(root.yes_price) else 2)
            return
        options = [self._world.markets[child] for child in root.children]
        weights = [float(option.yes_price) for option in options]
        self._resolve(root, self._rng.choices(options, weights=weights)[0].market_id)

    def _resolve(self, market: SimMarket, winner: int) -> None:
        at_s = self._world.now_s
        if market.kind == "categorical":
            self._world.resolve_categorical(market, winner_id=winner, at_s=at_s)
        elif market.status == 2:
            self._world.resolve_binary(market, yes_wins=winner == 1, at_s=at_s)
        logger.debug("Simulator market %d resolved, winner %d", market.market_id, winner)

    # Market creation, shared with the initial world

    def create_binary(self, *, created_at: int, cutoff_at: int) -> SimMarket:
        index = self.binary_titles_used
        questions = _catalog.BINARY_QUESTIONS
        title = _numbered(questions[index % len(questions)], index // len(questions))
        self.binary_titles_used += 1
        yes_price = Decimal(self._rng.randrange(8, 93)) / 100
        return self._world.create_market(
            self._rng,
            title,
            created_at=created_at,
            cutoff_at=cutoff_at,
            yes_prices=[yes_price],
            base_volume=Decimal(self._rng.randrange(10_000, 5_000_000)),
        )

    def create_categorical(self, *, created_at: int, cutoff_at: int) -> SimMarket:
        index = self.categorical_titles_used
        questions = _catalog.CATEGORICAL_QUESTIONS
        question, options = questions[index % len(questions)]
        self.categorical_titles_used += 1
        weights = [self._rng.randrange(5, 100) for _ in options]
        prices = [Decimal(weight) / sum(weights) for weight in weights]
        return self._world.create_market(
            self._rng,
            _numbered(question, index // len(questions)),
            options=options,
            created_at=created_at,
            cutoff_at=cutoff_at,
            yes_prices=prices,
            base_volume=Decimal(self._rng.randrange(50_000, 20_000_000)),
        )


def _numbered(title: str, round_no: int) -> str:
    """Return the title, marked with its round once the catalogue repeats."""
    return title if round_no == 0 else f"{title} (round {round_no + 1})"


def _split_fills(rng: random.Random, side: str, price: Decimal, shares: Decimal) -> list[tuple[Decimal, Decimal]]:
    """Split ``shares`` over one to three fills; a buy walks the book up one tick per fill, a sell down."""
    count = rng.choices((1, 2, 3), weights=(60, 25, 15))[0] if shares >= Decimal("0.03") else 1
    weights = [rng.randrange(1, 10) for _ in range(count)]
    step = _TICK if side == "Buy" else -_TICK
    fills: list[tuple[Decimal, Decimal]] = []
    left = shares
    for index, weight in enumerate(weights):
        part = left if index == count - 1 else (shares * weight / sum(weights)).quantize(_CENT, rounding=ROUND_DOWN)
        part = min(max(part, _CENT), left)
        fill_price = min(max(price + step * index, _TICK), Decimal("0.999"))
        if part > 0:
            fills.append((fill_price, part))
        left -= part
    return fills
