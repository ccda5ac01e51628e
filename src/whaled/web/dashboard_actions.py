"""The dashboard's one kind of write: retrying a failed workflow or a delivery whose outcome is unknown.

``POST /api/v1/dashboard/workflows/{id}/retry`` does what ``whaled workflows retry ID`` does: a failed or
cancelled run resumes at its first unjournaled step, and the unknown or failed deliveries of its alerts are
queued again. ``POST /api/v1/dashboard/deliveries/{id}/retry`` queues again the unknown or failed
deliveries of that delivery's alert, for alerts without a workflow.

With the alert service wired into ``WebContext.workflows``, its engine resumes the run at once and its sender
is woken. Without it, only the rows change, and a running daemon picks them up within
``alerts.poll_interval_s``.

A retry changes state, so besides the access token (under ``/api/``) it requires a JSON object as body
(``{}``), sent as ``application/json``, and, from a browser, an ``Origin`` of this server or of
``web.cors_origins``. A page on another site can send neither without a CORS preflight, and the server
allows preflights for GET only. Without an access token, the ``Host`` check against DNS rebinding applies
as well (see :func:`~whaled.web.auth.host_middleware`).
"""

from __future__ import annotations

import json

from aiohttp import web

from whaled.clock import now_ms
from whaled.log import http_logger as logger
from whaled.notify import OutboxSender
from whaled.notify import outbox as outbox_store
from whaled.store import Database
from whaled.web.api_params import MAX_ID, parse_integer
from whaled.web.auth import origin_allowed
from whaled.web.context import WEB_CONTEXT, WebContext
from whaled.web.errors import ApiParameterError
from whaled.workflows import AlertService, WorkflowEngine, journal

__all__ = ["install_actions"]


def install_actions(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/workflows/{{workflow_id}}/retry", _retry_workflow)
    app.router.add_post(f"{prefix}/deliveries/{{delivery_id}}/retry", _retry_delivery)


def _parts(ctx: WebContext) -> tuple[WorkflowEngine | None, OutboxSender | None]:
    service = ctx.workflows
    if isinstance(service, AlertService):
        return service.engine, service.sender
    if isinstance(service, WorkflowEngine):
        return service, None
    return None, None


async def _check_request(request: web.Request) -> WebContext:
    ctx = request.app[WEB_CONTEXT]
    if not origin_allowed(request, ctx.settings.web.cors_origins):
        raise ApiParameterError("Origin", f"origin {request.headers.get('Origin')!r} may not change state", status=403)
    if request.content_type != "application/json":
        raise ApiParameterError(
            "Content-Type", f"send Content-Type: application/json (got {request.content_type!r})", status=415
        )
    # The body carries nothing yet, but it must be a JSON object, as the Content-Type claims.
    body = await request.read()
    try:
        valid = isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        valid = False
    if not valid:
        raise ApiParameterError("body", "the request body must be a JSON object, such as {}")
    return ctx


def _path_id(request: web.Request, name: str) -> int:
    return parse_integer(request.match_info[name], name, minimum=1, maximum=MAX_ID)


async def _alert_ids(db: Database, workflow_id: int) -> list[int]:
    rows = await db.fetchall("SELECT id FROM alerts WHERE workflow_id = ?", (workflow_id,))
    return [int(row["id"]) for row in rows]


async def _retry_workflow(request: web.Request) -> web.Response:
    ctx = await _check_request(request)
    workflow_id = _path_id(request, "workflow_id")
    db = ctx.db
    if await journal.read_run(db, workflow_id, with_journal=False) is None:
        raise ApiParameterError("workflow_id", f"workflow {workflow_id} not found", status=404)
    engine, sender = _parts(ctx)
    alert_ids = await _alert_ids(db, workflow_id)
    now = now_ms()
    async with db.transaction() as tx:
        requeued = await outbox_store.requeue(tx, alert_ids, now)
        reset = False if engine is not None else await journal.reset_for_retry(tx, workflow_id, now)
    if engine is not None:
        reset = await engine.retry(workflow_id)
    if requeued and sender is not None:
        sender.wake()
    logger.info(
        "Workflow %d retried from the dashboard: %s, %d deliveries requeued",
        workflow_id,
        "set to resume" if reset else "run unchanged",
        requeued,
    )
    return _result(workflow_id=workflow_id, resumed=reset, requeued=requeued, immediate=engine is not None)


async def _retry_delivery(request: web.Request) -> web.Response:
    ctx = await _check_request(request)
    delivery_id = _path_id(request, "delivery_id")
    row = await ctx.db.fetchone("SELECT alert_id FROM outbox WHERE id = ?", (delivery_id,))
    if row is None:
        raise ApiParameterError("delivery_id", f"delivery {delivery_id} not found", status=404)
    async with ctx.db.transaction() as tx:
        requeued = await outbox_store.requeue(tx, [int(row["alert_id"])], now_ms())
    _, sender = _parts(ctx)
    if requeued and sender is not None:
        sender.wake()
    logger.info("Delivery %d retried from the dashboard: %d deliveries of its alert requeued", delivery_id, requeued)
    return _result(delivery_id=delivery_id, resumed=False, requeued=requeued, immediate=sender is not None)


def _result(*, resumed: bool, requeued: int, immediate: bool, **ids: int) -> web.Response:
    if not resumed and not requeued:
        message = "nothing to retry: the run is not failed or cancelled, and no delivery is unknown or failed"
    elif immediate:
        message = f"{'resumed; ' if resumed else ''}{requeued} deliveries requeued"
    else:
        message = (
            f"{'set to resume; ' if resumed else ''}{requeued} deliveries requeued; the daemon picks them up shortly"
        )
    return web.json_response(
        {**ids, "resumed": resumed, "requeued": requeued, "message": message},
        status=200 if resumed or requeued else 409,
    )
