"""The ceiling for ingest: a bare aiohttp handler that only parses the event with orjson."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def bare_event(request: web.Request) -> web.Response:
    obj = orjson.loads(await request.read())
    return web.Response(
        body=orjson.dumps({"accepted": 1 if obj else 0}),
        status=202,
        content_type="application/json",
    )


async def bare_get(request: web.Request) -> web.Response:
    return web.Response(body=b"[]", content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/event", bare_event)
    app.router.add_post("/events", bare_event)
    app.router.add_get("/tracks/{id}/gravity_neighbors", bare_get)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
