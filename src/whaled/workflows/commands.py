"""Command line: ``whaled workflows list|show|retry|cancel`` and ``whaled alerts test``.

These commands change rows only. A running daemon picks up a retried workflow or requeued delivery within
``alerts.poll_interval_s``; a cancelled workflow stops at its next step boundary.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from whaled.clock import ms_to_datetime, now_ms
from whaled.config import Settings
from whaled.notify import DeliveryError, EmailTransport, build_alert_email, render_bytes
from whaled.notify import outbox as outbox_store
from whaled.notify.outbox import AlertView
from whaled.store import Database
from whaled.workflows import journal
from whaled.workflows.journal import WorkflowRun

__all__ = ["add_parsers"]

_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")


def add_parsers(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser] | None = None,
) -> None:
    """Register ``workflows`` and ``alerts``; each leaf sets ``handler(args, settings) -> exit status``.

    :param parents: parsers whose options every command accepts (``--config``).
    """
    parents = parents or []
    workflows = subparsers.add_parser(
        "workflows", parents=parents, help="list, inspect, retry or cancel durable workflows"
    )
    actions = workflows.add_subparsers(dest="workflows_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=parents, help="list workflow runs, newest first")
    listing.add_argument("--status", choices=_STATUSES, help="only runs with this status")
    listing.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    listing.set_defaults(handler=list_workflows)
    for name, handler, text in (
        ("show", show_workflow, "show a run with its journal and its alert's deliveries"),
        ("retry", retry_workflow, "resume a failed or cancelled run and requeue its unknown or failed deliveries"),
        ("cancel", cancel_workflow, "cancel a pending or running run"),
    ):
        action = actions.add_parser(name, parents=parents, help=text)
        action.add_argument("id", type=int, help="the workflow id, as `whaled workflows list` shows it")
        action.set_defaults(handler=handler)

    alerts = subparsers.add_parser("alerts", parents=parents, help="alert delivery tools")
    alert_actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    test = alert_actions.add_parser(
        "test", parents=parents, help="send a test email through the configured SMTP server"
    )
    test.add_argument("--to", action="append", metavar="ADDRESS", help="recipient (default: alerts.recipients)")
    test.set_defaults(handler=send_test_email)


def _out(text: str) -> None:
    print(text)  # noqa: T201 (command output)


@asynccontextmanager
async def _open(settings: Settings) -> AsyncIterator[Database]:
    store = settings.store
    db = await Database.open(store.path, busy_timeout_ms=store.busy_timeout_ms, readers=1)
    try:
        yield db
    finally:
        await db.close()


def _when(value_ms: int | None) -> str:
    return ms_to_datetime(value_ms).strftime("%Y-%m-%d %H:%M:%S") if value_ms else "-"


def _summary(run: WorkflowRun) -> str:
    step = run.step_names[run.next_step] if run.next_step < len(run.step_names) else "done"
    error = f"  {run.error}" if run.error else ""
    return (
        f"{run.id:>7}  {run.name:<10} v{run.version}  {run.status:<9}  next={step:<9}  {_when(run.created_ms)}{error}"
    )


async def list_workflows(args: argparse.Namespace, settings: Settings) -> int:
    async with _open(settings) as db:
        runs = await journal.list_runs(db, status=args.status, limit=args.limit)
    for run in runs:
        _out(_summary(run))
    if not runs:
        _out("no workflow runs")
    return 0


async def show_workflow(args: argparse.Namespace, settings: Settings) -> int:
    async with _open(settings) as db:
        run = await journal.read_run(db, args.id)
        if run is None:
            _out(f"workflow {args.id} not found; list them with `whaled workflows list`")
            return 1
        deliveries = await _deliveries(db, run.id)
    _out(_summary(run))
    _out(f"  input: {json.dumps(run.input)}  key: {run.idempotency_key or '-'}")
    for entry in run.journal:
        _out(f"  step {entry.position} {entry.name}: {entry.attempts} attempt(s), {json.dumps(entry.result)}")
    for delivery in deliveries:
        error = f"  ({delivery['last_error']})" if delivery["last_error"] else ""
        _out(f"  delivery {delivery['id']} {delivery['channel']} to {delivery['target']}: {delivery['status']}, "
             f"{delivery['attempts']} attempt(s){error}")  # fmt: skip
    return 0


async def _alert_ids(db: Database, workflow_id: int) -> list[int]:
    rows = await db.fetchall("SELECT id FROM alerts WHERE workflow_id = ?", (workflow_id,))
    return [int(row["id"]) for row in rows]


async def _deliveries(db: Database, workflow_id: int) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT o.* FROM outbox o JOIN alerts a ON a.id = o.alert_id WHERE a.workflow_id = ? ORDER BY o.id",
        (workflow_id,),
    )
    return [dict(row) for row in rows]


async def retry_workflow(args: argparse.Namespace, settings: Settings) -> int:
    async with _open(settings) as db:
        if await journal.read_run(db, args.id, with_journal=False) is None:
            _out(f"workflow {args.id} not found; list them with `whaled workflows list`")
            return 1
        alert_ids = await _alert_ids(db, args.id)
        async with db.transaction() as tx:
            reset = await journal.reset_for_retry(tx, args.id, now_ms())
            requeued = await outbox_store.requeue(tx, alert_ids, now_ms())
    if not reset and not requeued:
        _out(
            f"workflow {args.id} has nothing to retry: it is not failed or cancelled, and no delivery is unknown or failed"
        )
        return 1
    _out(f"workflow {args.id}: {'set to resume' if reset else 'run unchanged'}; {requeued} deliveries requeued")
    return 0


async def cancel_workflow(args: argparse.Namespace, settings: Settings) -> int:
    async with _open(settings) as db:
        if await journal.read_run(db, args.id, with_journal=False) is None:
            _out(f"workflow {args.id} not found; list them with `whaled workflows list`")
            return 1
        async with db.transaction() as tx:
            cancelled = await journal.cancel_run(tx, args.id, now_ms())
    _out(f"workflow {args.id} cancelled" if cancelled else f"workflow {args.id} had already finished")
    return 0 if cancelled else 1


async def send_test_email(args: argparse.Namespace, settings: Settings) -> int:
    recipients = args.to or list(settings.alerts.recipients)
    if not recipients:
        _out("no recipient: pass --to ADDRESS or set alerts.recipients")
        return 2
    alert = AlertView(
        id=0,
        rule="test",
        kind="new",
        title="Test alert from whaled",
        dedupe_key=f"test:{now_ms()}",
        payload={"market_title": "This is a test; no market moved"},
        created_ms=now_ms(),
    )
    transport = EmailTransport(settings.smtp)
    failures = 0
    for recipient in recipients:
        message = build_alert_email(alert, sender=settings.smtp.sender, recipient=recipient)
        try:
            await transport.send(recipient, render_bytes(message))
        except DeliveryError as exc:
            failures += 1
            _out(f"failed: {exc}")
        else:
            _out(f"sent to {recipient} through {transport.server}")
    return 1 if failures else 0
