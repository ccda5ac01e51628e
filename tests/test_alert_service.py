"""The alert service end to end: events in, workflows, outbox, emails in a real aiosmtpd server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.smtp import FakeClock, alert_settings, append_trade, eventually, read_messages
from whaled.config import GovernorSettings, Settings
from whaled.governor import GovernedOpinion, Governor
from whaled.opinion import OpinionClient
from whaled.simulator import RunningSimulator
from whaled.simulator.mailsink import MailSink
from whaled.store import Database
from whaled.workflows import AlertService
from whaled.workflows.alert import alert_title
from whaled.workflows.rules import Match


@pytest.fixture
async def governed(opinion_client: OpinionClient) -> AsyncIterator[GovernedOpinion]:
    governor = Governor(GovernorSettings())
    try:
        yield GovernedOpinion(opinion_client, governor)
    finally:
        await governor.close()


async def _start(db: Database, settings: Settings, opinion: GovernedOpinion | None = None, **kw: Any) -> AlertService:
    service = AlertService(db, settings, opinion, **kw)
    await service.start()
    return service


async def _deliveries(db: Database) -> list[dict[str, Any]]:
    return [dict(row) for row in await db.fetchall("SELECT * FROM outbox ORDER BY id")]


async def _all_sent(db: Database, count: int) -> bool:
    rows = await _deliveries(db)
    return len(rows) == count and all(row["status"] == "sent" for row in rows)


async def test_whale_trade_is_enriched_recorded_and_emailed(
    tmp_path: Path, db: Database, mail_sink: MailSink, simulator: RunningSimulator, governed: GovernedOpinion
) -> None:
    market = next(m for m in simulator.state.markets() if m.get("yesTokenId") and m["marketType"] == 0)
    price = simulator.state.latest_price(market["yesTokenId"])
    assert price is not None
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO markets (market_id, root_market_id, is_root, title, root_title, status, status_name, "
            "yes_token_id, first_seen_ms, updated_ms) VALUES (?, ?, 1, '', '', 2, 'Activated', ?, 0, 0)",
            (market["marketId"], market["marketId"], market["yesTokenId"]),
        )
    service = await _start(db, alert_settings(tmp_path, mail_sink.port), governed)
    try:
        await append_trade(db, 7, market_id=market["marketId"], notional="12000", label="Big Fish")
        await eventually(lambda: _all_sent(db, 1))
    finally:
        await service.close()

    alert = await db.fetchone("SELECT * FROM alerts")
    assert alert is not None
    payload = json.loads(alert["payload"])
    assert payload["market_title"] == market["marketTitle"]
    assert payload["current_price"] == str(price["price"])
    event = await db.fetchone("SELECT * FROM events WHERE topic = 'alert'")
    assert event is not None
    assert event["type"] == "alert"
    assert json.loads(event["payload"])["alert_id"] == alert["id"]
    [message] = read_messages(mail_sink)
    assert message["Subject"] == f"[whaled] Big Fish (0xaaaa…aaaa) buy YES for 12000 USD on {market['marketTitle']}"
    assert message["Message-ID"].startswith(f"<whaled.alert.{alert['id']}.")
    assert governed.calls == 0  # The service used its own interactive view.


async def test_two_trades_inside_cooldown_give_one_email(tmp_path: Path, db: Database, mail_sink: MailSink) -> None:
    service = await _start(db, alert_settings(tmp_path, mail_sink.port))
    try:
        await append_trade(db, 1, notional="10000")
        await append_trade(db, 2, notional="15000")
        await eventually(lambda: _workflows_done(db, 2))
        await eventually(lambda: _all_sent(db, 1))
    finally:
        await service.close()
    assert len(mail_sink.messages()) == 1
    suppressed = await db.fetchall("SELECT result FROM workflow_steps WHERE name = 'evaluate'")
    assert sorted(json.loads(row["result"])["alert"] for row in suppressed) == [False, True]


async def test_larger_trade_inside_cooldown_escalates(tmp_path: Path, db: Database, mail_sink: MailSink) -> None:
    service = await _start(db, alert_settings(tmp_path, mail_sink.port))
    try:
        await append_trade(db, 1, notional="10000")
        await eventually(lambda: _all_sent(db, 1))
        await append_trade(db, 2, notional="20000")
        await eventually(lambda: _all_sent(db, 2))
        await append_trade(db, 3, notional="30000")  # Under 2 x 20000: a repeat, suppressed.
        await eventually(lambda: _workflows_done(db, 3))
    finally:
        await service.close()
    kinds = [row["kind"] for row in await db.fetchall("SELECT kind FROM alerts ORDER BY id")]
    assert kinds == ["new", "escalation"]
    subjects = [message["Subject"] for message in read_messages(mail_sink)]
    assert subjects[1].startswith("[whaled] Escalation: ")


async def test_restart_never_starts_a_workflow_twice(tmp_path: Path, db: Database, mail_sink: MailSink) -> None:
    settings = alert_settings(tmp_path, mail_sink.port)
    service = await _start(db, settings)
    try:
        await append_trade(db, 1)
        await eventually(lambda: _workflows_done(db, 1))
    finally:
        await service.close()
    # Rewind the stored cursor as if the commit of the cursor had been lost; the keys still hold.
    async with db.transaction() as tx:
        await tx.execute("UPDATE event_cursors SET last_event_id = 0")
    service = await _start(db, settings)
    try:
        await eventually(lambda: _cursor_at_end(service, db))
    finally:
        await service.close()
    workflows = await db.fetchone("SELECT count(*) FROM workflows")
    assert workflows is not None
    assert workflows[0] == 1
    assert len(mail_sink.messages()) == 1


async def test_backfilled_trade_raises_no_alert(tmp_path: Path, db: Database, mail_sink: MailSink) -> None:
    clock = FakeClock()
    service = await _start(db, alert_settings(tmp_path, mail_sink.port), clock=clock)
    try:
        await append_trade(db, 1, created_ms=clock.now - 2 * 3600 * 1000)
        await eventually(lambda: _cursor_at_end(service, db))
    finally:
        await service.close()
    workflows = await db.fetchone("SELECT count(*) FROM workflows")
    assert workflows is not None
    assert workflows[0] == 0


async def _workflows_done(db: Database, count: int) -> bool:
    rows = await db.fetchall("SELECT status FROM workflows")
    return len(rows) == count and all(row["status"] == "succeeded" for row in rows)


async def _cursor_at_end(service: AlertService, db: Database) -> bool:
    row = await db.fetchone("SELECT max(id) FROM events")
    return row is not None and service.consumer.cursor >= row[0] and service.engine.in_flight == 0


async def test_health_reports_runs_and_deliveries(tmp_path: Path, db: Database, mail_sink: MailSink) -> None:
    service = await _start(db, alert_settings(tmp_path, mail_sink.port))
    try:
        await append_trade(db, 1)
        await eventually(lambda: _all_sent(db, 1))
        await eventually(lambda: _workflows_done(db, 1))
        await eventually(lambda: _cursor_at_end(service, db))
        health = await service.health()
    finally:
        await service.close()
    assert health["workflows"] == {"succeeded": 1}
    assert health["outbox"] == {"sent": 1}
    assert health["outbox_oldest_due_lag_s"] == 0.0
    assert health["workflow_longest_idle_s"] == 0.0
    assert health["event_cursor"] == 2  # The trade event, then the alert's own event.


async def test_stall_and_recovery_are_emailed(
    tmp_path: Path, db: Database, mail_sink: MailSink, governed: GovernedOpinion
) -> None:
    service = await _start(db, alert_settings(tmp_path, mail_sink.port), governed)
    try:
        stall = {"reasons": ["job sync-markets has not succeeded for 20 minutes"], "problems": [], "active": ["job"]}
        async with db.transaction() as tx:
            await tx.append_event("system", "system.stall", stall)
        await eventually(lambda: _all_sent(db, 1))
        async with db.transaction() as tx:
            await tx.append_event("system", "system.recovered", {**stall, "active": []})
        await eventually(lambda: _all_sent(db, 2))
    finally:
        await service.close()

    subjects = sorted(str(message["Subject"]).strip() for message in read_messages(mail_sink))
    assert subjects == [
        "[whaled] whaled recovered: job sync-markets has not succeeded for 20 minutes",
        "[whaled] whaled stalled: job sync-markets has not succeeded for 20 minutes",
    ]
    assert governed.calls == 0


def test_alert_title_is_one_line() -> None:
    details = {
        "wallet_name": "Orca\r\nBcc: spy@example.net (0xaaaa…aaaa)",
        "side": "buy",
        "outcome": "YES",
        "notional_usd": "12000",
    }
    match = Match("whale_trade", "0x" + "a" * 40, 101, "whale_trade:trade:1", 3600.0, details=details)

    title = alert_title(match, "new", "Rain\x00in\u2028Zürich?")

    assert title == "Orca Bcc: spy@example.net (0xaaaa…aaaa) buy YES for 12000 USD on Rain in Zürich?"
    assert title.splitlines() == [title]
