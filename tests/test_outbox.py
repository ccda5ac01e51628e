"""The outbox: recovery after a crash, rows that cannot be sent, and the operator commands.

The commands are workflows list/show/retry/cancel and alerts test.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.fixtures.smtp import FakeClock, alert_settings, append_trade, eventually, free_port, read_messages
from whaled.config import Settings
from whaled.notify import EmailTransport, OutboxSender, WebhookTransport, outbox
from whaled.simulator.mailsink import MailSink
from whaled.store import Database
from whaled.workflows import AlertService
from whaled.workflows.commands import add_parsers

# A lone UTF-16 surrogate: valid JSON, but no UTF-8 body can carry it, so the email cannot be built.
UNENCODABLE_PAYLOAD = '{"market_title": "\\ud800"}'


async def queue_alert(
    db: Database, alert_id: int, targets: list[str], *, payload: str = "{}", webhook_urls: tuple[str, ...] = ()
) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO alerts (id, rule, kind, dedupe_key, source_event_id, title, payload, created_ms) "
            "VALUES (?, 'whale_trade', 'new', ?, 1, 'Orca bought', ?, 0)",
            (alert_id, f"k{alert_id}", payload),
        )
        await outbox.add_deliveries(tx, alert_id, targets, list(webhook_urls), 0)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="whaled")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_recovery_settles_rows_left_sending(db: Database) -> None:
    await queue_alert(db, 1, ["before@example.com", "after@example.com"])
    async with db.transaction() as tx:
        assert await outbox.claim(tx, [1, 2], "<m>", 5) == [1, 2]
        await outbox.mark_data_started(tx, [2], 6)
        requeued, unknown = await outbox.recover_interrupted(tx, 10)
    assert (requeued, unknown) == (1, 1)
    rows = {row.target: row for row in await outbox.deliveries_for_alert(db, 1)}
    assert rows["before@example.com"].status == "pending"
    assert rows["after@example.com"].status == "unknown"
    assert rows["after@example.com"].sent_ms == 6


async def test_operator_retry_resends_unknown_delivery(
    tmp_path: Path, db: Database, mail_sink: MailSink, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = alert_settings(tmp_path, mail_sink.port)
    service = AlertService(db, settings, None)
    await service.start()
    try:
        await append_trade(db, 1)
        await eventually(lambda: _statuses_are(db, ["sent"]))
        async with db.transaction() as tx:
            await tx.execute("UPDATE outbox SET status = 'unknown'")

        args = parse("workflows", "retry", "1")
        assert await args.handler(args, settings) == 0
        assert "1 deliveries requeued" in capsys.readouterr().out
        service.sender.wake()
        await eventually(lambda: _statuses_are(db, ["sent"]))
    finally:
        await service.close()
    messages = read_messages(mail_sink)
    assert len(messages) == 2
    assert messages[0]["Message-ID"] == messages[1]["Message-ID"]

    args = parse("workflows", "show", "1")
    assert await args.handler(args, settings) == 0
    shown = capsys.readouterr().out
    assert "succeeded" in shown
    assert "step 3 deliver" in shown
    assert "email to ops@example.com: sent" in shown


async def test_commands_list_and_cancel(tmp_path: Path, db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    settings = alert_settings(tmp_path, 25)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO workflows (id, name, version, step_names, status, input, created_ms, updated_ms) "
            "VALUES (5, 'alert', 1, '[\"evaluate\"]', 'pending', '{}', 0, 0)"
        )
    args = parse("workflows", "cancel", "5")
    assert await args.handler(args, settings) == 0
    assert await args.handler(args, settings) == 1
    args = parse("workflows", "list", "--status", "cancelled")
    assert await args.handler(args, settings) == 0
    out = capsys.readouterr().out
    assert "workflow 5 cancelled" in out
    assert "workflow 5 had already finished" in out
    assert "cancelled by the operator" in out
    args = parse("workflows", "retry", "404")
    assert await args.handler(args, settings) == 1
    assert "workflow 404 not found" in capsys.readouterr().out


async def test_alerts_test_sends_through_configured_server(
    tmp_path: Path, mail_sink: MailSink, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = alert_settings(tmp_path, mail_sink.port)
    args = parse("alerts", "test", "--to", "me@example.com")
    assert await args.handler(args, settings) == 0
    [message] = read_messages(mail_sink)
    assert message["To"] == "me@example.com"
    assert message["Subject"] == "[whaled] Test alert from whaled"
    assert f"sent to me@example.com through 127.0.0.1:{mail_sink.port}" in capsys.readouterr().out


async def _statuses_are(db: Database, expected: list[str]) -> bool:
    rows = await db.fetchall("SELECT status FROM outbox ORDER BY id")
    return [row["status"] for row in rows] == expected


async def test_prune_delivered_keeps_unsettled_alerts(db: Database) -> None:
    await queue_alert(db, 1, ["a@example.com"])
    await queue_alert(db, 2, ["b@example.com"])
    await queue_alert(db, 3, ["c@example.com"])
    async with db.transaction() as tx:
        await outbox.mark_sent(tx, [1], 1)
        await outbox.mark_unknown(tx, [3], "timed out", 1)
        assert await outbox.prune_delivered(tx, 1) == 1
    remaining = await db.fetchall("SELECT alert_id FROM outbox ORDER BY alert_id")
    assert [row[0] for row in remaining] == [2, 3]
    alerts = await db.fetchall("SELECT id FROM alerts ORDER BY id")
    assert [row[0] for row in alerts] == [2, 3]


def whaled_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("whaled")]


async def run_sender(db: Database, settings: Settings, check: Callable[[], Awaitable[bool]]) -> None:
    """Run a sender until ``check`` passes, then three more passes, which must leave settled rows alone."""
    sender = OutboxSender(db, settings.smtp, settings.alerts)
    await sender.start()
    try:
        await eventually(check, timeout_s=3)
        for _ in range(3):
            await sender.run_once()
    finally:
        await sender.close()


async def test_unbuildable_email_fails_once_beside_good_one(
    tmp_path: Path, db: Database, mail_sink: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="whaled")
    await queue_alert(db, 1, ["ops@example.com"], payload=UNENCODABLE_PAYLOAD)
    await queue_alert(db, 2, ["ops@example.com"])

    await run_sender(db, alert_settings(tmp_path, mail_sink.port), lambda: _statuses_are(db, ["failed", "sent"]))

    [message] = read_messages(mail_sink)
    assert message["Message-ID"].startswith("<whaled.alert.2.")
    row = await db.fetchone("SELECT attempts, last_error FROM outbox WHERE id = 1")
    assert row is not None
    assert row["attempts"] == 0
    assert row["last_error"].startswith("the email could not be built: UnicodeEncodeError: ")
    records = whaled_records(caplog)
    assert len(records) < 10
    [error] = [record for record in records if record.levelno >= logging.ERROR]
    assert "delivery 1 to ops@example.com failed for good" in error.getMessage()
    assert error.exc_info is not None


async def test_unbuildable_alert_is_dropped_from_digest(tmp_path: Path, db: Database, mail_sink: MailSink) -> None:
    await queue_alert(db, 1, ["ops@example.com"])
    await queue_alert(db, 2, ["ops@example.com"], payload=UNENCODABLE_PAYLOAD)
    await queue_alert(db, 3, ["ops@example.com"])
    settings = alert_settings(tmp_path, mail_sink.port, digest_threshold=1)

    await run_sender(db, settings, lambda: _statuses_are(db, ["sent", "failed", "sent"]))

    [message] = read_messages(mail_sink)
    assert message["Subject"] == "[whaled] 2 alerts: Orca bought"
    message_ids = await db.fetchall("SELECT message_id FROM outbox WHERE status = 'sent'")
    assert {row[0] for row in message_ids} == {message["Message-ID"]}


async def test_unencodable_webhook_fails_once(
    tmp_path: Path, db: Database, aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="whaled")
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", handle)
    url = str((await aiohttp_server(app)).make_url("/hook"))
    await queue_alert(db, 1, [], payload=UNENCODABLE_PAYLOAD, webhook_urls=(url,))
    await queue_alert(db, 2, [], webhook_urls=(url,))
    settings = alert_settings(tmp_path, free_port(), recipients=[], webhook_urls=[url], webhook_secret="s")

    await run_sender(db, settings, lambda: _statuses_are(db, ["failed", "sent"]))

    assert [json.loads(body)["alert"]["alert_id"] for body in bodies] == [2]
    row = await db.fetchone("SELECT last_error FROM outbox WHERE id = 1")
    assert row is not None
    assert "payload could not be encoded" in row[0]
    assert len([record for record in whaled_records(caplog) if record.levelno >= logging.ERROR]) == 1


class BrokenEmail(EmailTransport):
    """A transport with a bug: every send raises an exception that no delivery error describes."""

    async def send(self, recipient: str, message: bytes, *, before_data: Any = None) -> None:
        raise RuntimeError("bug in the transport")


class BrokenWebhook(WebhookTransport):
    async def post(self, url: str, payload: dict[str, Any], *, delivery_id: int, idempotency_key: str) -> None:
        raise RuntimeError("bug in the transport")


async def test_unexpected_send_error_retries_after_delay(tmp_path: Path, db: Database) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    await queue_alert(db, 1, ["ops@example.com"], webhook_urls=(url,))
    settings = alert_settings(
        tmp_path, free_port(), webhook_urls=[url], webhook_secret="s", retry_base_s=10, retry_max_s=10
    )
    clock = FakeClock()
    sender = OutboxSender(
        db, settings.smtp, settings.alerts, clock=clock, email=BrokenEmail(settings.smtp), webhook=BrokenWebhook(None)
    )
    try:
        assert await sender.run_once() == 2
        assert await sender.run_once() == 0
    finally:
        await sender.close()

    rows = await db.fetchall("SELECT channel, status, attempts, next_attempt_ms, last_error FROM outbox ORDER BY id")
    for row in rows:
        assert row["status"] == "pending", row["channel"]
        assert row["attempts"] == 1, row["channel"]
        assert clock.now + 5_000 <= row["next_attempt_ms"] <= clock.now + 10_000, row["channel"]
        assert row["last_error"].endswith("unexpected RuntimeError"), row["channel"]


async def test_sender_loop_backs_off_after_pass_error(
    tmp_path: Path, db: Database, mail_sink: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="whaled")
    settings = alert_settings(tmp_path, mail_sink.port)  # poll_interval_s = 0.05
    sender = OutboxSender(db, settings.smtp, settings.alerts)
    await sender.start()
    try:
        async with db.transaction() as tx:
            await tx.execute("ALTER TABLE outbox RENAME TO outbox_moved")
        started = time.monotonic()
        sender.wake()

        def pass_errors() -> list[logging.LogRecord]:
            return [record for record in whaled_records(caplog) if "Outbox pass failed" in record.getMessage()]

        async def three_errors() -> bool:
            return len(pass_errors()) >= 3

        await eventually(three_errors, timeout_s=3)
        # Pauses of 0.05 s and 0.1 s come before the third error. A loop without them repeats at once.
        assert time.monotonic() - started >= 0.15
        assert all(record.exc_info is not None for record in pass_errors())

        async with db.transaction() as tx:
            await tx.execute("ALTER TABLE outbox_moved RENAME TO outbox")
        await queue_alert(db, 1, ["ops@example.com"])
        await eventually(lambda: _statuses_are(db, ["sent"]), timeout_s=3)
    finally:
        await sender.close()
    assert len(mail_sink.messages()) == 1
