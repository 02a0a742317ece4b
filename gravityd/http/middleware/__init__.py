"""The layers every request passes, outermost first; each a class configured at construction.

    RequestTimer  one latency observation per request (route, method, status)
    CursorHeader  Gravityd-Cursor on every answer of a read route, errors included
    Cors          preflights, and Access-Control-Allow-Origin on the routes pages may call
    ErrorAnswers  ApiError, aiohttp's HTTP errors and crashes in the contract's error shape
    Guard         URL length, requests in flight, per-client rate

Admin authentication is not a layer: the route table wraps the admin handlers themselves
(auth.admin_only), so other routes pay nothing for it.
"""

from __future__ import annotations

from typing import Any

from gravityd.daemon.service import Gravityd
from gravityd.http.middleware.cors import Cors
from gravityd.http.middleware.cursor import CursorHeader
from gravityd.http.middleware.errors import ErrorAnswers
from gravityd.http.middleware.guard import Guard
from gravityd.http.middleware.timing import RequestTimer
from gravityd.http.routes import ROUTES, Route, served

__all__ = ["Cors", "CursorHeader", "ErrorAnswers", "Guard", "RequestTimer", "middlewares"]


def middlewares(svc: Gravityd, routes: tuple[Route, ...] = ROUTES) -> list[Any]:
    """The stack for this service's role, configured from the route table."""
    mine = served(svc.role)
    stack: list[Any] = [RequestTimer(svc.metrics)]
    if svc.reads:
        stack.append(CursorHeader(svc, [r.path for r in mine if r.reads]))
    stack += [
        Cors(svc.config.cors_origins, [r.path for r in routes if r.cors]),
        ErrorAnswers(svc.role, routes),
        Guard(svc.config, svc.metrics, routes),
    ]
    return stack
