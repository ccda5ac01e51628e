"""The web server: the live feed (/ws), the JSON API (/api/v1), the dashboard, /metrics and /healthz."""

from whaled.web.context import WebContext
from whaled.web.errors import WebStartError
from whaled.web.server import WebServer, create_app, start_web

__all__ = ["WebContext", "WebServer", "WebStartError", "create_app", "start_web"]
