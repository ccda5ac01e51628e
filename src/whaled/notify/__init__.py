"""Alert delivery: the outbox table, the SMTP and webhook transports, and the paced sender loop."""

from whaled.notify.email import EmailTransport
from whaled.notify.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from whaled.notify.message import build_alert_email, build_digest_email, render_bytes
from whaled.notify.outbox import AlertView, Delivery, add_deliveries, requeue
from whaled.notify.pacing import PacingPolicy
from whaled.notify.sender import OutboxSender
from whaled.notify.webhook import SIGNATURE_HEADER, WebhookTransport, sign_body, webhook_payload

__all__ = [
    "SIGNATURE_HEADER",
    "AlertView",
    "Delivery",
    "DeliveryError",
    "EmailTransport",
    "OutboxSender",
    "PacingPolicy",
    "PermanentDeliveryError",
    "TransientDeliveryError",
    "UnknownOutcomeError",
    "WebhookTransport",
    "add_deliveries",
    "build_alert_email",
    "build_digest_email",
    "render_bytes",
    "requeue",
    "sign_body",
    "webhook_payload",
]
