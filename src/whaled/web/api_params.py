"""Query parameter parsing for the JSON API: every invalid value raises an error that names its parameter."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping

from whaled.web.auth import TOKEN_PARAMETER
from whaled.web.errors import ApiParameterError

__all__ = [
    "MARKET_STATUSES",
    "Query",
    "decode_cursor",
    "encode_cursor",
    "parse_wallet",
]

MARKET_STATUSES = {"created": 1, "activated": 2, "resolving": 3, "resolved": 4, "failed": 5, "deleted": 6}
_WALLET = re.compile(r"0x[0-9a-fA-F]{40}")
_MAX_TEXT_CHARS = 200
_MAX_MS = 10**15


def parse_wallet(value: str, parameter: str) -> str:
    if not _WALLET.fullmatch(value):
        raise ApiParameterError(parameter, f"{parameter} must be a 0x address of 40 hex digits (got {value[:60]!r})")
    return value.lower()


def encode_cursor(*values: int) -> str:
    """Encode the sort key of the last row of a page as an opaque URL-safe string."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(value: str, size: int) -> tuple[int, ...]:
    """Decode a cursor made by :func:`encode_cursor` holding ``size`` integers."""
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        decoded = None
    valid = (
        isinstance(decoded, list)
        and len(decoded) == size
        and all(isinstance(item, int) and not isinstance(item, bool) for item in decoded)
    )
    if not valid:
        raise ApiParameterError("cursor", "cursor is invalid; pass the next_cursor of the previous page unchanged")
    return tuple(decoded)


class Query:
    """The query parameters of one request, checked against the names an endpoint accepts."""

    def __init__(self, params: Mapping[str, str], allowed: Collection[str]) -> None:
        self._params = params
        for name in params:
            if name not in allowed and name != TOKEN_PARAMETER:
                known = ", ".join(sorted(allowed)) or "none"
                raise ApiParameterError(name, f"unknown parameter {name[:60]!r}; this endpoint accepts: {known}")

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
        try:
            number = int(value)
        except ValueError:
            raise ApiParameterError(name, f"{name} must be an integer (got {value[:40]!r})") from None
        if not minimum <= number <= maximum:
            raise ApiParameterError(name, f"{name} must be between {minimum} and {maximum} (got {number})")
        return number

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", default, minimum=1, maximum=maximum)
        assert value is not None
        return value

    def time_ms(self, name: str) -> int | None:
        return self.integer(name, None, minimum=0, maximum=_MAX_MS)

    def choice(self, name: str, choices: Collection[str], default: str) -> str:
        value = self._params.get(name) or default
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
        if value.isdigit() and int(value) in MARKET_STATUSES.values():
            return int(value)
        status = MARKET_STATUSES.get(value.lower())
        if status is None:
            choices = ", ".join(MARKET_STATUSES)
            raise ApiParameterError(name, f"{name} must be one of {choices} or 1-6 (got {value[:40]!r})")
        return status

    def cursor(self, size: int) -> tuple[int, ...] | None:
        value = self._params.get("cursor")
        return None if value is None or value == "" else decode_cursor(value, size)
