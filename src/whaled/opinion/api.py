"""The narrow interface through which jobs and workflows read Opinion.

:class:`whaled.governor.GovernedOpinion` implements it: every call is paced, prioritised and retried.
Tests and the simulator-backed demo use that same implementation.
"""

from __future__ import annotations

from typing import Protocol

from whaled.opinion.models import LatestPrice, LeaderboardEntry, Market, Page, Position, Trade

__all__ = ["OpinionApi"]


class OpinionApi(Protocol):
    page_limit: int

    async def list_markets(
        self, page: int, *, status: str = "activated", sort_by: int | None = None
    ) -> Page[Market]: ...

    async def get_market(self, market_id: int) -> Market: ...

    async def get_categorical_market(self, market_id: int) -> Market: ...

    async def latest_price(self, token_id: str) -> LatestPrice: ...

    async def user_trades(self, wallet: str, page: int) -> Page[Trade]: ...

    async def user_positions(self, wallet: str, page: int) -> Page[Position]: ...

    async def leaderboard(self, data_type: str, period_days: int, *, limit: int = 100) -> list[LeaderboardEntry]: ...

    @property
    def calls(self) -> int:
        """Requests made through this view so far; jobs record it per run."""
        ...
