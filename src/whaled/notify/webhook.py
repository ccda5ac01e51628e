"""Webhook deliveries: a JSON POST signed with HMAC-SHA256 over the exact body bytes.

Headers: ``X-Whaled-Signature: sha256=<hex>`` (when a secret is set), ``X-Whaled-Delivery`` (the outbox row
id) and ``Idempotency-Key`` (stable per alert and URL). Because a receiver can drop repeats by that key, a
webhook whose outcome is unclear (a timeout) is retried, unlike an email.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp
from pydantic import SecretStr

from whaled.notify.errors import PermanentDeliveryError, TransientDeliveryError
from whaled.notify.outbox import AlertView

__all__ = ["SIGNATURE_HEADER", "WebhookTransport", "sign_body", "webhook_payload"]

SIGNATURE_HEADER = "X-Whaled-Signature"
# Statuses worth another attempt: the receiver is overloaded, restarting or timed out.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def webhook_payload(alert: AlertView) -> dict[str, Any]:
    return {
        "type": "alert",
        "alert": {
            "alert_id": alert.id,
            "rule": alert.rule,
            "kind": alert.kind,
            "title": alert.title,
            "dedupe_key": alert.dedupe_key,
            "created_ms": alert.created_ms,
            **alert.payload,
        },
    }


def sign_body(secret: str, body: bytes) -> str:
    """Return the signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTransport:
    """Posts alert payloads; owns one aiohttp session, closed by :meth:`close`."""

    def __init__(self, secret: SecretStr | None, *, timeout_s: float = 10.0) -> None:
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers={"User-Agent": "whaled"})
        return self._session

    async def post(self, url: str, payload: dict[str, Any], *, delivery_id: int, idempotency_key: str) -> None:
        """POST ``payload`` to ``url``.

        :raises TransientDeliveryError: connection failure, timeout, or a status in ``_RETRY_STATUSES``.
        :raises PermanentDeliveryError: any other non-2xx status, or a payload that cannot be encoded as
            UTF-8 JSON (such as a string with a lone surrogate), which no retry can fix.
        """
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise PermanentDeliveryError(url, f"payload could not be encoded: {type(exc).__name__}: {exc}") from None
        headers = {
            "Content-Type": "application/json",
            "X-Whaled-Delivery": str(delivery_id),
            "Idempotency-Key": idempotency_key,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self._secret.get_secret_value(), body)
        try:
            async with self._get_session().post(url, data=body, headers=headers) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientDeliveryError(url, f"POST failed: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return
        if status in _RETRY_STATUSES:
            raise TransientDeliveryError(url, f"POST returned HTTP {status}")
        raise PermanentDeliveryError(url, f"POST returned HTTP {status}; check the URL and the receiver")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
