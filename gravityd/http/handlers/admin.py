"""/admin/*: fold, snapshot and takedowns. The route table puts every one behind
`gravityd.http.auth.admin_only`, so no handler here checks who is calling."""

from __future__ import annotations

import time

from aiohttp import web

from gravityd.daemon.service import NotSnapshotter
from gravityd.http.errors import ApiError, json_response, log_unavailable
from gravityd.http.keys import SERVICE
from gravityd.http.params import read_gate, track_param
from gravityd.log import LogError


async def admin_fold(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    started = time.perf_counter()
    try:
        cursor = await svc.fold_pending()
    except LogError as exc:
        raise log_unavailable(exc) from None
    return json_response(
        {
            "cursor": cursor,
            "seconds": round(time.perf_counter() - started, 6),
            **{k: v for k, v in svc.status().items() if k != "cursor"},
        }
    )


async def admin_snapshot(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    if not svc.ready:
        raise ApiError(503, "not_ready", "the graph is still loading", headers={"Retry-After": "1"})
    try:
        result = await svc.snapshot_now()
    except NotSnapshotter as exc:
        raise ApiError(409, "not_snapshotter", str(exc)) from None
    except OSError as exc:
        raise ApiError(
            503,
            "snapshot_failed",
            f"the snapshot could not be written: {exc}",
            headers={"Retry-After": "5"},
        ) from None
    return json_response(result)


async def admin_block(request: web.Request) -> web.Response:
    """PUT blocks, DELETE unblocks; both idempotent, both answer once the change is durable."""
    track_id = track_param(request)
    try:
        result = await request.app[SERVICE].set_block(track_id, request.method == "PUT")
    except LogError as exc:
        raise log_unavailable(exc) from None
    return json_response(result)


async def admin_blocks(request: web.Request) -> web.Response:
    cursor = await read_gate(request)  # read your takedowns: PUT on the writer, list here
    return json_response(request.app[SERVICE].list_blocks(), headers=cursor)
