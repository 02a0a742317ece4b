"""The HTTP layer: parse, call the core, serialise. No graph or log logic lives here."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gravityd.core.events import EventError, canonical_uuid, parse_batch, validate_event
from gravityd.core.ranking import validate_rank_request
from gravityd.core.scoreboard import parse_report_query
from gravityd.daemon.metrics import CONTENT_TYPE_LATEST
from gravityd.daemon.service import Gravityd, NotSnapshotter
from gravityd.http.assets import add_static_routes
from gravityd.http.limits import (
    ClientIdentity,
    RateLimiter,
    parse_address,
    parse_networks,
    retry_after,
)
from gravityd.http.openapi import build_spec, role_paths
from gravityd.log import LogError

log = logging.getLogger("gravityd.api")

SERVICE: web.AppKey[Gravityd] = web.AppKey("service", Gravityd)
JSON_TYPES = frozenset(
    {"application/json", "application/x-ndjson", "text/plain", "application/octet-stream", ""}
)
VALIDATE_SLICE = 100  # events validated between two yields to the event loop
CORS_EXACT = frozenset({"/event", "/events", "/rank", "/client.js", "/stats", "/radio/report"})
_BOOLS = {"1": True, "true": True, "0": False, "false": False}
RATE_LIMITED = frozenset({"/event", "/events"})
UNCAPPED = frozenset({"/healthz", "/readyz", "/metrics"})  # probes answer a saturated daemon
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
CURSOR_HEADER = "Gravityd-Cursor"
MAX_POSITION = 2**63 - 1
# The routes whose answer reflects the graph: they take min_cursor and carry Gravityd-Cursor.
READ_ROUTES = frozenset(
    {
        "/tracks/top",
        "/tracks/{id}",
        "/tracks/{id}/gravity_neighbors",
        "/rank",
        "/stats",
        "/admin/blocks",
    }
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A client error with the contract's error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers
        self.close = close  # the connection is in an unknown state (half-read body): drop it
        self.extra = extra

    def response(self) -> web.Response:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        resp = json_response({"error": err, **self.extra}, self.status, self.headers)
        if self.close:
            resp.force_close()
        return resp


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    hdrs = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
    return web.Response(body=orjson.dumps(obj), status=status, headers=hdrs)


def _event_error(exc: EventError, status: int = 400) -> ApiError:
    return ApiError(status, exc.code, exc.message, exc.field)


async def _read_json_body(request: web.Request, limit: int) -> bytes:
    """The raw body, with the content-type and size rules every ingest route shares."""
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


async def post_event(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    cfg = svc.config
    body = await _read_json_body(request, cfg.max_event_bytes)
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
        raise _event_error(exc) from None
    try:
        (done,) = await svc.ingest([event], received)
    except LogError as exc:
        raise ApiError(503, "log_unavailable", str(exc), headers={"Retry-After": "1"}) from None
    return json_response(
        {"accepted": 1, "id": done.id, "event_id": done.event_id, "duplicate": done.duplicate}, 202
    )


async def post_events(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    cfg = svc.config
    body = await _read_json_body(request, cfg.max_batch_bytes)
    try:
        items, bad = parse_batch(body, request.content_type == "application/x-ndjson")
    except EventError as exc:
        svc.reject(exc.code)
        raise _event_error(exc) from None
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
        raise ApiError(503, "log_unavailable", str(exc), headers={"Retry-After": "1"}) from None
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


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
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


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "0").lower()
    if raw not in _BOOLS:
        raise ApiError(400, f"invalid_{name}", f"{name} must be 1/0 or true/false", name)
    return _BOOLS[raw]


def _parse_min_cursor(raw: Any, in_body: bool = False) -> int | None:
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


async def _read_gate(request: web.Request, raw: Any = None) -> dict[str, str]:
    """Read your writes: wait until the graph has folded through min_cursor (if given), else a
    503 not_caught_up; record the cursor the answer reflects for the Gravityd-Cursor header."""
    svc = request.app[SERVICE]
    if raw is None:
        position = _parse_min_cursor(request.query.get("min_cursor"))
    else:
        position = _parse_min_cursor(raw, in_body=True)
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


def _track_param(request: web.Request) -> str:
    track_id = canonical_uuid(request.match_info["id"])
    if track_id is None:
        raise ApiError(400, "invalid_track_id", "the track id must be a UUID", "id")
    return track_id


def _with_meta(request: web.Request) -> bool:
    raw = request.query.get("with")
    if raw is None or raw == "":
        return False
    if raw != "meta":
        raise ApiError(400, "invalid_with", "with may only be meta", "with")
    return True


async def get_neighbors(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    track_id = _track_param(request)
    limit = _int_param(request, "limit", 10, 1, svc.config.max_neighbors_limit)
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
    rejected = _bool_param(request, "rejected")
    with_meta = _with_meta(request)
    cursor = await _read_gate(request)
    out = await svc.neighbors(
        track_id,
        limit=limit,
        direction=direction,
        min_score=min_score,
        rejected=rejected,
        with_meta=with_meta,
        now=int(time.time()),  # weights decay by ~3e-7 a second: one answer per second
    )
    return web.Response(body=orjson.dumps(out), headers={**_JSON_HEADERS, **cursor})


async def get_track(request: web.Request) -> web.Response:
    track_id = _track_param(request)
    cursor = await _read_gate(request)
    return json_response(await request.app[SERVICE].track(track_id), headers=cursor)


async def get_top_tracks(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    limit = _int_param(request, "limit", 20, 1, svc.config.max_neighbors_limit)
    cursor = await _read_gate(request)
    return json_response(await svc.top_tracks(limit), headers=cursor)


async def get_stats(request: web.Request) -> web.Response:
    cursor = await _read_gate(request)
    return json_response(await request.app[SERVICE].stats(), headers=cursor)


async def post_rank(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    body = await _read_json_body(request, svc.config.max_batch_bytes)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    try:
        req = validate_rank_request(obj, svc.config.max_rank_pool)
    except EventError as exc:
        status = 413 if exc.code == "pool_too_large" else 400
        raise _event_error(exc, status) from None
    in_body = obj.get("min_cursor")
    if in_body is not None and request.query.get("min_cursor") is not None:
        raise ApiError(
            400,
            "invalid_min_cursor",
            "give min_cursor in the query or the body, not both",
            "min_cursor",
        )
    cursor = await _read_gate(request, in_body)
    return json_response({"ranked": svc.rank(req)}, headers=cursor)


async def get_radio_report(request: web.Request) -> web.Response:
    """The radio's scoreboard; `until` defaults to the server's clock."""
    svc = request.app[SERVICE]
    try:
        query = parse_report_query(
            request.query, time.time(), svc.config.report, svc.config.max_context_len
        )
    except EventError as exc:
        raise _event_error(exc) from None
    cursor = await _read_gate(request)
    return json_response(await svc.radio_report(query), headers=cursor)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    status = svc.status()
    return json_response(status, 200 if svc.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _is_loopback(remote: str | None) -> bool:
    addr = parse_address(remote)
    return addr is not None and addr.is_loopback


def _require_admin(request: web.Request) -> None:
    token = request.app[SERVICE].config.admin_token
    if token:
        auth = request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise ApiError(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="gravityd"'},
            )
    elif not _is_loopback(request.remote) or _not_local_operator(request):
        raise ApiError(
            403,
            "forbidden",
            "with no admin_token set, admin endpoints answer only local tools, not proxies "
            "or browsers",
        )


# Headers that say a loopback request is not a local operator's: a reverse proxy on the same
# host forwarded it from somebody else, or a web page made the browser send it (CSRF: a page
# on any site can POST to 127.0.0.1 "no-cors" and the browser sends it, answer unread).
_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host")


def _not_local_operator(request: web.Request) -> bool:
    headers = request.headers
    if any(h in headers for h in _PROXY_HEADERS):
        return True
    if "Origin" in headers:
        return True
    site = headers.get("Sec-Fetch-Site")
    return site is not None and site != "none"


async def admin_fold(request: web.Request) -> web.Response:
    _require_admin(request)
    svc = request.app[SERVICE]
    started = time.perf_counter()
    try:
        cursor = await svc.fold_pending()
    except LogError as exc:
        raise ApiError(503, "log_unavailable", str(exc), headers={"Retry-After": "1"}) from None
    return json_response(
        {
            "cursor": cursor,
            "seconds": round(time.perf_counter() - started, 6),
            **{k: v for k, v in svc.status().items() if k != "cursor"},
        }
    )


async def admin_snapshot(request: web.Request) -> web.Response:
    _require_admin(request)
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
    _require_admin(request)
    track_id = _track_param(request)
    try:
        result = await request.app[SERVICE].set_block(track_id, request.method == "PUT")
    except LogError as exc:
        raise ApiError(503, "log_unavailable", str(exc), headers={"Retry-After": "1"}) from None
    return json_response(result)


async def admin_blocks(request: web.Request) -> web.Response:
    _require_admin(request)
    cursor = await _read_gate(request)  # read your takedowns: PUT on the writer, list here
    return json_response(request.app[SERVICE].list_blocks(), headers=cursor)


def _cors_allowed(origins: list[str], origin: str) -> str | None:
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def _wants_cors(path: str) -> bool:
    """Everything a page of another origin may call: ingest, rank, the track reads, the
    explorer's stats and the client module. Never /admin/*, /metrics or the page itself."""
    return path in CORS_EXACT or path.startswith("/tracks/")


