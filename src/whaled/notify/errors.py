"""Delivery errors, by what the outbox does next: retry, give up, or record that the outcome is unknown."""

from __future__ import annotations

from whaled.errors import WhaledError

__all__ = ["DeliveryError", "PermanentDeliveryError", "TransientDeliveryError", "UnknownOutcomeError"]


class DeliveryError(WhaledError):
    """A delivery failed. ``target`` is the recipient address or the webhook URL."""

    def __init__(self, target: str, detail: str) -> None:
        self.target = target
        self.detail = detail
        super().__init__(f"delivery to {target}: {detail}")


class TransientDeliveryError(DeliveryError):
    """The message was certainly not accepted (for example, connection refused); a retry is safe."""


class PermanentDeliveryError(DeliveryError):
    """The server rejected the message for good (for example, SMTP 550 or HTTP 400); retrying will not help."""


class UnknownOutcomeError(DeliveryError, TimeoutError):
    """The message may or may not have been accepted (for example, a timeout after SMTP DATA).

    The outbox marks the delivery ``unknown`` and never resends it by itself; the operator can.
    """
