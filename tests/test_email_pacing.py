"""Per-recipient pacing (singles, digests, hourly cap, quiet hours) and message building."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage

from whaled.config import QuietHours
from whaled.notify.message import build_alert_email, build_digest_email, render_bytes
from whaled.notify.outbox import AlertView, Delivery, SentMessage
from whaled.notify.pacing import HOUR_MS, PacingPolicy, quiet_until_ms

WINDOW_MS = 900_000
POLICY = PacingPolicy(digest_threshold=3, digest_window_ms=WINDOW_MS, max_per_hour=5)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def rows(count: int, created_ms: int = 0) -> list[Delivery]:
    return [
        Delivery(i, i, "email", "ops@example.com", "pending", 0, 0, None, None, created_ms, None)
        for i in range(1, count + 1)
    ]


def sent(*times_and_sizes: tuple[int, int]) -> list[SentMessage]:
    return [SentMessage(f"<m{n}>", at, size) for n, (at, size) in enumerate(times_and_sizes)]


def test_pacing_sends_singles_up_to_threshold() -> None:
    decision = POLICY.decide(rows(10, created_ms=1_000), sent((500, 1), (600, 1)), 1_000)
    assert decision.action == "single"
    assert [row.id for row in decision.rows] == [1]


def test_pacing_holds_overflow_for_first_digest() -> None:
    decision = POLICY.decide(rows(4, created_ms=1_000), sent((500, 1), (600, 1), (700, 1)), 1_000)
    assert decision.action == "defer"
    assert decision.until_ms == 1_000 + WINDOW_MS


def test_pacing_sends_waited_backlog_as_one_digest() -> None:
    decision = POLICY.decide(rows(40, created_ms=0), [], WINDOW_MS)
    assert decision.action == "digest"
    assert len(decision.rows) == 40


def test_pacing_allows_one_digest_per_window() -> None:
    decision = POLICY.decide(rows(2, created_ms=0), sent((WINDOW_MS, 7)), WINDOW_MS + 10)
    assert decision.action == "defer"
    assert decision.until_ms == 2 * WINDOW_MS


def test_pacing_caps_emails_per_hour() -> None:
    history = sent(*((minute * 60_000, 1) for minute in range(5)))
    decision = POLICY.decide(rows(1, created_ms=10 * 60_000), history, 10 * 60_000)
    assert decision.action == "defer"
    assert decision.until_ms == HOUR_MS
    assert decision.reason == "held by the limit of 5 emails per hour"


def test_quiet_hours_across_midnight() -> None:
    quiet = QuietHours(start="22:00", end="07:00", timezone="UTC")
    assert quiet_until_ms(quiet, ms("2026-03-01T23:30:00")) == ms("2026-03-02T07:00:00")
    assert quiet_until_ms(quiet, ms("2026-03-02T06:59:00")) == ms("2026-03-02T07:00:00")
    assert quiet_until_ms(quiet, ms("2026-03-02T07:00:00")) is None
    assert quiet_until_ms(quiet, ms("2026-03-02T12:00:00")) is None


def test_quiet_hours_follow_time_zone() -> None:
    quiet = QuietHours(start="01:00", end="02:00", timezone="Asia/Tokyo")
    assert quiet_until_ms(quiet, ms("2026-03-01T16:30:00")) == ms("2026-03-01T17:00:00")
    policy = PacingPolicy(3, WINDOW_MS, 5, quiet)
    decision = policy.decide(rows(1), [], ms("2026-03-01T16:30:00"))
    assert decision.action == "defer"
    assert decision.reason == "held for quiet hours"


def test_alert_message_id_is_stable_and_digest_lists_all() -> None:
    alert = AlertView(12, "whale_trade", "new", "Orca bought", "whale_trade:trade:9", {"market_title": "Rain"}, 0)
    first = build_alert_email(alert, sender="whaled <w@example.org>", recipient="a@example.com")
    again = build_alert_email(alert, sender="whaled <w@example.org>", recipient="a@example.com")
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"].endswith("@example.org>")
    other = AlertView(13, "whale_trade", "new", "Shark sold", "whale_trade:trade:10", {}, 0)
    digest = build_digest_email([alert, other], sender="w@example.org", recipient="a@example.com", message_id="<d@x>")
    assert digest["Subject"] == "[whaled] 2 alerts: Orca bought"
    body = digest.get_body(("plain",))
    assert body is not None
    assert "* Orca bought" in body.get_content()
    assert "* Shark sold" in body.get_content()
    assert render_bytes(digest).split(b"\r\n\r\n", 1)[0].isascii()


def _parse(message: EmailMessage) -> tuple[bytes, EmailMessage]:
    raw = render_bytes(message)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw.split(b"\r\n\r\n", 1)[0], parsed


def test_headers_replace_control_characters() -> None:
    title = "Ørca\r\nBcc: spy@example.net\x00 bought\u2028東京"
    payload = {"wallet_name": "<b>Ørca</b>\r\nBcc: spy@example.net"}
    alert = AlertView(7, "whale_trade", "new", title, "whale_trade:trade:7", payload, 0)
    message = build_alert_email(alert, sender="Wälé\x0bWatch\x07 <w@example.org>", recipient="a@example.com")
    head, parsed = _parse(message)

    assert head.isascii()
    assert re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", head) is None
    assert re.search(rb"^Bcc", head, re.MULTILINE | re.IGNORECASE) is None
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "[whaled] Ørca Bcc: spy@example.net  bought 東京"
    assert parsed["From"].addresses[0].display_name == "Wälé Watch"
    assert b"=?utf-8?" in head


def test_bodies_keep_label_text_escaped_in_html() -> None:
    payload = {"wallet_name": "<b>Ørca</b>\r\nBcc: spy@example.net"}
    alert = AlertView(7, "whale_trade", "new", "Ørca\r\nbought", "whale_trade:trade:7", payload, 0)
    _, parsed = _parse(build_alert_email(alert, sender="w@example.org", recipient="a@example.com"))
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert html is not None

    assert "Wallet: <b>Ørca</b>\r\nBcc: spy@example.net" in text.get_content()
    assert "&lt;b&gt;Ørca&lt;/b&gt;" in html.get_content()
    assert "<b>Ørca" not in html.get_content()


def test_digest_subject_replaces_control_characters() -> None:
    first = AlertView(1, "whale_trade", "new", "Orca\r\nBcc: spy@example.net", "k1", {}, 0)
    second = AlertView(2, "whale_trade", "new", "Shark\nsold", "k2", {}, 0)
    digest = build_digest_email([first, second], sender="w@example.org", recipient="a@example.com", message_id="<d@x>")
    head, parsed = _parse(digest)

    assert parsed["Subject"] == "[whaled] 2 alerts: Orca Bcc: spy@example.net"
    assert parsed["Bcc"] is None
    assert head.isascii()