class Guard:
    """The limits every request passes before its handler: URL length, concurrency, rate."""

    def __init__(self, svc: Gravityd) -> None:
        cfg = svc.config
        self.max_url = cfg.max_url_bytes
        self.max_inflight = cfg.max_concurrent_requests
        self.inflight = 0
        self.limiter = RateLimiter(
            cfg.rate_limit_per_s, cfg.rate_limit_burst, cfg.rate_limit_max_clients
        )
        self.identity = ClientIdentity(
            parse_networks(cfg.rate_limit_exempt, "rate_limit_exempt"),
            parse_networks(cfg.trusted_proxies, "trusted_proxies"),
        )
        # peer address -> exempt; used only when no proxy is trusted (then the peer is the client)
        self._exempt_peers: dict[str, bool] = {}
        self._refused = {
            r: svc.metrics.requests_refused.labels(r)
            for r in ("rate_limited", "overloaded", "url_too_long")
        }

    def refuse(self, reason: str, status: int, message: str, wait: float = 0.0) -> ApiError:
        self._refused[reason].inc()
        headers = {"Retry-After": retry_after(wait)} if status in (429, 503) else None
        return ApiError(status, reason, message, headers=headers)

    def rate_key(self, request: web.Request) -> str | None:
        remote = request.remote
        if not self.identity.trusted:
            exempt = self._exempt_peers.get(remote or "")
            if exempt is None:
                if len(self._exempt_peers) > 10_000:
                    self._exempt_peers.clear()
                exempt = self.identity.key(remote, None) is None
                self._exempt_peers[remote or ""] = exempt
            return None if exempt else (remote or "unknown")
        # Every X-Forwarded-For line, in order: a proxy appends its own line after the client's.
        forwarded = ", ".join(request.headers.getall("X-Forwarded-For", ()))
        return self.identity.key(remote, forwarded or None)


