"""The aiohttp application and its server: which parts it holds, where it listens, how it stops."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from whaled.log import http_logger
from whaled.log import http_logger as logger
from whaled.web import api, dashboard, feed, health, metrics
from whaled.web.auth import (
    DEFAULT_PROTECTED_PREFIXES,
    PROTECTED_PREFIXES,
    RedactingAccessLogger,
    auth_middleware,
    cors_middleware,
    ensure_safe_bind,
    host_middleware,
)
from whaled.web.context import WEB_CONTEXT, WebContext
from whaled.web.errors import WebStartError, unexpected_error_middleware

__all__ = ["WebServer", "create_app", "start_web"]


def create_app(ctx: WebContext) -> web.Application:
    """Build the application: error handling and access control first, then the feed, the API, the dashboard,
    metrics and health."""
    settings = ctx.settings.web
    middlewares: list[Middleware] = [unexpected_error_middleware]
    if settings.access_token is None:
        middlewares.append(host_middleware())
    middlewares += [cors_middleware(settings), auth_middleware(settings)]
    app = web.Application(middlewares=middlewares)
    app[WEB_CONTEXT] = ctx
    app[PROTECTED_PREFIXES] = list(DEFAULT_PROTECTED_PREFIXES)
    for part in (feed, api, dashboard, metrics, health):
        part.install(app, ctx)
    return app


class WebServer:
    """A running web server. Stop it with :meth:`close`."""

    def __init__(self, app: web.Application, runner: web.AppRunner, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner = runner

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop_listening(self) -> None:
        """Stop accepting connections; requests and websocket clients already connected carry on."""
        for site in list(self._runner.sites):
            await site.stop()

    async def close(self) -> None:
        """Stop listening, close websocket clients with code 1001, finish requests, then stop the feed."""
        # AppRunner.cleanup() stops the site, runs on_shutdown (the feed closes its clients there), waits
        # for handlers up to web.shutdown_timeout_s, then unwinds cleanup contexts (the broadcaster).
        await self._runner.cleanup()
        logger.info("Web server on %s stopped", self.url)


async def start_web(ctx: WebContext) -> WebServer:
    """Start the web server on ``web.host``/``web.port``.

    :raises WebStartError: the host is not loopback and no access token is set, or the address is in use.
    """
    settings = ctx.settings.web
    ensure_safe_bind(settings)
    app = create_app(ctx)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=RedactingAccessLogger,
        access_log=http_logger,
        shutdown_timeout=settings.shutdown_timeout_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise WebStartError(settings.host, settings.port, f"{exc.strerror or exc}") from exc
    port = _bound_port(runner, settings.port)
    server = WebServer(app, runner, settings.host, port)
    auth = "access token required" if settings.access_token is not None else "no access token"
    logger.info("Web server listening on %s (%s)", server.url, auth)
    return server


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
