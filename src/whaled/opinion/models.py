"""Typed Opinion payloads: exact ``Decimal`` numbers, token ids as strings, times in Unix milliseconds.

Field names follow the API (camelCase on the wire, snake_case here). Unknown fields are ignored so that the
additions Opinion makes without notice do not break parsing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "ChildMarket",
    "LatestPrice",
    "LeaderboardEntry",
    "Market",
    "Page",
    "Position",
    "Trade",
    "TradeSide",
    "canonical",
    "normalise_side",
    "to_ms",
]

T = TypeVar("T")

# The API mixes seconds and milliseconds; any value above this is taken as milliseconds (year 33658 in s).
_MS_THRESHOLD = 1_000_000_000_000

TradeSide = Literal["buy", "sell", "split", "merge"]


def to_ms(value: Any) -> int | None:
    """Normalise a Unix time in seconds, milliseconds, microseconds or nanoseconds to milliseconds.

    ``0`` and empty mean none. The unit is read from the magnitude, which is unambiguous for any time
    between 1973 and 33658.
    """
    if value is None or value == "":
        return None
    number = int(value)
    if number <= 0:
        return None
    if number >= _MS_THRESHOLD * 1_000_000:
        return number // 1_000_000
    if number >= _MS_THRESHOLD * 1000:
        return number // 1000
    return number if number >= _MS_THRESHOLD else number * 1000


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    return number


def _optional_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return _decimal(value)


def _token_id(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if text and not text.isdigit():
        raise ValueError(f"token id must be a decimal integer string, got {value!r}")
    return text or None


def normalise_side(value: Any) -> TradeSide:
    """Map the API's many spellings (``BUY``, ``Buy``, ``buy-limit``, ``Merge``) to one lower-case word."""
    text = str(value).strip().lower()
    for side in ("buy", "sell", "split", "merge"):
        if text.startswith(side):
            return side
    raise ValueError(f"unknown trade side {value!r}; expected Buy, Sell, Split or Merge")


# pydantic-core parses decimal strings natively (and rejects NaN and infinity); that is several times faster
# than a Python validator on the ingest path.
Dec = Decimal
OptDec = Annotated[Decimal | None, BeforeValidator(_optional_decimal)]
TimeMs = Annotated[int | None, BeforeValidator(to_ms)]
TokenId = Annotated[str | None, BeforeValidator(_token_id)]
Side = Annotated[TradeSide, BeforeValidator(normalise_side)]


class _Payload(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ChildMarket(_Payload):
    market_id: int
    market_title: str = ""
    status: int
    status_enum: str = ""
    yes_label: str = ""
    no_label: str = ""
    rules: str = ""
    yes_token_id: TokenId = None
    no_token_id: TokenId = None
    condition_id: str = ""
    question_id: str = ""
    result_token_id: TokenId = None
    volume: Dec = Decimal(0)
    quote_token: str = ""
    chain_id: str = ""
    slug: str | None = None
    created_at: TimeMs = None
    cutoff_at: TimeMs = None
    resolved_at: TimeMs = None

    @property
    def winning_outcome(self) -> str | None:
        """The label of the outcome whose token id equals ``resultTokenId``, once resolved."""
        if self.result_token_id is None:
            return None
        if self.result_token_id == self.yes_token_id:
            return self.yes_label or "Yes"
        if self.result_token_id == self.no_token_id:
            return self.no_label or "No"
        return None


class Market(ChildMarket):
    """A top-level market: binary (``marketType`` 0) or a categorical parent (1) with ``childMarkets``."""

    market_type: int = 0
    child_markets: list[ChildMarket] | None = None
    volume_24h: OptDec = Field(None, alias="volume24h")
    volume_7d: OptDec = Field(None, alias="volume7d")
    labels: list[str] | None = None


class Trade(_Payload):
    """One filled trade of a wallet, from ``GET /trade/user/{wallet}``."""

    tx_hash: str
    market_id: int
    root_market_id: int | None = None
    market_title: str = ""
    root_market_title: str = ""
    side: Side
    outcome: str = ""
    outcome_side: int
    outcome_side_enum: str = ""
    price: Dec
    shares: Dec
    amount: Dec
    fee: Dec = Decimal(0)
    profit: Dec = Decimal(0)
    quote_token: str = ""
    quote_token_usd_price: Dec = Decimal(1)
    usd_amount: OptDec = None
    status: int = 2
    chain_id: str = ""
    created_at: Annotated[int, BeforeValidator(to_ms)]

    @property
    def notional_usd(self) -> Decimal:
        """The USD value: amount × quote-token USD price. ``usdAmount``'s scale is disputed, so unused."""
        return self.amount * self.quote_token_usd_price

    @property
    def key(self) -> tuple[str, int, int, str, str, str]:
        """What makes a fill unique for one wallet: the tx hash plus the fill's own fields."""
        return (
            self.tx_hash.lower(),
            self.market_id,
            self.outcome_side,
            self.side,
            canonical(self.price),
            canonical(self.shares),
        )


class Position(_Payload):
    market_id: int
    market_title: str = ""
    root_market_id: int | None = None
    root_market_title: str = ""
    market_status: int = 0
    market_status_enum: str = ""
    market_cutoff_at: TimeMs = None
    outcome: str = ""
    outcome_side: int
    shares_owned: Dec = Decimal(0)
    shares_frozen: Dec = Decimal(0)
    avg_entry_price: Dec = Decimal(0)
    current_value_in_quote_token: Dec = Decimal(0)
    unrealized_pnl: Dec = Decimal(0)
    condition_id: str = ""
    token_id: TokenId = None
    claim_status: int = 0


class LatestPrice(_Payload):
    token_id: str
    price: Dec
    side: str = ""
    size: OptDec = None
    timestamp: TimeMs = None


class LeaderboardEntry(_Payload):
    wallet_address: str
    user_name: str = ""
    ranking_value: OptDec = None


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint: ``result = {"total": n, "list": [...]}``."""

    model_config = ConfigDict(frozen=True)

    total: int | None = None
    items: list[T]
    # Rows that did not validate, each described as "row N: problem", while the rest of the page did.
    rejected: tuple[str, ...] = ()

    @property
    def row_count(self) -> int:
        """Rows the server sent, rejected ones included: what pagination must count."""
        return len(self.items) + len(self.rejected)


def canonical(number: Decimal) -> str:
    """Render a decimal without exponent or trailing zeros, so equal values give equal text."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
