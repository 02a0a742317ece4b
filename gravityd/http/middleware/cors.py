"""Cors: what pages of other origins may call (the table's `cors` routes), and from where."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from gravityd.http.errors import ApiError
from gravityd.http.routes import Handler, PathSet


class Cors:
    """Preflights answered here (no route takes OPTIONS); other answers of a CORS route get
    Access-Control-Allow-Origin when the origin is allowed. Never /admin/*, /metrics or the
    explorer page: the table marks none of them."""

    __middleware_version__ = 1  # aiohttp: a new-style middleware (request, handler)

    def __init__(self, origins: list[str], cors_paths: Iterable[str]) -> None:
        self.origins = origins
        self.any_origin = "*" in origins
        self.paths = PathSet(cors_paths)  # matched on the path: a preflight has no route

    def allowed(self, origin: str) -> str | None:
        if self.any_origin:
            return "*"
        return origin if origin in self.origins else None

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in self.paths:
            return await handler(request)
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return self.preflight(origin)
        response = await handler(request)
        if origin:
            allowed = self.allowed(origin)
            if allowed:
                response.headers["Access-Control-Allow-Origin"] = allowed
                # A page of another origin reads no header unless told it may: the client's
                # backoff must see Retry-After on 429 and 503.
                response.headers["Access-Control-Expose-Headers"] = "Retry-After"
                if allowed != "*":
                    response.headers["Vary"] = "Origin"
        return response

    def preflight(self, origin: str | None) -> web.Response:
        allowed = self.allowed(origin) if origin else None
        if not allowed:
            return ApiError(
                403, "cors_origin_not_allowed", "this origin may not call gravityd"
            ).response()
        headers = {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Authorization",
            "Access-Control-Max-Age": "600",
        }
        if allowed != "*":
            headers["Vary"] = "Origin"
        return web.Response(status=204, headers=headers)
