"""The graph's reads of tracks: GET /tracks/top, /tracks/{id}, /tracks/{id}/gravity_neighbors."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from gravityd.http.errors import JSON_HEADERS, ApiError, json_response
from gravityd.http.keys import SERVICE
from gravityd.http.params import bool_param, int_param, read_gate, track_param, with_meta


async def get_neighbors(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    track_id = track_param(request)
    limit = int_param(request, "limit", 10, 1, svc.config.max_neighbors_limit)
    direction = request.query.get("direction", "out")
    if direction not in ("out", "in", "both"):
        raise ApiError(400, "invalid_direction", "direction must be out, in or both", "direction")
    raw_min = request.query.get("min_score", "0")
    try:
        min_score = float(raw_min)
    except ValueError:
        min_score = -1.0
    if not 0.0 <= min_score <= 1.0:
        raise ApiError(
            400, "invalid_min_score", "min_score must be a number in [0, 1]", "min_score"
        )
    rejected = bool_param(request, "rejected")
    meta = with_meta(request)
    cursor = await read_gate(request)
    out = await svc.neighbors(
        track_id,
        limit=limit,
        direction=direction,
        min_score=min_score,
        rejected=rejected,
        with_meta=meta,
        now=int(time.time()),  # weights decay by ~3e-7 a second: one answer per second
    )
    return web.Response(body=orjson.dumps(out), headers={**JSON_HEADERS, **cursor})


async def get_track(request: web.Request) -> web.Response:
    track_id = track_param(request)
    cursor = await read_gate(request)
    return json_response(await request.app[SERVICE].track(track_id), headers=cursor)


async def get_top_tracks(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    limit = int_param(request, "limit", 20, 1, svc.config.max_neighbors_limit)
    by = request.query.get("by", "lanes")
    if by not in ("lanes", "centrality"):
        raise ApiError(400, "invalid_by", "by must be lanes or centrality", "by")
    cursor = await read_gate(request)
    return json_response(await svc.top_tracks(limit, by=by), headers=cursor)