def make_middleware(svc: Gravityd) -> Any:
    """One middleware for limits, errors, CORS and metrics: each layer costs on the hot path."""
    m = svc.metrics
    latency: dict[tuple[Any, str, int], Any] = {}
    origins = svc.config.cors_origins
    guard = Guard(svc)
    reads = svc.reads
    elsewhere = _route_patterns(role_paths("all") - role_paths(svc.role))  # the other role's
    other = "a writer (--role writer or all)" if not svc.writes else "a replica (--role replica)"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.path
        method = request.method
        cors = _wants_cors(path)
        origin = request.headers.get("Origin") if cors else None
        counted = path not in UNCAPPED
        if counted:
            guard.inflight += 1
        try:
            if cors and method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                response = _preflight(origins, origin)
            else:
                try:
                    if counted:
                        _check_limits(guard, request, path, method)
                    response = await handler(request)
                except ApiError as exc:
                    response = exc.response()
                except web.HTTPException as exc:
                    response = _http_error(exc, request, elsewhere, svc.role, other)
                except Exception:
                    log.exception("request failed", extra={"path": path, "method": method})
                    response = ApiError(500, "internal_error", "internal error").response()
                if origin:
                    allowed = _cors_allowed(origins, origin)
                    if allowed:
                        response.headers["Access-Control-Allow-Origin"] = allowed
                        # A page of another origin reads no header unless told it may: the
                        # client's backoff must see Retry-After on 429 and 503.
                        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
                        if allowed != "*":
                            response.headers["Vary"] = "Origin"
        finally:
            if counted:
                guard.inflight -= 1
        resource = request.match_info.route.resource
        if reads and resource is not None and resource.canonical in READ_ROUTES:
            # Answers that never reached the graph (a 400, a refusal) still say where it is.
            response.headers.setdefault(CURSOR_HEADER, str(svc.read_cursor))
        # One histogram observation per request, its child cached per (route, method, status).
        key = (resource, method, response.status)
        child = latency.get(key)
        if child is None:
            route = resource.canonical if resource is not None else "unmatched"
            child = latency[key] = m.request_seconds.labels(route, method, str(response.status))
        child.observe(time.perf_counter() - started)
        return response

    return middleware


