"""Errors of the web server and the JSON error body every endpoint under /api and /ws uses."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from whaled.errors import WhaledError
from whaled.log import http_logger as logger

__all__ = ["ApiParameterError", "WebStartError", "json_error", "unexpected_error_middleware"]


class WebStartError(WhaledError, RuntimeError):
    """The web server cannot start: an unsafe bind or an address that cannot be bound."""

    def __init__(self, host: str, port: int, problem: str) -> None:
        self.host = host
        self.port = port
        super().__init__(f"web server on {host}:{port} cannot start: {problem}")


class ApiParameterError(WhaledError, ValueError):
    """A request parameter is invalid; the response names it."""

    def __init__(self, parameter: str, message: str, *, status: int = 400) -> None:
        self.parameter = parameter
        self.status = status
        super().__init__(message)


def json_error(
    status: int,
    message: str,
    parameter: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Build ``{"error": {"message": ..., "parameter": ...}}`` with ``status``."""
    return web.json_response({"error": {"message": message, "parameter": parameter}}, status=status, headers=headers)


@web.middleware
async def unexpected_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an exception no handler expected into a JSON 500 that names neither the error nor its values.

    The message and traceback go to the log only, because they may contain stored data or settings.
    """
    try:
        return await handler(request)
    except (web.HTTPException, ConnectionResetError):
        # Intended responses, and a peer that went away: aiohttp handles both.
        raise
    except Exception:
        logger.exception("Request %s %s failed", request.method, request.path)
        return json_error(500, "internal server error; the server log has the details")
