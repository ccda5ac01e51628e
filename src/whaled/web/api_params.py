"""Query parameter parsing for the JSON API: every invalid value raises an error that names its parameter."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection
from typing import Any

from multidict import MultiMapping

from whaled.web.auth import TOKEN_PARAMETER
from whaled.web.errors import ApiParameterError

__all__ = [
    "EVENT_TOPICS",
    "MARKET_STATUSES",
    "MAX_ID",
    "Query",
    "decode_cursor",
    "encode_cursor",
    "parse_integer",
    "parse_wallet",
]

# The values of the events table's topic column; docs/events.md lists the event types of each.
EVENT_TOPICS = ("trade", "market", "wallet", "alert", "system", "job")
MARKET_STATUSES = {"created": 1, "activated": 2, "resolving": 3, "resolved": 4, "failed": 5, "deleted": 6}
# The largest SQLite integer; a larger value cannot be bound as a query parameter.
MAX_ID = 2**63 - 1
_WALLET = re.compile(r"0x[0-9a-fA-F]{40}")
# ASCII digits only: int() also accepts other Unicode digits, underscores and surrounding spaces.
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_MAX_TEXT_CHARS = 200
_MAX_CURSOR_CHARS = 200
_MAX_MS = 10**15


def parse_wallet(value: str, parameter: str) -> str:
    if not _WALLET.fullmatch(value):
        raise ApiParameterError(parameter, f"{parameter} must be a 0x address of 40 hex digits (got {value[:60]!r})")
    return value.lower()


def parse_integer(value: str, name: str, *, minimum: int, maximum: int) -> int:
    """Parse a decimal integer of ASCII digits in ``minimum..maximum``, or raise an error naming ``name``."""
    if _INTEGER.fullmatch(value) is None:
        raise ApiParameterError(name, f"{name} must be an integer of digits 0-9 (got {value[:40]!r})")
    number = int(value)
    if not minimum <= number <= maximum:
        raise ApiParameterError(name, f"{name} must be between {minimum} and {maximum} (got {value[:40]})")
    return number


def encode_cursor(*values: int) -> str:
    """Encode the sort key of the last row of a page as an opaque URL-safe string."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(value: str, size: int) -> tuple[int, ...]:
    """Decode a cursor made by :func:`encode_cursor` holding ``size`` integers in ``0..MAX_ID``."""
    decoded: Any = None
    if len(value) <= _MAX_CURSOR_CHARS:
        try:
            padded = value + "=" * (-len(value) % 4)
            decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        except (ValueError, binascii.Error, RecursionError):
            decoded = None
    valid = (
        isinstance(decoded, list)
        and len(decoded) == size
        and all(isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= MAX_ID for item in decoded)
    )
    if not valid:
        raise ApiParameterError("cursor", "cursor is invalid; pass the next_cursor of the previous page unchanged")
    return tuple(decoded)


class Query:
    """The query parameters of one request, checked against the names an endpoint accepts.

    A parameter given twice is an error, so that the value used never depends on which one wins.
    """

    def __init__(self, params: MultiMapping[str], allowed: Collection[str]) -> None:
        self._params = params
        for name in params:
            if name not in allowed and name != TOKEN_PARAMETER:
                known = ", ".join(sorted(allowed)) or "none"
                raise ApiParameterError(name, f"unknown parameter {name[:60]!r}; this endpoint accepts: {known}")
            if len(params.getall(name)) > 1:
                raise ApiParameterError(name, f"parameter {name[:60]!r} is given more than once; give it once")

    def text(self, name: str, *, max_chars: int = _MAX_TEXT_CHARS) -> str | None:
        value = self._params.get(name)
        if value is None or value == "":
            return None
        if len(value) > max_chars:
            raise ApiParameterError(name, f"{name} must be at most {max_chars} characters (got {len(value)})")
        return value

    def integer(self, name: str, default: int | None, *, minimum: int, maximum: int) -> int | None:
        value = self._params.get(name)
        if value is None or value == "":
            return default
        return parse_integer(value, name, minimum=minimum, maximum=maximum)

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", default, minimum=1, maximum=maximum)
        assert value is not None
        return value

    def time_ms(self, name: str) -> int | None:
        return self.integer(name, None, minimum=0, maximum=_MAX_MS)

    def choice(self, name: str, choices: Collection[str], default: str) -> str:
        return self.optional_choice(name, choices) or default

    def optional_choice(self, name: str, choices: Collection[str]) -> str | None:
        value = self._params.get(name)
        if value is None or value == "":
            return None
        if value not in choices:
            raise ApiParameterError(name, f"{name} must be one of {', '.join(choices)} (got {value[:40]!r})")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._params.get(name)
        if value is None or value == "":
            return None
        lowered = value.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ApiParameterError(name, f"{name} must be true or false (got {value[:40]!r})")

    def wallet(self, name: str) -> str | None:
        value = self._params.get(name)
        return None if value is None or value == "" else parse_wallet(value, name)

    def market_status(self, name: str) -> int | None:
        value = self._params.get(name)
        if value is None or value == "":
            return None
        if value in {str(number) for number in MARKET_STATUSES.values()}:
            return int(value)
        status = MARKET_STATUSES.get(value.lower())
        if status is None:
            choices = ", ".join(MARKET_STATUSES)
            raise ApiParameterError(name, f"{name} must be one of {choices} or 1-6 (got {value[:40]!r})")
        return status

    def cursor(self, size: int) -> tuple[int, ...] | None:
        value = self._params.get("cursor")
        return None if value is None or value == "" else decode_cursor(value, size)
