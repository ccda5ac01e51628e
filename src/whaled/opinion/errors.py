"""Errors raised by the Opinion client. Each names the endpoint and never contains the API key."""

from __future__ import annotations

from whaled.errors import WhaledError

__all__ = [
    "OpinionAPIError",
    "OpinionConnectionError",
    "OpinionError",
    "OpinionHTTPError",
    "OpinionPaginationError",
    "OpinionPayloadError",
    "OpinionTimeoutError",
]


class OpinionError(WhaledError):
    """A request to Opinion failed. ``transient`` is true when a retry may succeed."""

    transient = False

    def __init__(self, endpoint: str, detail: str) -> None:
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"Opinion {endpoint}: {detail}")


class OpinionHTTPError(OpinionError):
    """The server returned a non-2xx HTTP status."""

    def __init__(
        self,
        endpoint: str,
        status: int,
        *,
        code: int | None = None,
        message: str = "",
        retry_after: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.transient = status == 429 or status >= 500
        detail = f"HTTP {status}"
        if code is not None:
            detail += f", error code {code}"
        if message:
            detail += f": {message}"
        super().__init__(endpoint, detail)


class OpinionAPIError(OpinionError):
    """The envelope carried a non-zero error code (``errno`` or ``code``), even with HTTP 200."""

    def __init__(self, endpoint: str, status: int, code: int, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        # The API repeats HTTP semantics in its own codes: 429 and 5xx there are as transient as in HTTP.
        self.transient = code == 429 or 500 <= code < 600
        super().__init__(endpoint, f"HTTP {status}, error code {code}: {message or '(no message)'}")


class OpinionTimeoutError(OpinionError, TimeoutError):
    """Connecting or reading timed out."""

    transient = True


class OpinionConnectionError(OpinionError, ConnectionError):
    """The connection failed or the server closed it before a full response.

    ``before_send`` is true when the request never reached the server, so that retrying it is safe even
    for a request that is not idempotent.
    """

    transient = True

    def __init__(self, endpoint: str, detail: str, *, before_send: bool = False) -> None:
        self.before_send = before_send
        super().__init__(endpoint, detail)


class OpinionPayloadError(OpinionError, ValueError):
    """The body is not valid JSON or does not match the expected shape."""


class OpinionPaginationError(OpinionError):
    """A list endpoint returned the same page twice in a row, so the rest of the list cannot be trusted."""

    def __init__(self, what: str, page: int) -> None:
        self.page = page
        super().__init__(what, f"page {page} repeats page {page - 1}; the walk stopped and will be retried")
