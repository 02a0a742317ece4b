"""The map's whole-graph reads: GET /galaxies, /galaxies/{galaxy} and /route."""

from __future__ import annotations

from aiohttp import web

from gravityd.core.events import canonical_uuid
from gravityd.http.errors import ApiError, json_response
from gravityd.http.keys import SERVICE
from gravityd.http.params import int_param, read_gate

MAX_GALAXIES_LIMIT = 1000  # galaxies per page, and tracks per galaxy page


async def get_galaxies(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 50, 1, MAX_GALAXIES_LIMIT)
    cursor = await read_gate(request)
    return json_response(await request.app[SERVICE].galaxies_page(limit), headers=cursor)


async def get_galaxy(request: web.Request) -> web.Response:
    raw = request.match_info["galaxy"]
    if not raw.isdecimal() or len(raw) > 9:
        raise ApiError(400, "invalid_galaxy", "galaxy must be a non-negative integer", "galaxy")
    limit = int_param(request, "limit", 100, 1, MAX_GALAXIES_LIMIT)
    cursor = await read_gate(request)
    page = await request.app[SERVICE].galaxy_page(int(raw), limit)
    if page is None:
        raise ApiError(404, "unknown_galaxy", f"no galaxy {int(raw)}", "galaxy")
    return json_response(page, headers=cursor)


async def get_route(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    ends = []
    for name in ("from", "to"):
        raw = request.query.get(name)
        if raw is None:
            raise ApiError(400, "invalid_track_id", f"{name} is required", name)
        track_id = canonical_uuid(raw)
        if track_id is None:
            raise ApiError(400, "invalid_track_id", f"{name} must be a track id (a UUID)", name)
        ends.append(track_id)
    max_len = int_param(request, "max_len", 12, 1, svc.config.galaxies.route_max_len)
    cursor = await read_gate(request)
    route = await svc.route(ends[0], ends[1], max_len)
    if route is None:
        raise ApiError(404, "no_route", f"no route within {max_len} hops", "to")
    return json_response(route, headers=cursor)
