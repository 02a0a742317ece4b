"""CursorHeader: every answer of a read route says which log position the graph reflects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from aiohttp import web

from gravityd.http.params import CURSOR_HEADER
from gravityd.http.routes import Handler


class HasReadCursor(Protocol):
    @property
    def read_cursor(self) -> int:
        """The position every read answer reflects (the kept lanes' cursor)."""
        ...


class CursorHeader:
    """A successful read sets the header itself (params.read_gate); answers that never
    reached the graph (a 400, a refusal by the guard) get it here, so a client always knows
    where the graph is."""

    __middleware_version__ = 1  # aiohttp: a new-style middleware (request, handler)

    def __init__(self, service: HasReadCursor, read_paths: Iterable[str]) -> None:
        self.service = service
        self.read_paths = frozenset(read_paths)  # route templates, matched after routing

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in self.read_paths:
            response.headers.setdefault(CURSOR_HEADER, str(self.service.read_cursor))
        return response
