"""The health check at ``/healthz``: 200 with a JSON report when healthy, 503 with the reasons when not.

The conditions are those of :class:`~whaled.monitor.Monitor`: a job whose last success is older than
``monitor.job_stale_factor`` times its interval, a governor paused past ``monitor.governor_paused_max_s``, a
due delivery older than ``monitor.outbox_stuck_s``, workflows without progress for ``monitor.workflow_stuck_s``,
and a database that does not take a write within ``monitor.db_write_timeout_s``.

``/healthz`` needs no access token, even when ``web.access_token`` is set: systemd, load balancers and
uptime probes call it without credentials. Its body holds condition names, times and bounds only, no
stored data, and it passes through :class:`~whaled.web.redact.Redactor` like every monitoring body. A
check costs a few indexed reads and one small write, and requests within ``cache_s`` (1 s) of each other
share one check, so an unauthenticated caller cannot turn it into write load.
"""

from __future__ import annotations

from aiohttp import web

from whaled.monitor import Monitor
from whaled.web.context import WEB_CONTEXT, WebContext
from whaled.web.redact import Redactor

__all__ = ["HEALTH_PATH", "ensure_monitor", "install"]

HEALTH_PATH = "/healthz"
_REDACTOR: web.AppKey[Redactor] = web.AppKey("whaled.web.health.redactor", Redactor)


def ensure_monitor(ctx: WebContext) -> Monitor:
    """Return the context's monitor, creating one when the daemon did not pass its own (tests, tools)."""
    if ctx.monitor is None:
        ctx.monitor = Monitor(ctx.db, ctx.settings, governor_snapshot=ctx.governor_snapshot)
    return ctx.monitor


def install(app: web.Application, ctx: WebContext) -> None:
    """Add ``GET /healthz`` (and ``HEAD``)."""
    ensure_monitor(ctx)
    app[_REDACTOR] = Redactor(ctx.settings)
    app.router.add_get(HEALTH_PATH, _healthz)


async def _healthz(request: web.Request) -> web.Response:
    monitor = ensure_monitor(request.app[WEB_CONTEXT])
    report = await monitor.check()
    return request.app[_REDACTOR].json_response(report.to_json(), status=200 if report.healthy else 503)
