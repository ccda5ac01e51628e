"""The root of every exception whaled raises on purpose."""

from __future__ import annotations

__all__ = ["ConfigError", "WhaledError"]


class WhaledError(Exception):
    """Base class of whaled's own errors: ``except WhaledError`` catches all of them."""


class ConfigError(WhaledError, ValueError):
    """The configuration is invalid. ``problems`` contains one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {line}" for line in problems))
