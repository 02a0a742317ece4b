"""The route table: every route of the API, declared once.

The router (`app.create_app`), the OpenAPI paths (`openapi.build_spec`) and the middleware's
sets (reads that carry Gravityd-Cursor, CORS, rate limit, probes the guard leaves alone, the
other role's paths) are all derived from `ROUTES`. A route added here is routed, documented
and guarded alike; nothing else lists routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gravityd.config import Config
from gravityd.http import assets, operations
from gravityd.http.auth import Handler
from gravityd.http.handlers import admin, galaxies, ingest, ops, radio, rank, tracks

__all__ = ["ROUTES", "Handler", "PathSet", "Route", "role_paths", "served"]
ROLES = ("all", "writer", "replica")
WRITER = frozenset({"all", "writer"})  # appends to the log
READER = frozenset({"all", "replica"})  # holds a graph
EVERY = frozenset(ROLES)


@dataclass(frozen=True)
class Route:
    """One (method, path): who serves it, how it is guarded, how it is documented.

    reads: the answer reflects the graph, so the route takes min_cursor (its handler calls
        `params.read_gate`), documents it, and every answer, errors included, carries
        Gravityd-Cursor.
    """

    method: str
    path: str
    handler: Handler
    doc: Callable[[Config], dict[str, Any]]  # the OpenAPI operation, see operations.py
    roles: frozenset[str]
    reads: bool = False
    min_cursor_in_body: bool = False  # also a JSON body field (POST /rank)
    admin: bool = False  # behind auth.admin_only; never CORS
    cors: bool = False  # pages of other origins may call it
    rate_limited: bool = False  # per-client token bucket
    capped: bool = True  # False for probes: they answer a saturated daemon

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


ROUTES: tuple[Route, ...] = (
    # ingest
    Route("POST", "/event", ingest.post_event, operations.post_event, WRITER,
          cors=True, rate_limited=True),
    Route("POST", "/events", ingest.post_events, operations.post_events, WRITER,
          cors=True, rate_limited=True),
    # tracks and rank (/tracks/top before /tracks/{id}: the router takes the first match)
    Route("GET", "/tracks/top", tracks.get_top_tracks, operations.get_top_tracks, READER,
          reads=True, cors=True),
    Route("GET", "/tracks/{id}", tracks.get_track, operations.get_track, READER,
          reads=True, cors=True),
    Route("GET", "/tracks/{id}/gravity_neighbors", tracks.get_neighbors,
          operations.get_neighbors, READER, reads=True, cors=True),
    Route("POST", "/rank", rank.post_rank, operations.post_rank, READER,
          reads=True, min_cursor_in_body=True, cors=True),
    # the whole graph: galaxies and routes
    Route("GET", "/galaxies", galaxies.get_galaxies, operations.get_galaxies, READER,
          reads=True, cors=True),
    Route("GET", "/galaxies/{galaxy}", galaxies.get_galaxy, operations.get_galaxy, READER,
          reads=True, cors=True),
    Route("GET", "/route", galaxies.get_route, operations.get_route, READER,
          reads=True, cors=True),
    # probes
    Route("GET", "/healthz", ops.healthz, operations.healthz, EVERY, capped=False),
    Route("GET", "/readyz", ops.readyz, operations.readyz, EVERY, capped=False),
    Route("GET", "/metrics", ops.metrics, operations.metrics, EVERY, capped=False),
    # figures
    Route("GET", "/stats", radio.get_stats, operations.get_stats, READER,
          reads=True, cors=True),
    Route("GET", "/radio/report", radio.get_radio_report, operations.get_radio_report,
          READER, reads=True, cors=True),
    # admin
    Route("POST", "/admin/fold", admin.admin_fold, operations.admin_fold, READER, admin=True),
    Route("POST", "/admin/snapshot", admin.admin_snapshot, operations.admin_snapshot, READER,
          admin=True),
    # a takedown is an entry in the log: the process that appends takes it
    Route("PUT", "/admin/tracks/{id}/block", admin.admin_block, operations.admin_block,
          WRITER, admin=True),
    Route("DELETE", "/admin/tracks/{id}/block", admin.admin_block, operations.admin_unblock,
          WRITER, admin=True),
    # read your takedowns: PUT on the writer, list here
    Route("GET", "/admin/blocks", admin.admin_blocks, operations.admin_blocks, READER,
          reads=True, admin=True),
    # documents and files
    Route("GET", "/openapi.json", ops.openapi, operations.openapi, EVERY),
    Route("GET", "/", assets.index, operations.index, READER),
    Route("GET", "/client.js", assets.client_js, operations.client_js, READER, cors=True),
    Route("GET", "/static/{name}", assets.static_file, operations.static_file, READER),
)  # fmt: skip


def served(role: str) -> list[Route]:
    """The routes a process of this role serves, in table order."""
    return [r for r in ROUTES if role in r.roles]


def role_paths(role: str) -> set[str]:
    """The documented paths a process of this role serves."""
    return {r.path for r in served(role)}


class PathSet:
    """Concrete request paths matching some route templates ({x}: one path segment).

    For decisions taken before (or without) routing, such as a CORS preflight, which the
    router answers 405 since no route takes OPTIONS.
    """

    def __init__(self, templates: Iterable[str]) -> None:
        templates = sorted(set(templates))
        self.exact = frozenset(t for t in templates if "{" not in t)
        parts = [re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(t)) for t in templates if "{" in t]
        self._pattern = re.compile("|".join(parts) or "(?!)")

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (
            path in self.exact or self._pattern.fullmatch(path) is not None
        )


def paths_where(flag: Callable[[Route], bool], routes: Iterable[Route] = ROUTES) -> PathSet:
    return PathSet(r.path for r in routes if flag(r))
