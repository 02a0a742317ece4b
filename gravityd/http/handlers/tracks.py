"""The graph's reads of tracks: GET /tracks/top, /tracks/{id}, /tracks/{id}/gravity_neighbors."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from gravityd.http.errors import JSON_HEADERS, ApiError, json_response
from gravityd.http.keys import SERVICE
from gravityd.http.params import bool_param, int_param, read_gate, track_param, with_meta


class AnswerCache:
    """Serialised neighbors answers, served again while they are exact.

    An answer depends on the track's lanes, the takedowns (the service's lanes_version) and the
    read time through decay. Reads take the time in whole seconds (weights move by ~3e-7 of
    themselves in a second at a 30-day half-life), so a popular track's answer is built and
    serialised once per second or per fold touching it, whichever comes first. Bounded; the
    oldest entries go first.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: dict[tuple, tuple[Any, int, bytes]] = {}

    def get(self, key: tuple, version: Any, second: int) -> bytes | None:
        hit = self._items.get(key)
        if hit is not None and hit[1] == second and hit[0] == version:
            return hit[2]
        return None

    def put(self, key: tuple, version: Any, second: int, body: bytes) -> None:
        items = self._items
        if len(items) >= self.size:
            del items[next(iter(items))]
        items[key] = (version, second, body)


ANSWERS: web.AppKey[AnswerCache] = web.AppKey("answers", AnswerCache)


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
    second = int(time.time())
    key = (track_id, limit, direction, min_score, rejected)
    cache = request.app[ANSWERS]
    version = None if meta else svc.lanes_version(track_id)
    body = cache.get(key, version, second) if version is not None else None
    if body is None:
        out = await svc.neighbors(
            track_id,
            limit=limit,
            direction=direction,
            min_score=min_score,
            rejected=rejected,
            with_meta=meta,
            now=second,
        )
        body = orjson.dumps(out)
        if not meta:  # titles come from the catalogue, which changes on its own
            version = svc.lanes_version(track_id)  # the read just filled the lanes cache
            if version is not None:
                cache.put(key, version, second, body)
    return web.Response(body=body, headers={**JSON_HEADERS, **cursor})


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
