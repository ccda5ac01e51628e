"""The simulated Opinion world: markets, wallets, trades, positions and prices that evolve deterministically.

For one seed, one start time and one sequence of :meth:`SimulatorState.advance` calls and helper calls,
every payload is the same, byte for byte. The start time is read once from ``now``; from then on the world
keeps its own clock, which only :meth:`~SimulatorState.advance` moves.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from whaled.simulator import _catalog
from whaled.simulator._evolve import HISTORY_RATES, LIVE_RATES, Evolver
from whaled.simulator._format import SimulatorError, new_address, new_tx_hash
from whaled.simulator._model import DAY_S, SimMarket
from whaled.simulator._render import (
    TRADE_FIELDS,
    child_json,
    latest_price_json,
    market_json,
    orderbook_json,
    position_json,
)
from whaled.simulator._stats import leaderboard_entries, price_history
from whaled.simulator._world import World

__all__ = ["SimulatorError", "SimulatorState"]

_HISTORY_S = 7 * DAY_S
_WHALES = 8
_SMALL_TRADERS = 12
_INITIAL_BINARIES = 6
_INITIAL_CATEGORICALS = 4
_DEFAULT_TRADE_USDT = Decimal(10_000)
_CENT = Decimal("0.01")
# Trade fields whose wire type is a decimal string; an override given as a number is converted.
_DECIMAL_FIELDS = {"price", "shares", "amount", "fee", "profit", "quoteTokenUsdPrice", "usdAmount"}
_MARKET_SORTS: dict[int, tuple[str, bool]] = {
    1: ("createdAt", True),
    3: ("volume", True),
    4: ("volume", False),
    5: ("volume24h", True),
    6: ("volume24h", False),
    7: ("volume7d", True),
    8: ("volume7d", False),
}


class SimulatorState:
    """A deterministic Opinion world for one seed.

    It starts with a week of history: ten top-level markets, eight whale wallets and twelve small traders.
    Six markets are binary and four categorical with two to five options, and three of the ten are resolved.

    :param seed: selects the world; the same seed gives the same markets, wallets and trades.
    :param now: read once, to anchor the world's clock (Unix seconds).
    """

    def __init__(self, seed: int = 7, *, now: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        # Helpers draw from their own generator, so that a test's add_trade leaves the event stream as it was.
        self._helper_rng = random.Random(f"{seed}:helpers")
        start_s = float(int(now()))
        self._world = World(start_s - _HISTORY_S)
        self._evolver = Evolver(self._world, self._rng, HISTORY_RATES)
        self._populate(start_s)
        self._evolver.run_until(start_s)
        self._evolver.set_rates(LIVE_RATES)

    # Time

    @property
    def now_s(self) -> int:
        """World time in whole Unix seconds."""
        return self._world.now_s

    @property
    def clock_s(self) -> float:
        """World time in Unix seconds, with the fractions that :meth:`advance` adds."""
        return self._world.clock_s

    def advance(self, seconds: float) -> None:
        """Move world time forward, applying the trades, price moves, new markets and resolutions due."""
        if seconds < 0:
            raise SimulatorError(f"cannot advance by {seconds!r} s; world time only moves forward")
        self._evolver.run_until(self._world.clock_s + seconds)

    # Reading

    @property
    def wallets(self) -> list[str]:
        """Every wallet with a trade history: whales first, then small traders."""
        return self._world.whales + self._world.small_traders

    @property
    def whale_wallets(self) -> list[str]:
        return list(self._world.whales)

    def markets(self) -> list[dict[str, Any]]:
        """Return every top-level market as a ``GET /market`` list item, by id."""
        return [self._render_root(root) for root in sorted(self._world.roots(), key=lambda m: m.market_id)]

    def market(self, market_id: int) -> dict[str, Any] | None:
        """Return ``GET /market/{id}``'s ``data``: a top-level market or a categorical option; None if unknown."""
        market = self._world.markets.get(market_id)
        if market is None:
            return None
        return self._render_root(market) if market.is_root else child_json(market)

    def categorical_market(self, market_id: int) -> dict[str, Any] | None:
        market = self._world.markets.get(market_id)
        if market is None or market.kind != "categorical":
            return None
        return self._render_root(market)

    def list_markets(self, *, status: str | None, market_type: int, sort_by: int | None) -> list[dict[str, Any]]:
        """Filter and sort top-level markets as ``GET /market`` does, before pagination.

        A categorical parent counts as activated while any option trades and as resolved once all are.
        """
        roots = [root for root in self._world.roots() if market_type == 2 or _market_type(root) == market_type]
        if status is not None:
            roots = [root for root in roots if (status == "activated") == self._world.root_is_active(root)]
        items = [self._render_root(root) for root in roots]
        items.sort(key=lambda item: -item["marketId"])
        if sort_by == 2:
            items.sort(key=lambda item: item["cutoffAt"] or float("inf"))
        elif sort_by in _MARKET_SORTS:
            field, descending = _MARKET_SORTS[sort_by]
            items.sort(key=lambda item: Decimal(item[field]), reverse=descending)
        return items

    def trades(self, wallet: str, *, market_id: int | None = None) -> list[dict[str, Any]]:
        """Return the wallet's trades, newest first, optionally of one market (matched on either id)."""
        rows = self._world.trades.get(wallet.lower(), [])
        if market_id is not None:
            rows = [row for row in rows if market_id in (row["marketId"], row["rootMarketId"])]
        return [dict(row) for row in rows]

    def positions(self, wallet: str) -> list[dict[str, Any]]:
        """Return the wallet's holdings with shares left, largest share count first."""
        held = [p for p in self._world.positions.get(wallet.lower(), {}).values() if p.shares > 0]
        held.sort(key=lambda p: (-p.shares, p.market_id, p.outcome_side))
        rows = []
        for position in held:
            market = self._world.markets[position.market_id]
            rows.append(position_json(position, market, self._world.root_of(market), self.now_s))
        return rows

    def latest_price(self, token_id: str) -> dict[str, Any] | None:
        found = self._token(token_id)
        return latest_price_json(*found) if found else None

    def orderbook(self, token_id: str) -> dict[str, Any] | None:
        found = self._token(token_id)
        return orderbook_json(*found, seed=self.seed, now_s=self.now_s) if found else None

    def price_history(
        self, token_id: str, *, interval_s: int, start_s: int | None = None, end_s: int | None = None
    ) -> list[dict[str, Any]] | None:
        found = self._token(token_id)
        if found is None:
            return None
        market, outcome_side = found
        return price_history(
            market,
            outcome_side,
            interval_s=interval_s,
            start_s=start_s if start_s is not None else market.created_at,
            end_s=min(end_s, self.now_s) if end_s is not None else self.now_s,
        )

    def leaderboard(self, data_type: str, period_days: int, limit: int) -> list[dict[str, Any]]:
        return leaderboard_entries(self._world, data_type, period_days, limit)

    # Test helpers

    def add_wallet(self, address: str | None = None, *, whale: bool = False, name: str = "") -> str:
        """Add a wallet (a new deterministic address when None); returns its lower-case address."""
        if address is None:
            address = new_address(self._helper_rng)
        if len(address) != 42 or not address.startswith("0x") or not _is_hex(address[2:]):
            raise SimulatorError(f"wallet address must be 0x and 40 hex digits, got {address!r}")
        return self._world.add_wallet(address, whale=whale, name=name)

    def add_trade(self, wallet: str, **overrides: Any) -> dict[str, Any]:
        """Add one filled trade of ``wallet`` at world time and return its row.

        By default it buys Yes for 10,000 USDT on the first active market. Overrides use the wire names.
        ``marketId``, ``side``, ``outcomeSide``, ``price``, ``shares``, ``amount``, ``txHash`` and
        ``createdAt`` shape the fill (position, volume, ordering). Every override is then written to the row
        as given, with numbers turned into decimal strings where the wire has strings. An unknown wallet is
        added as a small trader.

        :raises SimulatorError: for an unknown field, an unknown market or a categorical parent.
        """
        unknown = sorted(set(overrides) - TRADE_FIELDS)
        if unknown:
            raise SimulatorError(f"unknown trade fields {unknown}; valid fields are {sorted(TRADE_FIELDS)}")
        wallet = self.add_wallet(wallet)
        market = self._trade_market(overrides.get("marketId"))
        outcome_side = int(overrides.get("outcomeSide", 1))
        price = Decimal(str(overrides.get("price", market.price_of(outcome_side))))
        if "shares" in overrides:
            shares = Decimal(str(overrides["shares"]))
        else:
            shares = (Decimal(str(overrides.get("amount", _DEFAULT_TRADE_USDT))) / price).quantize(_CENT)
        [row] = self._world.record_trade(
            wallet,
            market,
            side=str(overrides.get("side", "Buy")),
            outcome_side=outcome_side,
            fills=[(price, shares)],
            tx_hash=str(overrides.get("txHash") or new_tx_hash(self._helper_rng)),
            created_at=int(overrides.get("createdAt", self.now_s)),
        )
        row.update({key: _wire_value(key, value) for key, value in overrides.items()})
        return dict(row)

    def add_market(
        self,
        title: str | None = None,
        *,
        options: Sequence[str] = (),
        yes_price: Decimal | str | float = "0.5",
        cutoff_at: int = 0,
    ) -> dict[str, Any]:
        """Create an active market at world time and return it as a list item.

        With ``options`` it is categorical with one option per entry, each priced ``1 / len(options)``.
        """
        now_s = self.now_s
        prices = [Decimal(1) / len(options)] * len(options) if options else [Decimal(str(yes_price))]
        root = self._world.create_market(
            self._helper_rng,
            title or f"Simulated market created at {now_s}",
            options=options,
            created_at=now_s,
            cutoff_at=cutoff_at,
            yes_prices=prices,
        )
        return self._render_root(root)

    def resolve_market(self, market_id: int, winning_side: int | str) -> dict[str, Any]:
        """Resolve a market now and return its top-level market as a list item.

        :param winning_side: for a binary market or one option, ``1``/``"yes"`` or ``2``/``"no"``; for a
            categorical parent, the winning option's market id or title.
        :raises SimulatorError: for an unknown or already resolved market, or an unknown winner.
        """
        market = self._world.markets.get(market_id)
        if market is None:
            raise SimulatorError(f"no market {market_id}; known ids are {sorted(self._world.markets)}")
        if market.kind == "categorical":
            winner = self._option_id(market, winning_side)
            self._world.resolve_categorical(market, winner_id=winner, at_s=self.now_s)
        else:
            if market.status == 4:
                raise SimulatorError(f"market {market_id} is already resolved")
            self._world.resolve_binary(market, yes_wins=_yes_wins(winning_side), at_s=self.now_s)
        return self._render_root(self._world.root_of(market))

    # Internals

    def _populate(self, start_s: float) -> None:
        """Create the wallets and markets that exist before the history begins, and schedule resolutions."""
        rng = self._rng
        for index in range(_WHALES):
            self._world.add_wallet(new_address(rng), whale=True, name=_catalog.WHALE_NAMES[index])
        for _ in range(_SMALL_TRADERS):
            self._world.add_wallet(new_address(rng), whale=False)
        history_start = self._world.now_s
        roots: list[SimMarket] = []
        for index in range(_INITIAL_BINARIES + _INITIAL_CATEGORICALS):
            created_at = history_start - rng.randrange(1, 45) * DAY_S - rng.randrange(DAY_S)
            cutoff_at = 0 if index == 2 else int(start_s) + rng.randrange(5, 90) * DAY_S
            create = self._evolver.create_binary if index < _INITIAL_BINARIES else self._evolver.create_categorical
            roots.append(create(created_at=created_at, cutoff_at=cutoff_at))
        # Two binaries (one Yes, one No) and one categorical market resolve during the history week.
        categorical = roots[_INITIAL_BINARIES + _INITIAL_CATEGORICALS - 1]
        resolutions = [(roots[4], 1), (roots[5], 2), (categorical, rng.choice(categorical.children))]
        for market, winner in resolutions:
            at_s = start_s - rng.randrange(1, 5) * DAY_S - rng.randrange(DAY_S)
            self._evolver.schedule_resolution(at_s, market.market_id, winner)

    def _render_root(self, root: SimMarket) -> dict[str, Any]:
        return market_json(root, self._world.markets, self.now_s)

    def _token(self, token_id: str) -> tuple[SimMarket, int] | None:
        found = self._world.tokens.get(token_id)
        if found is None:
            return None
        market_id, outcome_side = found
        return self._world.markets[market_id], outcome_side

    def _trade_market(self, market_id: Any) -> SimMarket:
        if market_id is None:
            active = sorted(self._world.active_tradables(), key=lambda m: m.market_id)
            if not active:
                raise SimulatorError("no active market to trade in; create one with add_market()")
            return active[0]
        market = self._world.markets.get(int(market_id))
        if market is None or not market.tradable:
            raise SimulatorError(f"market {market_id!r} is not a binary market or a categorical option")
        return market

    def _option_id(self, root: SimMarket, winning_side: int | str) -> int:
        for child_id in root.children:
            if winning_side in (child_id, self._world.markets[child_id].title):
                return child_id
        titles = [self._world.markets[child].title for child in root.children]
        raise SimulatorError(
            f"{winning_side!r} is not an option of market {root.market_id}; use one of {root.children} or {titles}"
        )


def _market_type(root: SimMarket) -> int:
    return 1 if root.kind == "categorical" else 0


def _yes_wins(winning_side: int | str) -> bool:
    word = str(winning_side).strip().lower()
    if word in ("1", "yes"):
        return True
    if word in ("2", "no"):
        return False
    raise SimulatorError(f"winning side must be 1/'yes' or 2/'no', got {winning_side!r}")


def _wire_value(key: str, value: Any) -> Any:
    if key in _DECIMAL_FIELDS and isinstance(value, Decimal | int | float):
        return str(value)
    return value


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)
