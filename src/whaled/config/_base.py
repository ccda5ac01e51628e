"""Shared building blocks of the configuration sections: validators, the section base and field problems."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "CONFIG_ENV_VAR",
    "EXIT_CONFIG",
    "Secret",
    "WalletAddress",
    "is_loopback_host",
]


CONFIG_ENV_VAR = "WHALED_CONFIG"
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; the systemd unit does not restart on it.

# Secrets that may be given as files named after them in $CREDENTIALS_DIRECTORY.
_CREDENTIAL_FILES = {
    "opinion_api_key": ("opinion", "api_key"),
    "smtp_password": ("smtp", "password"),
    "web_access_token": ("web", "access_token"),
    "webhook_secret": ("alerts", "webhook_secret"),
}
# A key whose name contains one of these (case-insensitive) never has its value shown in an error.
_SECRET_NAME_PARTS = ("key", "secret", "token", "password")
_DAY_S = 86_400


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _empty_secret_is_unset(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


Secret = Annotated[SecretStr | None, BeforeValidator(_empty_secret_is_unset)]


def _lower_address(value: str) -> str:
    value = value.strip()
    if len(value) != 42 or not value.startswith("0x") or not _is_hex(value[2:]):
        raise ValueError("must be a 0x-prefixed 40-digit hex wallet address")
    return value.lower()


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)


WalletAddress = Annotated[str, AfterValidator(_lower_address)]


class _Section(BaseModel):
    # allow_inf_nan=False rejects inf and nan (TOML literals, or strings such as "inf") in every float and Decimal.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_FIELD_PROBLEMS = "whaled_field_problems"
_NO_VALUE = object()


@dataclass(frozen=True, slots=True)
class _FieldProblem:
    """A problem found by a cross-field validator; ``key`` is dotted and relative to the validated model."""

    key: str
    message: str
    value: object = _NO_VALUE


def _raise_problems(problems: Sequence[_FieldProblem]) -> None:
    """Raise the problems as one pydantic error that :func:`_describe_errors` expands to one line per key."""
    if problems:
        summary = "; ".join(f"{problem.key}: {problem.message}" for problem in problems)
        raise PydanticCustomError(_FIELD_PROBLEMS, "{summary}", {"summary": summary, "problems": tuple(problems)})
