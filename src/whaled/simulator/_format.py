"""Constants, identifiers and number formats of the simulated Opinion API."""

from __future__ import annotations

import random
from decimal import Context, Decimal

from whaled.errors import WhaledError

__all__ = [
    "CHAIN_ID",
    "CLAIM_STATUS_NAMES",
    "MARKET_STATUS_NAMES",
    "OUTCOME_SIDE_NAMES",
    "USDT",
    "SimulatorError",
    "dec18",
    "hex_string",
    "new_address",
    "new_token_id",
    "new_tx_hash",
    "plain",
]

# BSC USDT, the collateral of every simulated market.
USDT = "0x55d398326f99059fF775485246999027B3197955"
CHAIN_ID = "56"

MARKET_STATUS_NAMES = {1: "Created", 2: "Activated", 3: "Resolving", 4: "Resolved", 5: "Failed", 6: "Deleted"}
OUTCOME_SIDE_NAMES = {1: "Yes", 2: "No"}
CLAIM_STATUS_NAMES = {0: "CanNotClaim", 1: "WaitClaim", 2: "Claiming", 3: "ClaimFailed", 4: "Claimed"}

_EIGHTEEN_PLACES = Decimal("1e-18")
# Wide enough for wei-scaled amounts (up to about 1e30) with 18 fractional digits.
_WIDE = Context(prec=80)


class SimulatorError(WhaledError, ValueError):
    """A simulator helper was called with a value that does not fit the simulated world."""


def dec18(value: Decimal) -> str:
    """Render a decimal with 18 fractional digits, as the API pads quote-token amounts."""
    return f"{value.quantize(_EIGHTEEN_PLACES, context=_WIDE):f}"


def plain(value: Decimal) -> str:
    """Render a decimal without exponent or trailing zeros (``"0.45"``, ``"1200"``)."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def hex_string(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def new_address(rng: random.Random) -> str:
    """Return a lower-case ``0x`` wallet address."""
    return "0x" + hex_string(rng, 40)


def new_tx_hash(rng: random.Random) -> str:
    return "0x" + hex_string(rng, 64)


def new_token_id(rng: random.Random) -> str:
    """Return an ERC-1155 position id as a decimal uint256 string of 76 to 78 digits."""
    return str(rng.getrandbits(256) | (1 << 250))
