"""Email delivery through the outbox against a real aiosmtpd server: headers, outages, timeouts, storms."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from tests.fixtures.smtp import (
    FakeClock,
    GatedHandler,
    alert_settings,
    append_trade,
    eventually,
    free_port,
    read_messages,
    trade_payload,
)
from whaled.config import Settings, load_settings
from whaled.errors import ConfigError
from whaled.simulator.mailsink import MailSink, MailSinkHandler, start_mail_sink
from whaled.store import Database
from whaled.workflows import AlertService

PASSWORD = "s3cret-smtp-pass-do-not-log"


@pytest.fixture
async def service_factory(db: Database) -> AsyncIterator[Any]:
    services: list[AlertService] = []

    async def start(settings: Settings, **kwargs: Any) -> AlertService:
        service = AlertService(db, settings, None, **kwargs)
        await service.start()
        services.append(service)
        return service

    try:
        yield start
    finally:
        for service in services:
            await service.close()


async def statuses(db: Database) -> list[str]:
    return [row["status"] for row in await db.fetchall("SELECT status FROM outbox ORDER BY id")]


async def test_non_ascii_title_gives_ascii_headers(
    tmp_path: Path, db: Database, mail_sink: MailSink, service_factory: Any
) -> None:
    title = "Will Zürich's mayor win? — 東京 ☃"
    await service_factory(alert_settings(tmp_path, mail_sink.port, smtp={"sender": "Wälé Wätch <w@example.org>"}))
    await append_trade(db, 1, title=title, label="Ørca")
    await eventually(lambda: _sent(db, 1))

    [path] = mail_sink.messages()
    raw = path.read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    [message] = read_messages(mail_sink)
    subject = str(make_header(decode_header(head.split(b"Subject: ", 1)[1].split(b"\r\nDate", 1)[0].decode())))
    assert subject.replace("\r\n", "").replace("\n", "") == message["Subject"]
    assert message["Subject"] == f"[whaled] Ørca (0xaaaa…aaaa) buy YES for 10000 USD on {title}"
    assert message["From"].addresses[0].display_name == "Wälé Wätch"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert title in text.get_content()
    assert "Z&#x27;" not in html.get_content()
    assert "Zürich" in html.get_content()


async def test_line_break_in_label_still_sends(
    tmp_path: Path, db: Database, mail_sink: MailSink, service_factory: Any
) -> None:
    await service_factory(alert_settings(tmp_path, mail_sink.port))
    await append_trade(db, 1, title="Rain\nin Zürich?", label="<b>Ørca</b>\r\nBcc: spy@example.net")
    await eventually(lambda: _sent(db, 1))

    [path] = mail_sink.messages()
    head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    [message] = read_messages(mail_sink)
    assert message["Bcc"] is None
    assert message["Subject"] == (
        "[whaled] <b>Ørca</b> Bcc: spy@example.net (0xaaaa…aaaa) buy YES for 10000 USD on Rain in Zürich?"
    )
    html = message.get_body(("html",))
    assert html is not None
    assert "&lt;b&gt;Ørca&lt;/b&gt;" in html.get_content()


async def test_alerts_wait_in_outbox_while_server_is_down(tmp_path: Path, db: Database, service_factory: Any) -> None:
    port = free_port()
    await service_factory(alert_settings(tmp_path, port))
    await append_trade(db, 1)

    async def retried() -> bool:
        row = await db.fetchone("SELECT status, attempts FROM outbox")
        return row is not None and row["status"] == "pending" and row["attempts"] >= 2

    await eventually(retried)
    sink = await start_mail_sink(tmp_path / "late", port=port)
    try:
        await eventually(lambda: _sent(db, 1))
    finally:
        await sink.close()
    assert len(sink.messages()) == 1
    error = await db.fetchone("SELECT last_error FROM outbox")
    assert error is not None
    assert error[0] is None


async def test_reply_after_timeout_marks_unknown_and_never_resends(
    tmp_path: Path, db: Database, service_factory: Any
) -> None:
    handler = GatedHandler(tmp_path / "slow")
    sink = await start_mail_sink(tmp_path / "slow", handler=handler)
    try:
        service = await service_factory(alert_settings(tmp_path, sink.port, smtp={"command_timeout_s": 0.05}))
        await append_trade(db, 1)
        await eventually(lambda: _status_is(db, "unknown"))
        handler.release.set()
        await service.sender.run_once()
        await service.sender.run_once()
        assert len(sink.messages()) == 1
        row = await db.fetchone("SELECT status, attempts, last_error FROM outbox")
        assert row is not None
        assert row["status"] == "unknown"
        assert row["attempts"] == 1
        assert "DATA on 127.0.0.1" in row["last_error"]
    finally:
        handler.release.set()
        await sink.close()


async def test_password_never_reaches_logs_or_errors(
    tmp_path: Path, db: Database, service_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def reject(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        return AuthResult(success=False, handled=False, message=f"535 no such user (got {PASSWORD})")

    loop = asyncio.get_running_loop()
    handler = MailSinkHandler(tmp_path / "auth")
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", auth_require_tls=False, authenticator=reject, loop=loop),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        caplog.set_level(logging.DEBUG)
        await service_factory(alert_settings(tmp_path, port, smtp={"username": "whaled", "password": PASSWORD}))
        await append_trade(db, 1)
        await eventually(lambda: _status_is(db, "failed"))
    finally:
        server.close()
        await server.wait_closed()
    row = await db.fetchone("SELECT last_error FROM outbox")
    assert row is not None
    assert "login on 127.0.0.1" in row[0]
    assert PASSWORD not in row[0]
    # The test server echoes the password in its reply; whaled's own log lines must not carry it on.
    whaled_lines = [record.getMessage() for record in caplog.records if record.name.startswith("whaled")]
    assert any("535 no such user (got ***)" in line for line in whaled_lines)
    assert not any(PASSWORD in line for line in whaled_lines)
    assert "***" in row[0]


async def test_storm_of_whale_trades_gives_digests_within_rate_limit(
    tmp_path: Path, db: Database, mail_sink: MailSink, service_factory: Any
) -> None:
    clock = FakeClock()
    settings = alert_settings(tmp_path, mail_sink.port, digest_threshold=5, digest_window_s=900, max_emails_per_hour=12)
    service = await service_factory(settings, clock=clock)
    async with db.transaction() as tx:
        for trade_id in range(500):
            wallet = f"0x{trade_id:040x}"
            payload = trade_payload(trade_id, wallet=wallet, created_ms=clock.now)
            await tx.append_event("trade", "trade.whale", payload, wallet=wallet, market_id=101)
    await eventually(lambda: _workflows_succeeded(db, 500), timeout_s=30)
    clock.advance(901)
    service.sender.wake()
    await eventually(lambda: _sent(db, 500), timeout_s=10)

    messages = read_messages(mail_sink)
    assert len(messages) <= 12
    counts = [_alert_count(message["Subject"]) for message in messages]
    assert counts == [1, 1, 1, 1, 1, 495]
    ids = await db.fetchall("SELECT message_id, count(*) AS n FROM outbox GROUP BY message_id")
    assert len(ids) == len(messages)


def test_tls_contradicting_port_is_rejected_at_load(tmp_path: Path) -> None:
    path = tmp_path / "whaled.toml"
    path.write_text(f'[smtp]\nhost = "mail.example.com"\nport = 465\ntls = "starttls"\npassword = "{PASSWORD}"\n')
    with pytest.raises(ConfigError, match="tls = 'starttls' contradicts port 465") as raised:
        load_settings(path, environ={})
    assert PASSWORD not in str(raised.value)
    path.write_text(f'[smtp]\nhost = "mail.example.com"\nport = 25\npassword = "{PASSWORD}"\n')
    with pytest.raises(ConfigError, match="without TLS"):
        load_settings(path, environ={})
    path.write_text("[smtp]\nport = 587\n")
    assert load_settings(path, environ={}).smtp.tls_mode == "starttls"


def _alert_count(subject: str) -> int:
    match = re.match(r"\[whaled\] (\d+) alerts: ", subject)
    return int(match[1]) if match else 1


async def _sent(db: Database, count: int) -> bool:
    found = await statuses(db)
    return len(found) == count and set(found) == {"sent"}


async def _status_is(db: Database, status: str) -> bool:
    return await statuses(db) == [status]


async def _workflows_succeeded(db: Database, count: int) -> bool:
    row = await db.fetchone("SELECT count(*) FROM workflows WHERE status = 'succeeded'")
    return row is not None and row[0] == count
