"""POST /event and POST /events: validate, append to the log, answer the log positions."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from gravityd.core.events import EventError, parse_batch, validate_event
from gravityd.http.errors import ApiError, event_error, json_response, log_unavailable
from gravityd.http.keys import SERVICE
from gravityd.http.params import read_json_body
from gravityd.log import LogError

VALIDATE_SLICE = 100  # events validated between two yields to the event loop


async def post_event(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    cfg = svc.config
    body = await read_json_body(request, cfg.max_event_bytes)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        svc.reject("invalid_json")
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    received = time.time()
    try:
        event = validate_event(obj, cfg.limits, received)
    except EventError as exc:
        svc.reject(exc.code)
        raise event_error(exc) from None
    try:
        (done,) = await svc.ingest([event], received)
    except LogError as exc:
        raise log_unavailable(exc) from None
    return json_response(
        {"accepted": 1, "id": done.id, "event_id": done.event_id, "duplicate": done.duplicate}, 202
    )


async def post_events(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    cfg = svc.config
    body = await read_json_body(request, cfg.max_batch_bytes)
    try:
        items, bad = parse_batch(body, request.content_type == "application/x-ndjson")
    except EventError as exc:
        svc.reject(exc.code)
        raise event_error(exc) from None
    if not items:
        raise ApiError(400, "empty_batch", "the batch holds no events")
    if len(items) > cfg.max_batch_events:
        raise ApiError(
            413,
            "too_many_events",
            f"a batch holds at most {cfg.max_batch_events} events, got {len(items)}",
        )
    rejected = [{"index": i, "error": e.to_dict()} for i, e in bad]
    bad_index = {i for i, _ in bad}
    valid = []
    received = time.time()
    limits = cfg.limits
    for i, obj in enumerate(items):
        if i in bad_index:
            continue
        try:
            valid.append(validate_event(obj, limits, received))
        except EventError as exc:
            rejected.append({"index": i, "error": exc.to_dict()})
        if i % VALIDATE_SLICE == VALIDATE_SLICE - 1:
            await asyncio.sleep(0)  # a 5,000-event batch must not hold reads for 10 ms
    if rejected:
        rejected.sort(key=lambda r: r["index"])
        for r in rejected:
            svc.reject(r["error"]["code"])
    if not valid:
        raise ApiError(
            400, "no_valid_events", "no event in the batch is valid", accepted=0, rejected=rejected
        )
    try:
        done = await svc.ingest(valid, received)
    except LogError as exc:
        raise log_unavailable(exc) from None
    duplicates = sum(1 for d in done if d.duplicate)
    return json_response(
        {
            "accepted": len(done),
            "duplicates": duplicates,
            "rejected": rejected,
            "first_id": done[0].id,
            "last_id": max(d.id for d in done),
        },
        202,
    )
