"""What operators and their tools call: probes, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from gravityd.daemon.metrics import CONTENT_TYPE_LATEST
from gravityd.http.errors import JSON_HEADERS, json_response
from gravityd.http.keys import OPENAPI, SERVICE


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    status = svc.status()
    return json_response(status, 200 if svc.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], headers=JSON_HEADERS)
