"""The HTTP layer: parse, call the core, serialise. No graph or log logic lives here."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gravityd.assets import add_static_routes
from gravityd.events import EventError, canonical_uuid, parse_batch, validate_event
from gravityd.log import LogError
from gravityd.metrics import CONTENT_TYPE_LATEST
from gravityd.ranking import validate_rank_request
from gravityd.service import Gravityd

log = logging.getLogger("gravityd.api")

SERVICE: web.AppKey[Gravityd] = web.AppKey("service", Gravityd)
JSON_TYPES = frozenset(
    {"application/json", "application/x-ndjson", "text/plain", "application/octet-stream", ""}
)
VALIDATE_SLICE = 100  # events validated between two yields to the event loop
CORS_EXACT = frozenset({"/event", "/events", "/rank", "/client.js"})
_BOOLS = {"1": True, "true": True, "0": False, "false": False}
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}

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
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers
        self.extra = extra

    def response(self) -> web.Response:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return json_response({"error": err, **self.extra}, self.status, self.headers)


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
    body = await request.read()
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
    out = await svc.neighbors(
        track_id,
        limit=limit,
        direction=direction,
        min_score=min_score,
        rejected=_bool_param(request, "rejected"),
        with_meta=_with_meta(request),
    )
    return json_response(out)


async def get_track(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].track(_track_param(request)))


async def get_top_tracks(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    limit = _int_param(request, "limit", 20, 1, svc.config.max_neighbors_limit)
    return json_response(await svc.top_tracks(limit))


async def get_stats(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].stats())


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
    return json_response({"ranked": svc.rank(req)})


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
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


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
    elif not _is_loopback(request.remote):
        raise ApiError(
            403,
            "forbidden",
            "admin endpoints answer only loopback clients when no admin_token is set",
        )


async def admin_fold(request: web.Request) -> web.Response:
    _require_admin(request)
    svc = request.app[SERVICE]
    started = time.perf_counter()
    cursor = await svc.fold_pending()
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
    except OSError as exc:
        raise ApiError(
            503,
            "snapshot_failed",
            f"the snapshot could not be written: {exc}",
            headers={"Retry-After": "5"},
        ) from None
    return json_response(result)


def _cors_allowed(origins: list[str], origin: str) -> str | None:
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def _wants_cors(path: str) -> bool:
    return path in CORS_EXACT or (
        path.startswith("/tracks/") and path.endswith("/gravity_neighbors")
    )


def make_middleware(svc: Gravityd) -> Any:
    """One middleware for errors, CORS and metrics: each layer costs on the hot path."""
    m = svc.metrics
    latency: dict[tuple[Any, str, int], Any] = {}
    origins = svc.config.cors_origins

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.path
        method = request.method
        cors = _wants_cors(path)
        origin = request.headers.get("Origin") if cors else None
        if cors and method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = _preflight(origins, origin)
        else:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = exc.response()
            except web.HTTPException as exc:
                code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
                    exc.status, "http_error"
                )
                response = ApiError(exc.status, code, exc.reason).response()
            except Exception:
                log.exception("request failed", extra={"path": path, "method": method})
                response = ApiError(500, "internal_error", "internal error").response()
            if origin:
                allowed = _cors_allowed(origins, origin)
                if allowed:
                    response.headers["Access-Control-Allow-Origin"] = allowed
                    if allowed != "*":
                        response.headers["Vary"] = "Origin"
        # One histogram observation per request, its child cached per (route, method, status).
        resource = request.match_info.route.resource
        key = (resource, method, response.status)
        child = latency.get(key)
        if child is None:
            route = resource.canonical if resource is not None else "unmatched"
            child = latency[key] = m.request_seconds.labels(route, method, str(response.status))
        child.observe(time.perf_counter() - started)
        return response

    return middleware


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


def create_app(svc: Gravityd, *, manage_service: bool = True) -> web.Application:
    """The aiohttp application around a service; it starts and closes the service with itself."""
    cfg = svc.config
    app = web.Application(
        middlewares=[make_middleware(svc)],
        client_max_size=max(cfg.max_batch_bytes, cfg.max_event_bytes) + 1,
    )
    app[SERVICE] = svc
    app.router.add_post("/event", post_event)
    app.router.add_post("/events", post_events)
    app.router.add_get("/tracks/top", get_top_tracks)
    app.router.add_get("/tracks/{id}", get_track)
    app.router.add_get("/tracks/{id}/gravity_neighbors", get_neighbors)
    app.router.add_post("/rank", post_rank)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/fold", admin_fold)
    app.router.add_post("/admin/snapshot", admin_snapshot)
    app.router.add_get("/stats", get_stats)
    add_static_routes(app)
    if manage_service:

        async def _start(app: web.Application) -> None:
            await svc.start()

        async def _stop(app: web.Application) -> None:
            await svc.close()

        app.on_startup.append(_start)
        app.on_cleanup.append(_stop)
    return app
