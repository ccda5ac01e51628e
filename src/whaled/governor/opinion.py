"""The governed view of the Opinion client: the only way jobs and workflows reach Opinion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from whaled.governor.governor import Governor
from whaled.governor.priority import Priority
from whaled.governor.queue import GovernorDeadlineError
from whaled.opinion.client import OpinionClient
from whaled.opinion.errors import OpinionError
from whaled.opinion.models import LatestPrice, LeaderboardEntry, Market, Page, Position, Trade

__all__ = ["REQUEST_ERRORS", "GovernedOpinion"]

T = TypeVar("T")

# The errors a governed call raises when that one request failed, after its retries or unsent past its
# deadline. Callers that carry on with other work catch these, while a closed governor or a bug propagates.
REQUEST_ERRORS = (OpinionError, GovernorDeadlineError)


class GovernedOpinion:
    """Every call goes through the governor at the priority of its kind, unless a view overrides it.

    ``with_priority(Priority.interactive)`` returns a view for an operator's command or an alert's enrichment.
    ``calls`` counts the requests made through this view, retries excluded.
    """

    def __init__(self, client: OpinionClient, governor: Governor, *, priority: Priority | None = None) -> None:
        self._client = client
        self._governor = governor
        self._priority = priority
        self.page_limit = client.page_limit
        self.calls = 0

    @property
    def governor(self) -> Governor:
        return self._governor

    def with_priority(self, priority: Priority) -> GovernedOpinion:
        return GovernedOpinion(self._client, self._governor, priority=priority)

    def view(self) -> GovernedOpinion:
        """Return a view with its own call counter and the same priority."""
        return GovernedOpinion(self._client, self._governor, priority=self._priority)

    async def _call(self, request: Callable[[], Awaitable[T]], default: Priority, name: str) -> T:
        self.calls += 1
        priority = self._priority if self._priority is not None else default
        return await self._governor.call(request, priority=priority, name=name)

    async def list_markets(self, page: int, *, status: str = "activated", sort_by: int | None = None) -> Page[Market]:
        return await self._call(
            lambda: self._client.list_markets(page, status=status, sort_by=sort_by),
            Priority.markets,
            "/market",
        )

    async def get_market(self, market_id: int) -> Market:
        return await self._call(lambda: self._client.get_market(market_id), Priority.markets, "/market/{id}")

    async def get_categorical_market(self, market_id: int) -> Market:
        return await self._call(
            lambda: self._client.get_categorical_market(market_id),
            Priority.markets,
            "/market/categorical/{id}",
        )

    async def latest_price(self, token_id: str) -> LatestPrice:
        return await self._call(lambda: self._client.latest_price(token_id), Priority.markets, "/token/latest-price")

    async def user_trades(self, wallet: str, page: int) -> Page[Trade]:
        return await self._call(lambda: self._client.user_trades(wallet, page), Priority.trades, "/trade/user/{wallet}")

    async def user_positions(self, wallet: str, page: int) -> Page[Position]:
        return await self._call(
            lambda: self._client.user_positions(wallet, page), Priority.stats, "/positions/user/{wallet}"
        )

    async def leaderboard(self, data_type: str, period_days: int, *, limit: int = 100) -> list[LeaderboardEntry]:
        return await self._call(
            lambda: self._client.leaderboard(data_type, period_days, limit=limit),
            Priority.backfill,
            "/v2/leaderboard",
        )
