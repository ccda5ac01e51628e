"""The outbox table: one row per (alert, channel, target), written in the alert's own transaction.

Statuses: ``pending`` (due at ``next_attempt_ms``), ``sending`` (claimed by the sender), ``sent``, ``unknown``,
``failed`` (rejected or out of attempts) and ``cancelled``. An ``unknown`` delivery may have been accepted by
the server, so only an operator's retry sends it again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from whaled.store import Database, Transaction

__all__ = [
    "AlertView",
    "Delivery",
    "SentMessage",
    "add_deliveries",
    "claim",
    "count_by_status",
    "defer",
    "deliveries_for_alert",
    "due_deliveries",
    "mark_data_started",
    "mark_failed",
    "mark_retry",
    "mark_sent",
    "mark_unknown",
    "next_due_ms",
    "prune_delivered",
    "read_alerts",
    "recover_interrupted",
    "requeue",
    "sent_history",
]

Channel = Literal["email", "webhook"]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    alert_id: int
    channel: Channel
    target: str
    status: str
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    message_id: str | None
    created_ms: int
    sent_ms: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Delivery:
        return cls(
            id=row["id"],
            alert_id=row["alert_id"],
            channel=row["channel"],
            target=row["target"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_ms=row["next_attempt_ms"],
            last_error=row["last_error"],
            message_id=row["message_id"],
            created_ms=row["created_ms"],
            sent_ms=row["sent_ms"],
        )


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as the senders need it: its id, title, dedupe key and JSON payload."""

    id: int
    rule: str
    kind: str
    title: str
    dedupe_key: str
    payload: dict[str, Any]
    created_ms: int


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One email that reached a recipient: a single alert or a digest of ``alerts`` alerts."""

    message_id: str
    sent_ms: int
    alerts: int


async def add_deliveries(
    tx: Transaction, alert_id: int, recipients: Sequence[str], webhook_urls: Sequence[str], now: int
) -> int:
    """Queue one delivery per recipient and per webhook URL; return how many rows were added."""
    rows = [(alert_id, "email", target, now, now, now) for target in recipients]
    rows += [(alert_id, "webhook", target, now, now, now) for target in webhook_urls]
    if rows:
        await tx.executemany(
            "INSERT INTO outbox (alert_id, channel, target, status, next_attempt_ms, created_ms, updated_ms) "
            "VALUES (?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (alert_id, channel, target) DO NOTHING",
            rows,
        )
    return len(rows)


async def due_deliveries(db: Database, now: int, *, limit: int = 1000) -> list[Delivery]:
    rows = await db.fetchall(
        "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ? ORDER BY id LIMIT ?",
        (now, limit),
    )
    return [Delivery.from_row(row) for row in rows]


async def deliveries_for_alert(db: Database, alert_id: int) -> list[Delivery]:
    rows = await db.fetchall("SELECT * FROM outbox WHERE alert_id = ? ORDER BY id", (alert_id,))
    return [Delivery.from_row(row) for row in rows]


async def next_due_ms(db: Database) -> int | None:
    row = await db.fetchone("SELECT min(next_attempt_ms) FROM outbox WHERE status = 'pending'")
    return None if row is None or row[0] is None else int(row[0])


async def read_alerts(db: Database, alert_ids: Sequence[int]) -> dict[int, AlertView]:
    marks = ",".join("?" * len(alert_ids))
    rows = await db.fetchall(
        f"SELECT id, rule, kind, title, dedupe_key, payload, created_ms FROM alerts WHERE id IN ({marks})",
        list(alert_ids),
    )
    return {
        row["id"]: AlertView(
            id=row["id"],
            rule=row["rule"],
            kind=row["kind"],
            title=row["title"],
            dedupe_key=row["dedupe_key"],
            payload=json.loads(row["payload"]),
            created_ms=row["created_ms"],
        )
        for row in rows
    }


async def sent_history(db: Database, channel: Channel, target: str, since_ms: int) -> list[SentMessage]:
    """List the messages sent to one target since ``since_ms``, oldest first (rows of a digest count once)."""
    rows = await db.fetchall(
        "SELECT message_id, min(sent_ms) AS sent_ms, count(*) AS alerts FROM outbox "
        "WHERE channel = ? AND target = ? AND sent_ms >= ? AND status IN ('sent', 'unknown') "
        "GROUP BY coalesce(message_id, id) ORDER BY sent_ms",
        (channel, target, since_ms),
    )
    return [SentMessage(row["message_id"] or "", row["sent_ms"], row["alerts"]) for row in rows]


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


async def claim(tx: Transaction, ids: Sequence[int], message_id: str | None, now: int) -> list[int]:
    """Move pending rows to ``sending``; return the ids actually claimed (another pass may have won)."""
    rows = await tx.fetchall(
        f"UPDATE outbox SET status = 'sending', attempts = attempts + 1, message_id = ?, batch_size = ?, "
        f"data_started_ms = NULL, updated_ms = ? WHERE id IN ({_marks(ids)}) AND status = 'pending' RETURNING id",
        [message_id, len(ids), now, *ids],
    )
    return sorted(int(row["id"]) for row in rows)


async def mark_data_started(tx: Transaction, ids: Sequence[int], now: int) -> None:
    await tx.execute(
        f"UPDATE outbox SET data_started_ms = ?, updated_ms = ? WHERE id IN ({_marks(ids)})", [now, now, *ids]
    )


async def mark_sent(tx: Transaction, ids: Sequence[int], now: int) -> None:
    await tx.execute(
        f"UPDATE outbox SET status = 'sent', sent_ms = ?, last_error = NULL, updated_ms = ? "
        f"WHERE id IN ({_marks(ids)})",
        [now, now, *ids],
    )


async def mark_retry(
    tx: Transaction, ids: Sequence[int], error: str, next_attempt_ms: int, now: int, max_attempts: int
) -> None:
    """Return rows to ``pending`` for another attempt, or mark them ``failed`` once out of attempts."""
    await tx.execute(
        f"UPDATE outbox SET status = CASE WHEN attempts >= ? THEN 'failed' ELSE 'pending' END, "
        f"next_attempt_ms = ?, last_error = ?, message_id = NULL, data_started_ms = NULL, updated_ms = ? "
        f"WHERE id IN ({_marks(ids)})",
        [max_attempts, next_attempt_ms, error, now, *ids],
    )


async def defer(tx: Transaction, ids: Sequence[int], until_ms: int, reason: str, now: int) -> None:
    """Keep rows pending until ``until_ms`` (quiet hours, rate limit, digest window)."""
    await tx.execute(
        f"UPDATE outbox SET next_attempt_ms = ?, last_error = ?, updated_ms = ? "
        f"WHERE id IN ({_marks(ids)}) AND status = 'pending'",
        [until_ms, reason, now, *ids],
    )


async def mark_unknown(tx: Transaction, ids: Sequence[int], error: str, now: int) -> None:
    # sent_ms is set so that pacing counts a message that may have arrived.
    await tx.execute(
        f"UPDATE outbox SET status = 'unknown', last_error = ?, sent_ms = ?, updated_ms = ? "
        f"WHERE id IN ({_marks(ids)})",
        [error, now, now, *ids],
    )


async def mark_failed(tx: Transaction, ids: Sequence[int], error: str, now: int) -> None:
    await tx.execute(
        f"UPDATE outbox SET status = 'failed', last_error = ?, updated_ms = ? WHERE id IN ({_marks(ids)})",
        [error, now, *ids],
    )


async def recover_interrupted(tx: Transaction, now: int) -> tuple[int, int]:
    """Settle rows left ``sending`` by a crash; return ``(requeued, unknown)``.

    An email whose DATA command had started may have been delivered, so it becomes ``unknown``. Any other
    row was certainly not accepted (or is a webhook, which carries an idempotency key) and is requeued.
    """
    unknown = await tx.execute(
        "UPDATE outbox SET status = 'unknown', sent_ms = data_started_ms, updated_ms = ?, "
        "last_error = 'interrupted after the SMTP DATA command started; the message may have been delivered' "
        "WHERE status = 'sending' AND channel = 'email' AND data_started_ms IS NOT NULL",
        (now,),
    )
    requeued = await tx.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_ms = ?, message_id = NULL, updated_ms = ?, "
        "last_error = 'interrupted before the message was handed over' WHERE status = 'sending'",
        (now, now),
    )
    return requeued.rowcount, unknown.rowcount


async def requeue(tx: Transaction, alert_ids: Sequence[int], now: int) -> int:
    """Queue ``unknown`` and ``failed`` deliveries of these alerts again (an operator's retry)."""
    if not alert_ids:
        return 0
    cursor = await tx.execute(
        f"UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_ms = ?, message_id = NULL, "
        f"data_started_ms = NULL, sent_ms = NULL, updated_ms = ? "
        f"WHERE alert_id IN ({_marks(alert_ids)}) AND status IN ('unknown', 'failed')",
        [now, now, *alert_ids],
    )
    return cursor.rowcount


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def prune_delivered(tx: Transaction, older_than_ms: int) -> int:
    """Delete alerts created before ``older_than_ms`` (Unix ms) whose deliveries are all settled.

    Their outbox rows go with them (``ON DELETE CASCADE``). Alerts with a pending, sending or unknown
    delivery stay, so that nothing the operator may still retry disappears. Cooldowns that ended before
    the cutoff are deleted too.
    :return: the number of alerts deleted.
    """
    cursor = await tx.execute(
        "DELETE FROM alerts WHERE created_ms < ? AND NOT EXISTS (SELECT 1 FROM outbox WHERE "
        "outbox.alert_id = alerts.id AND outbox.status IN ('pending', 'sending', 'unknown'))",
        (older_than_ms,),
    )
    await tx.execute("DELETE FROM alert_cooldowns WHERE last_alert_ms < ?", (older_than_ms,))
    return cursor.rowcount
