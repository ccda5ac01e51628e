"""The monitoring dashboard: one page at ``/`` with its script and styles under ``/static/``, and the small
JSON endpoints under ``/api/v1/dashboard/`` that it refreshes from.

The page itself contains no data, so it is served without the access token; every endpoint it reads sits under
``/api/``, which the access token protects when one is configured (the page asks for it then). Whale trades
arrive live over ``/ws``. The endpoints are made for this page and may change with it; programs should use
the documented API. Their bodies pass through :class:`~whaled.web.redact.Redactor`, which keeps configured
secrets and webhook paths out.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from whaled.clock import now_ms
from whaled.governor import GovernorSnapshot
from whaled.jobs import JOBS, job_schedules
from whaled.jobs.scheduler import describe_trigger
from whaled.monitor import HealthReport, JobHealth
from whaled.web import dashboard_data as data
from whaled.web.api import API_PREFIX
from whaled.web.api_queries import list_wallets
from whaled.web.context import WEB_CONTEXT, WebContext
from whaled.web.dashboard_actions import install_actions
from whaled.web.feed import FEED_HUB
from whaled.web.health import ensure_monitor
from whaled.web.redact import Redactor

__all__ = ["DASHBOARD_API", "STATIC_DIR", "install"]

STATIC_DIR = Path(__file__).with_name("static")
DASHBOARD_API = f"{API_PREFIX}/dashboard"
_LEADERBOARD_SIZE = 15
# The page loads only its own files and talks only to this server.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The page may be opened with ?access_token=...; no other site may see that address.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_REDACTOR: web.AppKey[Redactor] = web.AppKey("whaled.web.dashboard.redactor", Redactor)


def install(app: web.Application, ctx: WebContext) -> None:
    """Add the page, its static files, the JSON endpoints and the retry actions."""
    ensure_monitor(ctx)
    app[_REDACTOR] = Redactor(ctx.settings)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_get(f"{DASHBOARD_API}/status", _status)
    app.router.add_get(f"{DASHBOARD_API}/workflows", _workflows)
    app.router.add_get(f"{DASHBOARD_API}/wallets", _wallets)
    app.router.add_get(f"{DASHBOARD_API}/markets", _markets)
    install_actions(app, DASHBOARD_API)
    app.on_response_prepare.append(_static_headers)


async def _static_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


def _context(request: web.Request) -> WebContext:
    return request.app[WEB_CONTEXT]


def _respond(request: web.Request, body: dict[str, Any]) -> web.Response:
    return request.app[_REDACTOR].json_response({"now_ms": now_ms(), **body})


# Status: health, jobs, governor, feed.


async def _status(request: web.Request) -> web.Response:
    ctx = _context(request)
    report = await ensure_monitor(ctx).check()
    async with ctx.db.reader() as conn:
        await conn.execute("BEGIN")
        history = await data.job_history(conn, JOBS)
    governor = ctx.governor_snapshot() if ctx.governor_snapshot is not None else None
    hub = request.app.get(FEED_HUB)
    return _respond(
        request,
        {
            "health": report.to_json(),
            "jobs": _jobs_json(ctx, report, history),
            "governor": _governor_json(governor) if governor is not None else None,
            "feed": dataclasses.asdict(hub.stats()) if hub is not None else None,
        },
    )


def _schedule(ctx: WebContext) -> dict[str, dict[str, Any]]:
    """Return each job's next run and running state, from the running scheduler when there is one."""
    if ctx.job_schedule is not None:
        return {str(entry["name"]): dict(entry) for entry in ctx.job_schedule()}
    return {
        schedule.name: {
            "name": schedule.name,
            "enabled": schedule.enabled,
            "next_run": schedule.next_run.isoformat() if schedule.next_run else None,
            "running_run_id": None,
        }
        for schedule in job_schedules(ctx.settings)
    }


def _jobs_json(ctx: WebContext, report: HealthReport, history: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    schedule = _schedule(ctx)
    health: dict[str, JobHealth] = {job.name: job for job in report.jobs}
    jobs = []
    for name, definition in JOBS.items():
        runs = history.get(name, [])
        finished = [run for run in runs if run["outcome"] != "running"]
        entry = schedule.get(name, {})
        job_health = health.get(name)
        # The report may be up to a second old (the monitor's cache); a success in the fresher history wins.
        successes = [run["finished_ms"] for run in runs if run["outcome"] == "success"]
        if job_health is not None and job_health.last_success_ms is not None:
            successes.append(job_health.last_success_ms)
        jobs.append(
            {
                "name": name,
                "trigger": describe_trigger(definition.settings(ctx.settings)),
                "enabled": entry.get("enabled", definition.settings(ctx.settings).enabled),
                "next_run": entry.get("next_run"),
                "running": entry.get("running_run_id") is not None or any(r["outcome"] == "running" for r in runs[:1]),
                "last_run": finished[0] if finished else None,
                "last_success_ms": max(successes) if successes else None,
                "bound_s": job_health.bound_s if job_health else None,
                "stale": job_health.stale if job_health else False,
                "history": runs,
            }
        )
    return jobs


def _governor_json(snapshot: GovernorSnapshot) -> dict[str, Any]:
    body = dataclasses.asdict(snapshot)
    body.pop("wait_buckets")
    body["paused_until"] = snapshot.paused_until.isoformat() if snapshot.paused_until else None
    # Every request granted a token waited in the queue once, so the count of waits is the count of requests.
    body["requests_granted"] = snapshot.wait_count
    return body


# Workflows and the outbox.


async def _workflows(request: web.Request) -> web.Response:
    ctx = _context(request)
    stuck_before = now_ms() - int(ctx.settings.monitor.workflow_stuck_s * 1000)
    async with ctx.db.reader() as conn:
        await conn.execute("BEGIN")
        counts = await data.status_counts(conn, "workflows")
        outbox = await data.status_counts(conn, "outbox")
        runs = await data.workflows_needing_attention(conn, stuck_before)
        deliveries = await data.deliveries_needing_attention(conn)
    report = ensure_monitor(ctx).last_report
    return _respond(
        request,
        {
            "workflows": counts,
            "outbox": outbox,
            "outbox_oldest_due_ms": report.outbox_oldest_due_ms if report else None,
            "runs": runs,
            "deliveries": deliveries,
            "engine_connected": ctx.workflows is not None,
        },
    )


# Wallets: the leaderboard and sync coverage.


async def _wallets(request: web.Request) -> web.Response:
    ctx = _context(request)
    async with ctx.db.reader() as conn:
        await conn.execute("BEGIN")
        leaderboard = await list_wallets(
            conn, sort="volume_30d", whales=None, tracked=None, limit=_LEADERBOARD_SIZE, offset=0
        )
        wallets = await data.coverage(conn)
    return _respond(request, {"leaderboard": leaderboard["wallets"], "coverage": wallets})


# Markets with notable price moves.


async def _markets(request: web.Request) -> web.Response:
    ctx = _context(request)
    window_s = ctx.settings.monitor.price_move_window_s
    minimum: Decimal = ctx.settings.whales.market_price_change
    async with ctx.db.reader() as conn:
        await conn.execute("BEGIN")
        moves = await data.price_moves(conn, now_ms() - int(window_s * 1000), minimum)
    return _respond(request, {"window_s": window_s, "min_change": str(minimum), "moves": moves})
