"""POST /rank: the radio's candidates re-ranked with the live graph."""

from __future__ import annotations

import orjson
from aiohttp import web

from gravityd.core.events import EventError
from gravityd.core.ranking import validate_rank_request
from gravityd.http.errors import ApiError, event_error, json_response
from gravityd.http.keys import SERVICE
from gravityd.http.params import read_gate, read_json_body


async def post_rank(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    body = await read_json_body(request, svc.config.max_batch_bytes)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    try:
        req = validate_rank_request(obj, svc.config.max_rank_pool)
    except EventError as exc:
        status = 413 if exc.code == "pool_too_large" else 400
        raise event_error(exc, status) from None
    in_body = obj.get("min_cursor")
    if in_body is not None and request.query.get("min_cursor") is not None:
        raise ApiError(
            400,
            "invalid_min_cursor",
            "give min_cursor in the query or the body, not both",
            "min_cursor",
        )
    cursor = await read_gate(request, in_body)
    return json_response({"ranked": svc.rank(req)}, headers=cursor)
