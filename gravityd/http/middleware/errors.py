"""ErrorAnswers: whatever goes wrong below is answered in the contract's error shape."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web

from gravityd.http.errors import ApiError, http_error
from gravityd.http.routes import WRITER, Handler, PathSet, Route

log = logging.getLogger("gravityd.api")


class ErrorAnswers:
    """ApiError as raised; aiohttp's own answers (404, 405, 413) reshaped, a 404 for a path the
    other role serves saying so (wrong_role); anything else a logged 500 with no details."""

    __middleware_version__ = 1  # aiohttp: a new-style middleware (request, handler)

    def __init__(self, role: str, routes: Iterable[Route]) -> None:
        routes = list(routes)
        self.role = role
        # The paths only another role serves: a client sent to the wrong process is told so.
        mine = {r.path for r in routes if role in r.roles}
        self.elsewhere = PathSet({r.path for r in routes} - mine)
        writes = role in WRITER
        self.other = "a replica (--role replica)" if writes else "a writer (--role writer or all)"

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException as exc:
            return self.http_answer(exc, request).response()
        except Exception:
            log.exception("request failed", extra={"path": request.path, "method": request.method})
            return ApiError(500, "internal_error", "internal error").response()

    def http_answer(self, exc: web.HTTPException, request: web.Request) -> ApiError:
        if exc.status == 404 and request.path in self.elsewhere:
            return ApiError(
                404,
                "wrong_role",
                f"this gravityd is a {self.role}: {request.path} is served by {self.other}",
            )
        return http_error(exc)
