"""RequestTimer: one latency observation per request, labelled by route, method and status."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gravityd.daemon.metrics import Metrics
from gravityd.http.routes import Handler


class RequestTimer:
    """Outermost, so the observation covers every other layer and every answer."""

    __middleware_version__ = 1  # aiohttp: a new-style middleware (request, handler)

    def __init__(self, metrics: Metrics) -> None:
        self.histogram = metrics.request_seconds
        self._children: dict[tuple[Any, str, int], Any] = {}  # labels() costs; cache them

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        resource = request.match_info.route.resource
        key = (resource, request.method, response.status)
        child = self._children.get(key)
        if child is None:
            route = resource.canonical if resource is not None else "unmatched"
            child = self.histogram.labels(route, request.method, str(response.status))
            self._children[key] = child
        child.observe(time.perf_counter() - started)
        return response
