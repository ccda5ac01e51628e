"""Alert emails: plain text plus simple HTML, UTF-8 bodies, and ASCII-only headers (RFC 2047 words).

The Message-ID of an alert email depends only on the alert, so a copy that a receiver already has is
recognisable as the same message. Header values built from data (the Subject, the sender's display name)
have their control characters replaced with spaces: a CR or LF there would make the email package raise
ValueError, and would otherwise start a new header. The bodies keep such text, HTML-escaped in the HTML part.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from whaled.clock import ms_to_datetime
from whaled.notify.outbox import AlertView
from whaled.notify.text import replace_control_characters

__all__ = [
    "build_alert_email",
    "build_digest_email",
    "digest_message_id",
    "envelope_sender",
    "message_id_for",
    "render_bytes",
    "render_email",
]

_SUBJECT_PREFIX = "[whaled] "
# Payload fields shown in an email, in this order, with their labels.
_FIELDS = (
    ("rule", "Rule"),
    ("kind", "Kind"),
    ("wallet_name", "Wallet"),
    ("market_title", "Market"),
    ("market_id", "Market id"),
    ("side", "Side"),
    ("outcome", "Outcome"),
    ("notional_usd", "Amount (USD)"),
    ("trade_price", "Trade price"),
    ("current_price", "Current price"),
    ("change", "Change"),
    ("winning_outcome", "Winning outcome"),
    ("holders", "Tracked holders"),
    ("state", "State"),
    ("reasons", "Reasons"),
)


def envelope_sender(sender: str) -> tuple[str, str]:
    """Split a sender setting such as ``"Whale Watch <whaled@example.com>"`` into (name, address)."""
    name, address = parseaddr(sender)
    return name, address or sender


def _domain(sender: str) -> str:
    _, address = envelope_sender(sender)
    return address.rpartition("@")[2] or "localhost"


def message_id_for(alert: AlertView, sender: str) -> str:
    digest = hashlib.sha256(alert.dedupe_key.encode()).hexdigest()[:16]
    return f"<whaled.alert.{alert.id}.{digest}@{_domain(sender)}>"


def digest_message_id(delivery_ids: Sequence[int], sender: str) -> str:
    digest = hashlib.sha256(",".join(map(str, delivery_ids)).encode()).hexdigest()[:16]
    return f"<whaled.digest.{delivery_ids[0]}.{digest}@{_domain(sender)}>"


def _headers(message: EmailMessage, sender: str, recipient: str, subject: str, message_id: str, when_ms: int) -> None:
    name, address = envelope_sender(sender)
    username, _, domain = address.rpartition("@")
    message["From"] = Address(display_name=replace_control_characters(name).strip(), username=username, domain=domain)
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(ms_to_datetime(when_ms))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"


def _lines(alert: AlertView) -> list[tuple[str, str]]:
    payload = {**alert.payload, "rule": alert.rule, "kind": alert.kind}
    lines = []
    for key, label in _FIELDS:
        value = payload.get(key)
        if value in (None, "", []):
            continue
        lines.append((label, _text(value)))
    lines.append(("Time (UTC)", ms_to_datetime(alert.created_ms).strftime("%Y-%m-%d %H:%M:%S")))
    return lines


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key} {_text(item)}" for key, item in value.items())
    return str(value)


def _plain(alerts: Sequence[AlertView], heading: str) -> str:
    parts = [heading, ""]
    for alert in alerts:
        if len(alerts) > 1:
            parts += [f"* {alert.title}"]
        parts += [f"  {label}: {value}" for label, value in _lines(alert)] + [""]
    return "\n".join(parts)


def _html(alerts: Sequence[AlertView], heading: str) -> str:
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    for alert in alerts:
        if len(alerts) > 1:
            parts.append(f"<h3>{html.escape(alert.title)}</h3>")
        rows = "".join(
            f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
            for label, value in _lines(alert)
        )
        parts.append(f"<table>{rows}</table>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def _assemble(sender: str, recipient: str, subject: str, message_id: str, alerts: Sequence[AlertView]) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    _headers(message, sender, recipient, subject, message_id, alerts[-1].created_ms)
    heading = subject.removeprefix(_SUBJECT_PREFIX)
    # Quoted-printable keeps the UTF-8 bodies 7-bit, so servers without 8BITMIME accept them too.
    message.set_content(_plain(alerts, heading), charset="utf-8", cte="quoted-printable")
    message.add_alternative(_html(alerts, heading), subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def build_alert_email(alert: AlertView, *, sender: str, recipient: str) -> EmailMessage:
    subject = _SUBJECT_PREFIX + replace_control_characters(alert.title)
    return _assemble(sender, recipient, subject, message_id_for(alert, sender), [alert])


def build_digest_email(alerts: Sequence[AlertView], *, sender: str, recipient: str, message_id: str) -> EmailMessage:
    subject = f"{_SUBJECT_PREFIX}{len(alerts)} alerts: {replace_control_characters(alerts[0].title)}"
    return _assemble(sender, recipient, subject, message_id, alerts)


def render_bytes(message: EmailMessage) -> bytes:
    """Serialise with CRLF line ends and RFC 2047-encoded headers; the result's headers are ASCII."""
    return message.as_bytes(policy=policy.SMTP)


def render_email(
    alerts: Sequence[AlertView], delivery_ids: Sequence[int], *, sender: str, recipient: str
) -> tuple[str, bytes]:
    """Build and serialise one email: a single alert, or a digest whose Message-ID comes from ``delivery_ids``.

    :return: the Message-ID and the message bytes.
    """
    if len(alerts) == 1:
        message = build_alert_email(alerts[0], sender=sender, recipient=recipient)
    else:
        message_id = digest_message_id(delivery_ids, sender)
        message = build_digest_email(alerts, sender=sender, recipient=recipient, message_id=message_id)
    return str(message["Message-ID"]), render_bytes(message)
