"""The ceilings: a bare aiohttp POST handler that only parses the event with orjson, and a bare
GET that serialises a fixed neighbors answer (argv[2], a JSON file; default []) per request."""

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


ANSWER: object = []


async def bare_get(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(ANSWER), content_type="application/json")


def main() -> None:
    """Runs on the loop the daemon would (GRAVITYD_EVENT_LOOP, as `gravityd serve` reads it),
    so the ceiling and our figure share it."""
    global ANSWER
    import os

    from gravityd.commands.cli import install_event_loop

    install_event_loop(os.environ.get("GRAVITYD_EVENT_LOOP", "auto"))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "rb") as f:
            ANSWER = orjson.loads(f.read())
    app = web.Application()
    app.router.add_post("/event", bare_event)
    app.router.add_post("/events", bare_event)
    app.router.add_get("/tracks/{id}/gravity_neighbors", bare_get)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
