"""Reading a request: bodies, query parameters, path ids and the read-your-writes gate.

Every parser answers a bad input with an `ApiError` naming the field, never a 500.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gravityd.core.events import canonical_uuid
from gravityd.http.errors import ApiError
from gravityd.http.keys import SERVICE

JSON_TYPES = frozenset(
    {"application/json", "application/x-ndjson", "text/plain", "application/octet-stream", ""}
)
CURSOR_HEADER = "Gravityd-Cursor"
MAX_POSITION = 2**63 - 1
_BOOLS = {"1": True, "true": True, "0": False, "false": False}


async def read_json_body(request: web.Request, limit: int) -> bytes:
    """The raw body, with the content-type and size rules every body-taking route shares."""
    if request.content_type not in JSON_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json, application/x-ndjson or text/plain",
        )
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    try:
        if request.content.is_eof():  # the whole body has arrived: no timer to arm and cancel
            body = await request.read()
        else:
            async with asyncio.timeout(request.app[SERVICE].config.body_timeout_s):
                body = await request.read()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", "the request body was not sent in time", close=True
        ) from None
    if len(body) > limit:
        raise ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    if not body.strip():
        raise ApiError(400, "empty_body", "the body is empty")
    return body


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"invalid_{name}", f"{name} must be between {lo} and {hi}", name)
    return value


def bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "0").lower()
    if raw not in _BOOLS:
        raise ApiError(400, f"invalid_{name}", f"{name} must be 1/0 or true/false", name)
    return _BOOLS[raw]


def track_param(request: web.Request) -> str:
    """The `{id}` path part as a canonical track id."""
    track_id = canonical_uuid(request.match_info["id"])
    if track_id is None:
        raise ApiError(400, "invalid_track_id", "the track id must be a UUID", "id")
    return track_id


def with_meta(request: web.Request) -> bool:
    raw = request.query.get("with")
    if raw is None or raw == "":
        return False
    if raw != "meta":
        raise ApiError(400, "invalid_with", "with may only be meta", "with")
    return True


def parse_min_cursor(raw: Any, in_body: bool = False) -> int | None:
    """min_cursor from a query string or a JSON body (a JSON integer there): a position,
    0..2^63-1; None if absent."""
    if raw is None:
        return None
    if isinstance(raw, str) and not in_body:
        text = raw.strip()
        value = int(text) if text.isascii() and text.isdigit() else -1
    elif type(raw) is int:
        value = raw
    else:
        value = -1
    if not 0 <= value <= MAX_POSITION:
        raise ApiError(
            400,
            "invalid_min_cursor",
            "min_cursor must be a log position: an integer from 0 to 2^63-1",
            "min_cursor",
        )
    return value


async def read_gate(request: web.Request, raw: Any = None) -> dict[str, str]:
    """Read your writes: wait until the graph has folded through min_cursor (if given), else a
    503 not_caught_up; answer the header saying which cursor the answer reflects.

    Only routes marked `reads` in the route table may call it: the table is what documents
    min_cursor and puts Gravityd-Cursor on their error answers too.
    """
    svc = request.app[SERVICE]
    if raw is None:
        position = parse_min_cursor(request.query.get("min_cursor"))
    else:
        position = parse_min_cursor(raw, in_body=True)
    if position is not None and svc.read_cursor < position:
        wait_s = svc.config.read_wait_ms / 1000
        if not await svc.caught_up(position, wait_s):
            svc.metrics.read_waits.labels("not_caught_up").inc()
            raise ApiError(
                503,
                "not_caught_up",
                f"the graph reflects the log through {svc.read_cursor}, not yet {position}"
                f" (waited {svc.config.read_wait_ms:g} ms)",
                "min_cursor",
                headers={"Retry-After": "1"},
            )
        svc.metrics.read_waits.labels("caught_up").inc()
    return {CURSOR_HEADER: str(svc.read_cursor)}
