"""What an application holds for its handlers: typed keys, so a handler never guesses."""

from __future__ import annotations

from aiohttp import web

from gravityd.daemon.service import Gravityd

SERVICE: web.AppKey[Gravityd] = web.AppKey("service", Gravityd)
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi", bytes)  # the document, serialised once
