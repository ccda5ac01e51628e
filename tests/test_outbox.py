"""Outbox recovery after a crash, and the operator commands: workflows list/show/retry/cancel, alerts test."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.fixtures.smtp import alert_settings, append_trade, eventually, read_messages
from whaled.notify import outbox
from whaled.simulator.mailsink import MailSink
from whaled.store import Database
from whaled.workflows import AlertService
from whaled.workflows.commands import add_parsers


async def queue_alert(db: Database, alert_id: int, targets: list[str]) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO alerts (id, rule, kind, dedupe_key, source_event_id, title, payload, created_ms) "
            "VALUES (?, 'whale_trade', 'new', ?, 1, 'Orca bought', '{}', 0)",
            (alert_id, f"k{alert_id}"),
        )
        await outbox.add_deliveries(tx, alert_id, targets, [], 0)


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