def _http_error(
    exc: web.HTTPException,
    request: web.Request,
    elsewhere: re.Pattern[str],
    role: str,
    other: str,
) -> web.Response:
    """aiohttp's own answers in the contract's shape; a path of the other role says so."""
    if exc.status == 404 and elsewhere.fullmatch(request.path):
        return ApiError(
            404, "wrong_role", f"this gravityd is a {role}: {request.path} is served by {other}"
        ).response()
    code = _HTTP_CODES.get(exc.status, "http_error")
    return ApiError(exc.status, code, exc.reason).response()


def _route_patterns(templates: set[str]) -> re.Pattern[str]:
    """One pattern matching the concrete paths of these documented routes ({x}: one segment)."""
    parts = [re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(t)) for t in sorted(templates)]
    return re.compile("|".join(parts) or "(?!)")


def _check_limits(guard: Guard, request: web.Request, path: str, method: str) -> None:
    if len(request.raw_path) > guard.max_url:
        raise guard.refuse(
            "url_too_long", 414, f"the path and query are longer than {guard.max_url} bytes"
        )
    if guard.inflight > guard.max_inflight:
        raise guard.refuse("overloaded", 503, "too many requests in flight; retry", 1.0)
    if method == "POST" and path in RATE_LIMITED and guard.limiter.enabled:
        key = guard.rate_key(request)
        if key is not None:
            wait = guard.limiter.take(key)
            if wait > 0.0:
                raise guard.refuse(
                    "rate_limited", 429, "too many requests from this client; slow down", wait
                )


def _preflight(origins: list[str], origin: str | None) -> web.Response:
    allowed = _cors_allowed(origins, origin) if origin else None
    if not allowed:
        return ApiError(
            403, "cors_origin_not_allowed", "this origin may not call gravityd"
        ).response()
    headers = {
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Max-Age": "600",
    }
    if allowed != "*":
        headers["Vary"] = "Origin"
    return web.Response(status=204, headers=headers)


class ProtocolErrorFilter(logging.Filter):
    """aiohttp logs every malformed request (a header too long, garbage on the port) at ERROR
    with a traceback: anyone on the internet could flood the logs that way. Such a record
    becomes one WARNING line naming the error, no traceback. The client still gets aiohttp's
    plain-text 400: those requests never reach the application."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
            record.error = f"{exc.code} {exc.message}".strip()[:200]
        return True


_PROTOCOL_FILTER = ProtocolErrorFilter()


def create_app(svc: Gravityd, *, manage_service: bool = True) -> web.Application:
    """The aiohttp application around a service; it starts and closes the service with itself."""
    cfg = svc.config
    server_log = logging.getLogger("aiohttp.server")
    if _PROTOCOL_FILTER not in server_log.filters:
        server_log.addFilter(_PROTOCOL_FILTER)
    app = web.Application(
        middlewares=[make_middleware(svc)],
        client_max_size=max(cfg.max_batch_bytes, cfg.max_event_bytes) + 1,
        handler_args={
            # Also closes a connection that never finishes its headers (slowloris).
            "keepalive_timeout": cfg.keepalive_timeout_s,
            # The request line past max_url_bytes is refused by aiohttp's parser (400); up
            # to twice it gets there, and the guard answers 414 in the contract's shape.
            "max_line_size": 2 * cfg.max_url_bytes + 64,
            "max_field_size": cfg.max_header_bytes,
            "max_headers": cfg.max_headers,
        },
    )
    app[SERVICE] = svc
    if svc.writes:
        app.router.add_post("/event", post_event)
        app.router.add_post("/events", post_events)
    if svc.reads:
        app.router.add_get("/tracks/top", get_top_tracks)
        app.router.add_get("/tracks/{id}", get_track)
        app.router.add_get("/tracks/{id}/gravity_neighbors", get_neighbors)
        app.router.add_post("/rank", post_rank)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if svc.writes:  # a takedown is an entry in the log: the process that appends takes it
        app.router.add_put("/admin/tracks/{id}/block", admin_block)
        app.router.add_delete("/admin/tracks/{id}/block", admin_block)
    if svc.reads:
        app.router.add_post("/admin/fold", admin_fold)
        app.router.add_post("/admin/snapshot", admin_snapshot)
        app.router.add_get("/admin/blocks", admin_blocks)
        app.router.add_get("/stats", get_stats)
        app.router.add_get("/radio/report", get_radio_report)
    spec = orjson.dumps(build_spec(cfg))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=spec, headers=_JSON_HEADERS)

    app.router.add_get("/openapi.json", openapi)
    if svc.reads:
        add_static_routes(app)
    if manage_service:

        async def _start(app: web.Application) -> None:
            await svc.start()

        async def _stop(app: web.Application) -> None:
            await svc.close()

        app.on_startup.append(_start)
        app.on_cleanup.append(_stop)
    return app
