"""The Opinion.Trade OpenAPI: client, payload models, pagination and errors."""

from whaled.opinion.api import OpinionApi
from whaled.opinion.client import OpinionClient
from whaled.opinion.errors import (
    OpinionAPIError,
    OpinionConnectionError,
    OpinionError,
    OpinionHTTPError,
    OpinionPaginationError,
    OpinionPayloadError,
    OpinionTimeoutError,
)
from whaled.opinion.models import (
    ChildMarket,
    LatestPrice,
    LeaderboardEntry,
    Market,
    Page,
    Position,
    Trade,
    canonical,
    to_ms,
)
from whaled.opinion.pagination import paginate

__all__ = [
    "ChildMarket",
    "LatestPrice",
    "LeaderboardEntry",
    "Market",
    "OpinionAPIError",
    "OpinionApi",
    "OpinionClient",
    "OpinionConnectionError",
    "OpinionError",
    "OpinionHTTPError",
    "OpinionPaginationError",
    "OpinionPayloadError",
    "OpinionTimeoutError",
    "Page",
    "Position",
    "Trade",
    "canonical",
    "paginate",
    "to_ms",
]
