"""Access control for the web server: the bind check, the access token, CORS and the websocket origin."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from whaled.config import WebSettings, is_loopback_host
from whaled.web.errors import WebStartError, json_error

__all__ = [
    "DEFAULT_PROTECTED_PREFIXES",
    "PROTECTED_PREFIXES",
    "TOKEN_PARAMETER",
    "RedactingAccessLogger",
    "auth_middleware",
    "cors_middleware",
    "ensure_safe_bind",
    "host_allowed",
    "host_middleware",
    "origin_allowed",
    "protect_prefix",
    "redact_query",
]

TOKEN_PARAMETER = "access_token"
# Paths that need the access token when one is configured; other parts add theirs with protect_prefix().
PROTECTED_PREFIXES: web.AppKey[list[str]] = web.AppKey("whaled.web.protected_prefixes", list)
DEFAULT_PROTECTED_PREFIXES = ("/api/", "/ws")
_CORS_MAX_AGE_S = 600


def ensure_safe_bind(settings: WebSettings) -> None:
    """Raise :class:`WebStartError` when the server would listen beyond loopback without a token."""
    if not is_loopback_host(settings.host) and settings.access_token is None:
        raise WebStartError(
            settings.host,
            settings.port,
            "a host that is not a loopback address requires web.access_token; set it "
            "(WHALED_WEB__ACCESS_TOKEN or the web_access_token credential) or bind to 127.0.0.1",
        )


def protect_prefix(app: web.Application, prefix: str) -> None:
    """Require the access token (when one is configured) for every path that starts with ``prefix``."""
    app[PROTECTED_PREFIXES].append(prefix)


def _presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query.get(TOKEN_PARAMETER)


def _is_protected(app: web.Application, path: str) -> bool:
    return any(path == prefix.rstrip("/") or path.startswith(prefix) for prefix in app[PROTECTED_PREFIXES])


def auth_middleware(settings: WebSettings) -> Middleware:
    """Check the access token on protected paths; without a configured token, pass every request."""
    expected = settings.access_token.get_secret_value().encode() if settings.access_token else None

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or not _is_protected(request.app, request.path):
            return await handler(request)
        presented = _presented_token(request)
        if presented is not None and hmac.compare_digest(presented.encode(), expected):
            return await handler(request)
        return json_error(
            401,
            "missing or invalid access token; send the header 'Authorization: Bearer <token>' "
            f"or the query parameter {TOKEN_PARAMETER}",
            TOKEN_PARAMETER,
            headers={"WWW-Authenticate": 'Bearer realm="whaled"'},
        )

    return check_token


def host_allowed(host: str) -> bool:
    """Return True if a ``Host`` header names ``localhost`` or a loopback address, with or without a port."""
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    if name is None:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_middleware() -> Middleware:
    """Reject requests whose ``Host`` is not a loopback name, with 421; installed when no token is configured.

    Against DNS rebinding: a page on another site can point its own host name at 127.0.0.1 and then call
    this server as a same-origin page would. Its requests still carry that host name in ``Host``, so they
    get 421. With a token configured the check is not needed, because such a page cannot authenticate.
    """

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        # Browsers always send Host, and only a browser page can be steered here by DNS rebinding.
        if host is None or host_allowed(host):
            return await handler(request)
        return json_error(
            421,
            f"Host {host[:100]!r} is not a loopback address or localhost; without web.access_token this server "
            "answers only requests addressed to 127.0.0.1, [::1] or localhost",
            "Host",
        )

    return check_host


def _origin_listed(origin: str, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or origin in allowed


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Return True if a browser page from the request's ``Origin`` may use the feed.

    Requests without ``Origin`` come from programs, not pages, and pass. A page must be served by this
    server or listed in ``web.cors_origins``, so that no other site the operator visits can read the feed.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if _origin_listed(origin, allowed):
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def cors_middleware(settings: WebSettings) -> Middleware:
    """Add CORS headers for the origins in ``web.cors_origins``; with none listed, CORS stays off."""
    allowed = settings.cors_origins

    @web.middleware
    async def add_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not allowed or origin is None or not _origin_listed(origin, allowed):
            return await handler(request)
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
            headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            headers["Access-Control-Max-Age"] = str(_CORS_MAX_AGE_S)
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
        return response

    return add_cors


def redact_query(request: web.BaseRequest) -> str:
    """Return the path and query of ``request`` with the access token replaced by ``***``."""
    url = request.rel_url
    if TOKEN_PARAMETER not in url.query:
        return str(url)
    query = [(key, "***" if key == TOKEN_PARAMETER else value) for key, value in url.query.items()]
    return str(url.with_query(query))


class RedactingAccessLogger(AbstractAccessLogger):
    """An access log line per request that never contains the access token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs',
            request.remote,
            request.method,
            redact_query(request),
            response.status,
            response.body_length,
            time,
        )
