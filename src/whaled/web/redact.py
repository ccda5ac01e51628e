"""Keep secrets out of the monitoring pages: every body the dashboard, health and metrics parts send passes
through :class:`Redactor` on its way out.

The parts that produce the text (the Opinion client, the senders) already keep secrets out of their errors.
This is the second line: configured secret values are masked wherever they appear, and webhook URLs, which
often carry a token in their path, are cut down to their scheme and host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import SecretStr

from whaled.config import Settings

__all__ = ["MASK", "Redactor", "webhook_origin"]

MASK = "***"
# A secret of this length or more is masked anywhere, even inside a longer word. A shorter one is masked
# only as a separate word, with no letter, digit or underscore next to it, so that a secret such as "ab"
# does not turn every "about" into "***out" and make the pages unreadable.
_MASK_INSIDE_WORDS_CHARS = 8
# A double-quoted label value of the Prometheus text format, with its backslash escapes.
_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def webhook_origin(url: str) -> str:
    """Return ``scheme://host/…`` for a webhook URL, without the path and query that may hold a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _secrets(settings: Settings) -> list[str]:
    values: list[SecretStr | None] = [
        settings.opinion.api_key,
        settings.smtp.password,
        settings.web.access_token,
        settings.alerts.webhook_secret,
    ]
    return [secret.get_secret_value() for secret in values if secret is not None]


def _with_escaped_forms(replacements: Mapping[str, str]) -> dict[str, str]:
    # Inside JSON or Prometheus label text a value may appear in its escaped form, so both are searched for.
    result = dict(replacements)
    for needle, replacement in replacements.items():
        escaped = json.dumps(needle, ensure_ascii=False)[1:-1]
        if escaped != needle:
            result[escaped] = json.dumps(replacement, ensure_ascii=False)[1:-1]
    return result


def _pattern(anywhere: Mapping[str, str], alone: Mapping[str, str]) -> re.Pattern[str] | None:
    choices = [(needle, re.escape(needle)) for needle in anywhere]
    choices += [(needle, rf"(?<!\w){re.escape(needle)}(?!\w)") for needle in alone]
    if not choices:
        return None
    # Longest first, so that a URL is replaced whole before a secret inside it.
    choices.sort(key=lambda choice: len(choice[0]), reverse=True)
    return re.compile("|".join(regex for _, regex in choices))


class Redactor:
    """Masks the configured secrets and replaces webhook URLs in text, JSON bodies and metrics."""

    def __init__(self, settings: Settings) -> None:
        anywhere = {url: webhook_origin(url) for url in settings.alerts.webhook_urls}
        alone: dict[str, str] = {}
        for secret in _secrets(settings):
            target = anywhere if len(secret) >= _MASK_INSIDE_WORDS_CHARS else alone
            target[secret] = MASK
        anywhere, alone = _with_escaped_forms(anywhere), _with_escaped_forms(alone)
        self._replacements = {**alone, **anywhere}
        self._every = _pattern(anywhere, alone)
        self._anywhere = _pattern(anywhere, {})
        self._has_short_secrets = bool(alone)

    def _replace(self, match: re.Match[str]) -> str:
        return self._replacements[match.group(0)]

    def text(self, value: str) -> str:
        """Mask every configured secret and webhook URL in ``value``."""
        return value if self._every is None else self._every.sub(self._replace, value)

    def exposition(self, text: str) -> str:
        """Mask a Prometheus text exposition.

        Short secrets are searched for only inside label values: metric names and sample values come from
        code, and masking a short secret such as "3" there would break the format.
        """
        if self._anywhere is not None:
            text = self._anywhere.sub(self._replace, text)
        if self._has_short_secrets:
            text = _QUOTED.sub(lambda quoted: self.text(quoted.group(0)), text)
        return text

    def masked(self, value: Any) -> Any:
        """Return a copy of a JSON-ready ``value`` with every string, keys included, masked by :meth:`text`."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.masked(key): self.masked(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.masked(item) for item in value]
        return value

    def json_response(self, body: Any, *, status: int = 200) -> web.Response:
        """Build a JSON response that is never cached and contains no configured secret."""
        text = json.dumps(self.masked(body), ensure_ascii=False, separators=(",", ":"))
        return web.Response(
            text=text,
            status=status,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
