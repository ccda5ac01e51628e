"""The live feed at ``/ws``: a websocket that streams events by topic and resumes from an event id.

docs/feed.md describes the protocol. :class:`~whaled.web.feed_hub.FeedHub` owns the clients and the
broadcaster. This module adds it to the application and handles the websocket upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from whaled.log import ws_logger as logger
from whaled.web.auth import origin_allowed
from whaled.web.context import WebContext
from whaled.web.errors import json_error
from whaled.web.feed_client import CLOSE_INTERNAL_ERROR
from whaled.web.feed_hub import FeedHub

__all__ = ["FEED_HUB", "install"]

FEED_HUB: web.AppKey[FeedHub] = web.AppKey("whaled.web.feed_hub", FeedHub)


def install(app: web.Application, ctx: WebContext) -> None:
    """Add ``/ws`` and run the broadcaster while the application runs."""
    hub = FeedHub(ctx.db, ctx.settings.web)
    app[FEED_HUB] = hub
    app.router.add_get("/ws", _handle_ws)

    async def run_hub(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    async def close_clients(app: web.Application) -> None:
        await hub.close_clients()

    app.cleanup_ctx.append(run_hub)
    app.on_shutdown.append(close_clients)


async def _handle_ws(request: web.Request) -> web.StreamResponse:
    hub = request.app[FEED_HUB]
    settings = hub.settings
    if not origin_allowed(request, settings.cors_origins):
        origin = request.headers.get("Origin")
        logger.warning("Feed connection from %s rejected: origin %r is not allowed", request.remote, origin)
        return json_error(403, f"origin {origin!r} may not use the feed; add it to web.cors_origins", "Origin")
    if hub.full:
        return json_error(503, f"the feed already has {settings.max_clients} clients; retry later")
    transport = request.transport
    if transport is None:
        return json_error(400, "the connection closed before the websocket upgrade")

    # Without autoclose, the client's close frame ends run_reader(), and FeedClient sends the reply, so
    # that every closing handshake goes through FeedClient's bounded close.
    ws = web.WebSocketResponse(
        autoclose=False,
        heartbeat=settings.heartbeat_s,
        max_msg_size=settings.max_message_bytes,
        timeout=settings.close_timeout_s,
        compress=False,
    )
    output = await ws.prepare(request)
    client = hub.connect(ws, request.remote or "unknown", transport, output)

    try:
        await client.run_reader()
    except Exception:
        # The upgrade response is sent already, so no error response can follow. The client gets 1011.
        logger.exception("Feed client %d (%s) failed", client.id, client.peer)
        client.request_close(CLOSE_INTERNAL_ERROR, "internal server error")
    finally:
        await hub.disconnect(client)
    return ws
