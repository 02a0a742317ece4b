"""The contract's error shape, `{"error": {"code", "message", "field"?}}`, and the JSON answer.

Handlers and middleware raise `ApiError`; the error middleware turns it (and aiohttp's own
HTTP errors) into an answer, so no code path writes an error body by hand.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gravityd.core.events import EventError

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    hdrs = JSON_HEADERS if headers is None else {**JSON_HEADERS, **headers}
    return web.Response(body=orjson.dumps(obj), status=status, headers=hdrs)


class ApiError(Exception):
    """A client error with the contract's error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers
        self.close = close  # the connection is in an unknown state (half-read body): drop it
        self.extra = extra

    def response(self) -> web.Response:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        resp = json_response({"error": err, **self.extra}, self.status, self.headers)
        if self.close:
            resp.force_close()
        return resp


def event_error(exc: EventError, status: int = 400) -> ApiError:
    """A core validation error as an answer: the core knows the code, the field and why."""
    return ApiError(status, exc.code, exc.message, exc.field)


def log_unavailable(exc: Exception) -> ApiError:
    """The log refused a write or a read: retryable, nothing acknowledged was lost."""
    return ApiError(503, "log_unavailable", str(exc), headers={"Retry-After": "1"})


def http_error(exc: web.HTTPException) -> ApiError:
    """aiohttp's own answers (404, 405, 413...) in the contract's shape."""
    return ApiError(exc.status, HTTP_CODES.get(exc.status, "http_error"), exc.reason)


class ProtocolErrorFilter(logging.Filter):
    """aiohttp logs every malformed request (a header too long, garbage on the port) at ERROR
    with a traceback: anyone on the internet could flood the logs that way. Such a record
    becomes one WARNING line naming the error, no traceback. The client still gets aiohttp's
    plain-text 400: those requests never reach the application."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
            record.error = f"{exc.code} {exc.message}".strip()[:200]
        return True


PROTOCOL_FILTER = ProtocolErrorFilter()


def quiet_protocol_errors() -> None:
    """Install the filter on aiohttp's server logger, once per process."""
    server_log = logging.getLogger("aiohttp.server")
    if PROTOCOL_FILTER not in server_log.filters:
        server_log.addFilter(PROTOCOL_FILTER)
