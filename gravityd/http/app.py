"""The aiohttp application: the route table wired to a service. Wiring only; the handlers,
the middleware and the document each live in their own module."""

from __future__ import annotations

import orjson
from aiohttp import web

from gravityd.daemon.service import Gravityd
from gravityd.http.assets import install_assets
from gravityd.http.auth import admin_only, is_loopback
from gravityd.http.errors import ApiError, json_response, quiet_protocol_errors
from gravityd.http.keys import OPENAPI, SERVICE
from gravityd.http.middleware import middlewares
from gravityd.http.openapi import build_spec
from gravityd.http.routes import ROUTES, Route, served

__all__ = ["SERVICE", "ApiError", "create_app", "is_loopback", "json_response"]


def add_routes(app: web.Application, svc: Gravityd, routes: tuple[Route, ...] = ROUTES) -> None:
    """Route the table's entries this role serves; admin handlers behind auth.admin_only."""
    for route in served(svc.role):
        handler = route.handler
        if route.admin:
            handler = admin_only(handler, svc.config.admin_token)
        if route.method == "GET":
            app.router.add_get(route.path, handler)  # and HEAD
        else:
            app.router.add_route(route.method, route.path, handler)


def create_app(svc: Gravityd, *, manage_service: bool = True) -> web.Application:
    """The aiohttp application around a service; it starts and closes the service with itself."""
    cfg = svc.config
    quiet_protocol_errors()
    app = web.Application(
        middlewares=middlewares(svc),
        client_max_size=max(cfg.max_batch_bytes, cfg.max_event_bytes) + 1,
        handler_args={
            # Also closes a connection that never finishes its headers (slowloris).
            "keepalive_timeout": cfg.keepalive_timeout_s,
            # The request line past max_url_bytes is refused by aiohttp's parser (400); up
            # to twice it gets there, and the guard answers 414 in the contract's shape.
            "max_line_size": 2 * cfg.max_url_bytes + 64,
            "max_field_size": cfg.max_header_bytes,
            "max_headers": cfg.max_headers,
        },
    )
    app[SERVICE] = svc
    app[OPENAPI] = orjson.dumps(build_spec(cfg))
    if svc.reads:
        install_assets(app)
    add_routes(app, svc)
    if manage_service:

        async def _start(app: web.Application) -> None:
            await svc.start()

        async def _stop(app: web.Application) -> None:
            await svc.close()

        app.on_startup.append(_start)
        app.on_cleanup.append(_stop)
    return app
