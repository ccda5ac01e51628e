"""Keep secrets out of the monitoring pages: every JSON body the dashboard, health and metrics parts send
passes through :class:`Redactor` on its way out.

The parts that produce the text (the Opinion client, the senders) already keep secrets out of their errors.
This is the second line: configured secret values are replaced wherever they appear, and webhook URLs, which
often carry a token in their path, are cut down to their scheme and host.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import SecretStr

from whaled.config import Settings

__all__ = ["MASK", "Redactor", "webhook_origin"]

MASK = "***"
# Shorter secrets are not searched for: replacing a two-letter value would mangle every word that holds it.
_MIN_SECRET_CHARS = 4


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


class Redactor:
    """Replaces the configured secrets and webhook URLs in text and in JSON bodies."""

    def __init__(self, settings: Settings) -> None:
        replacements: dict[str, str] = {}
        for url in settings.alerts.webhook_urls:
            replacements[url] = webhook_origin(url)
        for secret in _secrets(settings):
            if len(secret) >= _MIN_SECRET_CHARS:
                replacements[secret] = MASK
        # Inside a JSON string a value may appear in its escaped form, so both forms are searched for.
        for needle, replacement in list(replacements.items()):
            escaped = json.dumps(needle, ensure_ascii=False)[1:-1]
            if escaped != needle:
                replacements[escaped] = json.dumps(replacement, ensure_ascii=False)[1:-1]
        # Longest first, so that a URL is replaced whole before a secret inside it.
        self._replacements = sorted(replacements.items(), key=lambda item: len(item[0]), reverse=True)

    def text(self, value: str) -> str:
        for needle, replacement in self._replacements:
            if needle in value:
                value = value.replace(needle, replacement)
        return value

    def json_response(self, body: Any, *, status: int = 200) -> web.Response:
        """Build a JSON response that is never cached and holds no configured secret."""
        text = self.text(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        return web.Response(
            text=text,
            status=status,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
