"""The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json.

Built from the running configuration, so documented limits (batch size, pool size, `limit`) are
the ones in force. A test compares its paths with the router's, and schemathesis fuzzes a real
server against it: a route added without documentation, or a response that does not match
its schema, fails the suite.
"""

from __future__ import annotations

from typing import Any

from gravityd import __version__
from gravityd.config import Config
from gravityd.core.events import EVENT_TYPES, MAX_ELAPSED_MS

JSON = "application/json"
UUID = {"type": "string", "format": "uuid", "description": "a UUID (any case, braces-free)"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ERROR_REF}}}
    if retry:
        resp["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return resp


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


# Answers any counted route may give before its handler runs (see api.Guard).
GUARD = {
    "414": _error("the path and query are longer than max_url_bytes"),
    "503": _error("too many requests in flight (overloaded), or the log cannot write", True),
}
BODY_ERRORS = {
    "400": _error("the body is not valid (the error names the field)"),
    "408": _error("the body was not sent within body_timeout_s"),
    "413": _error("the body, the batch or the pool is larger than the limit"),
    "415": _error("send application/json (or x-ndjson, text/plain)"),
}
ADMIN = {
    "401": _error("a valid bearer token is required (admin_token is set)"),
    "403": _error(
        "with no admin_token set: the client is not on loopback, or the request came through "
        "a proxy (X-Forwarded-For, Forwarded, X-Real-IP) or from a web page (Origin, "
        "Sec-Fetch-Site)"
    ),
}


WRITER_PATHS = frozenset({"/event", "/events", "/admin/tracks/{id}/block"})
COMMON_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
# Served by every role that holds a graph (all, replica).
READER_PATHS = frozenset(
    {
        "/tracks/top",
        "/tracks/{id}",
        "/tracks/{id}/gravity_neighbors",
        "/rank",
        "/stats",
        "/radio/report",
        "/admin/fold",
        "/admin/snapshot",
        "/admin/blocks",
        "/",
        "/client.js",
        "/static/{name}",
    }
)
READ_OPS = frozenset(
    {
        "/tracks/top",
        "/tracks/{id}",
        "/tracks/{id}/gravity_neighbors",
        "/rank",
        "/stats",
        "/radio/report",
    }
)


def role_paths(role: str) -> set[str]:
    """The documented paths a process of this role serves."""
    out = set(COMMON_PATHS)
    if role in ("all", "writer"):
        out |= WRITER_PATHS
    if role in ("all", "replica"):
        out |= READER_PATHS
    return out


MIN_CURSOR = {
    "name": "min_cursor",
    "in": "query",
    "description": "read your writes: answer from a graph folded through at least this log "
    "position (an `id`/`last_id` a write answered), waiting up to read_wait_ms, else 503 "
    "not_caught_up",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}
CURSOR_HEADERS = {
    "Gravityd-Cursor": {
        "description": "the log position the answer's graph reflects",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


def _read_op(path: str, op: dict[str, Any]) -> None:
    """Every read takes min_cursor, may answer 503 not_caught_up, and carries Gravityd-Cursor."""
    if path != "/rank":
        op["parameters"] = [*op.get("parameters", []), MIN_CURSOR]
    else:
        body = op["requestBody"]["content"][JSON]["schema"]
        body["properties"]["min_cursor"] = MIN_CURSOR["schema"]
        op["parameters"] = [MIN_CURSOR]
    responses = op["responses"]
    responses["200"] = {**responses["200"], "headers": CURSOR_HEADERS}
    responses.setdefault("400", _error("a bad parameter (the error names it)"))
    responses["503"] = _error(
        "not_caught_up (the graph has not folded through min_cursor within read_wait_ms), or "
        "too many requests in flight",
        True,
    )


def _schemas(cfg: Config) -> dict[str, Any]:
    lanes_evidence = {
        "type": "object",
        "required": ["pos", "neg", "acc", "n"],
        "properties": {
            "pos": {"type": "number", "description": "decayed evidence for the transition"},
            "neg": {"type": "number", "description": "decayed evidence against (skips)"},
            "acc": {"type": "number", "description": "decayed direct verdicts (kept, liked)"},
            "n": {"type": "integer", "description": "times the transition was seen"},
        },
    }
    nullable_text = {"type": ["string", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "stable, machine-readable"},
                        "message": {"type": "string", "description": "for people"},
                        "field": {"type": "string", "description": "the input at fault"},
                    },
                }
            },
        },
        "Event": {
            "type": "object",
            "required": ["session_id", "track_id", "event_type"],
            "properties": {
                "session_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": cfg.max_session_id_len,
                    "description": "unique per active listening session",
                },
                "track_id": UUID,
                "event_type": {"type": "string", "enum": sorted(EVENT_TYPES)},
                "user_id": UUID,
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO 8601; default now; any past date; at most "
                    f"{cfg.max_future_s:g} s ahead",
                },
                "context": {"type": "string", "maxLength": cfg.max_context_len},
                "event_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": cfg.max_event_id_len,
                    "description": "the client's id; a repeat is answered 202 and stored once",
                },
                "meta": {
                    "type": "object",
                    "properties": {
                        "elapsed_ms": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_ELAPSED_MS,
                            "description": "for skip: how far into the track",
                        }
                    },
                },
            },
        },
        "Rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "error"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "error": {"$ref": "#/components/schemas/Error/properties/error"},
                },
            },
        },
        "Lane": {
            "type": "object",
            "required": ["track_id", "weight", "normalized_score", "evidence", "direction"],
            "properties": {
                "track_id": UUID,
                "weight": {"type": "number", "description": "decayed net weight (pos - neg)"},
                "normalized_score": {"type": "number", "minimum": 0, "maximum": 1},
                "direction": {"type": "string", "enum": ["out", "in"]},
                "evidence": lanes_evidence,
                "rejected": {"type": "boolean", "description": "only with rejected=1"},
                "title": nullable_text,
                "artist": nullable_text,
            },
        },
        "Track": {
            "type": "object",
            "required": ["track_id", "out_lanes", "in_lanes", "title", "artist"],
            "properties": {
                "track_id": UUID,
                "out_lanes": {"type": "integer", "minimum": 0},
                "in_lanes": {"type": "integer", "minimum": 0},
                "lanes": {"type": "integer", "minimum": 0},
                "blocked": {
                    "type": "boolean",
                    "description": "present (true) only for a track taken down",
                },
                "title": nullable_text,
                "artist": nullable_text,
            },
        },
        "BlockChange": {
            "type": "object",
            "required": ["track_id", "blocked", "id", "changed"],
            "properties": {
                "track_id": UUID,
                "blocked": {"type": "boolean"},
                "id": {"type": "integer", "description": "log position of the change"},
                "changed": {"type": "boolean", "description": "false when it already was so"},
            },
        },
        "Status": {
            "type": "object",
            "required": ["ready", "role", "last_id"]
            + (["cursor", "nodes", "edges"] if cfg.role != "writer" else []),
            "properties": {
                "ready": {"type": "boolean"},
                "role": {"type": "string", "enum": ["all", "writer", "replica"]},
                "worker": {"type": "integer", "description": "index under --workers (0 alone)"},
                "pid": {"type": "integer", "description": "the process that answered"},
                "cursor": {"type": "integer", "description": "last event folded"},
                "last_id": {"type": "integer", "description": "last event committed"},
                "nodes": {"type": "integer"},
                "edges": {"type": "integer"},
                "snapshotter": {
                    "type": "boolean",
                    "description": "this process holds the snapshotter lease",
                },
            },
        },
    }


def _limit_param(name: str, default: int, hi: int, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": text,
        "schema": {"type": "integer", "minimum": 1, "maximum": hi, "default": default},
    }


def _track_id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": UUID}


def _radio_report(cfg: Config) -> dict[str, Any]:
    """GET /radio/report: the radio's scoreboard (gravityd/core/scoreboard.py)."""
    rate = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
    interval = {
        "type": ["array", "null"],
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 2,
    }
    counts = {
        "skipped": {"type": "integer", "minimum": 0},
        "kept": {"type": "integer", "minimum": 0},
        "unresolved": {"type": "integer", "minimum": 0},
    }
    point = {
        "type": "object",
        "required": ["start", "skipped", "kept", "skip_rate"],
        "properties": {
            "start": {"type": "string", "format": "date-time"},
            **counts,
            "skip_rate": rate,
            "span": {"const": "day", "description": "a day already merged, in an hour report"},
        },
    }
    arm = {
        "type": "object",
        "required": ["context", "transitions", "skipped", "kept", "skip_rate", "ci95", "series"],
        "properties": {
            "context": {"type": ["string", "null"], "description": "the radio_next context"},
            "transitions": {"type": "integer", "minimum": 0, "description": "skipped + kept"},
            **counts,
            "skip_rate": rate,
            "ci95": {**interval, "description": "Wilson score interval of the skip rate"},
            "series": {"type": "array", "items": point},
        },
    }
    comparison = {
        "type": "object",
        "required": ["a", "b", "difference", "ci95", "p_value"],
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": ["string", "null"]},
            "difference": {"type": ["number", "null"], "description": "b's rate minus a's"},
            "ci95": interval,
            "p_value": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        },
    }
    when = "ISO 8601 date-time (a naive one is UTC)"
    return {
        "get": {
            "summary": "The radio's scoreboard: skip rate per arm and hour or day",
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "schema": {"type": "string", "format": "date-time"},
                    "description": f"{when}; rounds down to its bucket; default: until minus "
                    "the bucket's horizon",
                },
                {
                    "name": "until",
                    "in": "query",
                    "schema": {"type": "string", "format": "date-time"},
                    "description": f"{when}, exclusive; default: now",
                },
                {
                    "name": "bucket",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["day", "hour"], "default": "day"},
                },
                {
                    "name": "arms",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "comma-separated contexts, in the comparison's order (a,b); "
                    "null names picks without a context; default: every arm with data",
                },
            ],
            "responses": {
                "200": _json(
                    "per arm: counts, skip rate, Wilson interval and series; a comparison when "
                    "exactly two arms are reported",
                    {
                        "type": "object",
                        "required": ["bucket", "since", "until", "arms"],
                        "properties": {
                            "bucket": {"enum": ["day", "hour"]},
                            "since": {"type": "string", "format": "date-time"},
                            "until": {"type": "string", "format": "date-time"},
                            "arms": {"type": "array", "items": arm},
                            "comparison": comparison,
                            "pending": {"type": "integer", "minimum": 0},
                            "cursor": {"type": "integer"},
                        },
                    },
                ),
                "400": _error("a bad since, until, bucket or arms (the error names it)"),
                **GUARD,
            },
        }
    }


def build_spec(cfg: Config) -> dict[str, Any]:
    """The whole API as an OpenAPI 3.1 document."""
    ingest_body = {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": "#/components/schemas/Event"}},
        },
    }
    batch_body = {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": cfg.max_batch_events,
                    "items": {"$ref": "#/components/schemas/Event"},
                }
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
    accepted_one = {
        "type": "object",
        "required": ["accepted", "id", "event_id", "duplicate"],
        "properties": {
            "accepted": {"const": 1},
            "id": {"type": "integer", "description": "the event's position in the log"},
            "event_id": {"type": "string"},
            "duplicate": {"type": "boolean", "description": "this event_id was already stored"},
        },
    }
    accepted_many = {
        "type": "object",
        "required": ["accepted", "duplicates", "rejected", "first_id", "last_id"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 1},
            "duplicates": {"type": "integer", "minimum": 0},
            "rejected": {"$ref": "#/components/schemas/Rejected"},
            "first_id": {"type": "integer"},
            "last_id": {"type": "integer"},
        },
    }
    rank_body = {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["current_track_id", "candidate_track_ids", "embeddings_scores"],
                    "properties": {
                        "current_track_id": UUID,
                        "candidate_track_ids": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": cfg.max_rank_pool,
                            "items": UUID,
                        },
                        "embeddings_scores": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                            "description": "track id -> cosine similarity from the map",
                        },
                        "session_history": {"type": "array", "items": UUID},
                        "limit": {"type": "integer", "minimum": 1},
                    },
                }
            }
        },
    }
    ranked = {
        "type": "object",
        "required": ["ranked"],
        "properties": {
            "ranked": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["track_id", "score"],
                    "properties": {"track_id": UUID, "score": {"type": "number"}},
                },
            }
        },
    }
    text_ok = {"description": "the file", "content": {"text/plain": {"schema": {"type": "string"}}}}

    def static(description: str, media: str) -> dict[str, Any]:
        return {
            "200": {"description": description, "content": {media: {"schema": {"type": "string"}}}},
            "304": {"description": "not modified (If-None-Match matched the ETag)"},
        }

    paths: dict[str, Any] = {
        "/event": {
            "post": {
                "summary": "Ingest one listening event",
                "description": "202 once the event is durably in the log.",
                "requestBody": ingest_body,
                "responses": {
                    "202": _json("stored (or already stored: duplicate)", accepted_one),
                    **BODY_ERRORS,
                    "429": _error("too many requests from this client", True),
                    **GUARD,
                },
            }
        },
        "/events": {
            "post": {
                "summary": "Ingest a batch of events (JSON array or NDJSON)",
                "description": "Valid events are kept even when others in the batch are bad; "
                "text/plain bodies are read as JSON (navigator.sendBeacon).",
                "requestBody": batch_body,
                "responses": {
                    "202": _json("the valid events are stored", accepted_many),
                    **BODY_ERRORS,
                    "429": _error("too many requests from this client", True),
                    **GUARD,
                },
            }
        },
        "/tracks/top": {
            "get": {
                "summary": "The most connected tracks (for the explorer)",
                "parameters": [
                    _limit_param("limit", 20, cfg.max_neighbors_limit, "how many tracks")
                ],
                "responses": {
                    "200": _json(
                        "most lanes first",
                        {"type": "array", "items": {"$ref": "#/components/schemas/Track"}},
                    ),
                    "400": _error("bad limit"),
                    **GUARD,
                },
            }
        },
        "/tracks/{id}": {
            "get": {
                "summary": "One track: catalogue entry and lane counts",
                "parameters": [_track_id_param()],
                "responses": {
                    "200": _json(
                        "an unknown well-formed id has 0 lanes",
                        {"$ref": "#/components/schemas/Track"},
                    ),
                    "400": _error("the id is not a UUID"),
                    **GUARD,
                },
            }
        },
        "/tracks/{id}/gravity_neighbors": {
            "get": {
                "summary": "Warp lanes: a track's strongest gravity neighbors",
                "parameters": [
                    _track_id_param(),
                    _limit_param("limit", 10, cfg.max_neighbors_limit, "most lanes returned"),
                    {
                        "name": "direction",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["out", "in", "both"]},
                    },
                    {
                        "name": "min_score",
                        "in": "query",
                        "schema": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    {
                        "name": "with",
                        "in": "query",
                        "description": "meta: add title and artist from the catalogue",
                        "schema": {"type": "string", "enum": ["meta"]},
                    },
                    {
                        "name": "rejected",
                        "in": "query",
                        "description": "also list transitions listeners skip away from",
                        "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                    },
                ],
                "responses": {
                    "200": _json(
                        "strongest first; an unknown well-formed id gives []",
                        {"type": "array", "items": {"$ref": "#/components/schemas/Lane"}},
                    ),
                    "400": _error("a bad id or parameter (the error names it)"),
                    **GUARD,
                },
            }
        },
        "/rank": {
            "post": {
                "summary": "Re-rank next-track candidates with the live graph",
                "requestBody": rank_body,
                "responses": {"200": _json("best first", ranked), **BODY_ERRORS, **GUARD},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json("the process runs", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the graph is loaded and caught up with the log",
                "responses": {
                    "200": _json("ready", {"$ref": "#/components/schemas/Status"}),
                    "503": _json("still loading", {"$ref": "#/components/schemas/Status"}),
                },
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": text_ok}}},
        "/stats": {
            "get": {
                "summary": "Live figures for the explorer panel",
                "responses": {
                    "200": _json(
                        "rates, lag, size, snapshot age",
                        {
                            "allOf": [{"$ref": "#/components/schemas/Status"}],
                            "type": "object",
                            "required": ["fold_lag", "events_per_s", "snapshot_age_s"],
                            "properties": {
                                "fold_lag": {"type": "integer"},
                                "fold_lag_seconds": {"type": "number"},
                                "events_per_s": {"type": "number"},
                                "snapshot_age_s": {"type": ["number", "null"]},
                                "catalog_tracks": {"type": "integer"},
                                "uptime_s": {"type": "number"},
                                "lanes_cursor": {
                                    "type": "integer",
                                    "description": "every kept lane reflects the log through it",
                                },
                                "lanes_lag_s": {
                                    "type": "number",
                                    "description": "age of the oldest touch not yet refreshed",
                                },
                                "lanes_dirty": {"type": "integer"},
                                "lanes_max_lag_ms": {"type": "number"},
                            },
                        },
                    ),
                    **GUARD,
                },
            }
        },
        "/radio/report": _radio_report(cfg),
        "/admin/fold": {
            "post": {
                "summary": "Fold every event committed so far",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": _json(
                        "folded",
                        {
                            "type": "object",
                            "required": ["cursor"],
                            "properties": {"cursor": {"type": "integer"}},
                        },
                    ),
                    **ADMIN,
                    **GUARD,
                },
            }
        },
        "/admin/snapshot": {
            "post": {
                "summary": "Write a snapshot now",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": _json(
                        "written",
                        {
                            "type": "object",
                            "required": ["path", "cursor"],
                            "properties": {
                                "path": {"type": "string"},
                                "cursor": {"type": "integer"},
                                "bytes": {"type": "integer"},
                                "seconds": {"type": "number"},
                            },
                        },
                    ),
                    **ADMIN,
                    "409": _error("not_snapshotter: another process holds the snapshotter lease"),
                    **GUARD,
                },
            }
        },
        "/admin/tracks/{id}/block": {
            method: {
                "summary": summary,
                "security": [{"bearer": []}, {}],
                "parameters": [_track_id_param()],
                "responses": {
                    "200": _json(
                        "the change is durable in the log; `id` is its log position",
                        {"$ref": "#/components/schemas/BlockChange"},
                    ),
                    "400": _error("the id is not a UUID (field id)"),
                    **ADMIN,
                    **GUARD,
                },
            }
            for method, summary in (
                ("put", "Block (take down) a track: gone from lanes, top tracks and rank"),
                ("delete", "Unblock a track: it comes back as the graph has it"),
            )
        },
        "/admin/blocks": {
            "get": {
                "summary": "The blocked tracks, most recent first",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": _json(
                        "the blocked tracks as this process has folded them",
                        {
                            "type": "object",
                            "required": ["blocks", "count", "cursor"],
                            "properties": {
                                "blocks": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["track_id", "id", "blocked_at"],
                                        "properties": {
                                            "track_id": UUID,
                                            "id": {"type": "integer"},
                                            "blocked_at": {"type": "number"},
                                        },
                                    },
                                },
                                "count": {"type": "integer", "minimum": 0},
                                "cursor": {"type": "integer"},
                            },
                        },
                    ),
                    **ADMIN,
                    **GUARD,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"}), **GUARD},
            }
        },
        "/": {
            "get": {
                "summary": "The graph explorer page",
                "responses": {**static("the page", "text/html"), **GUARD},
            }
        },
        "/client.js": {
            "get": {
                "summary": "The browser client (ES module; CORS, so other origins can import it)",
                "responses": {**static("the module", "text/javascript"), **GUARD},
            }
        },
        "/static/{name}": {
            "get": {
                "summary": "The explorer's files",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    **static("the file", "*/*"),
                    "404": _error("no such file"),
                    **GUARD,
                },
            }
        },
    }
    served = role_paths(cfg.role)
    paths = {p: ops for p, ops in paths.items() if p in served}
    for path in READ_OPS & served:
        for op in paths[path].values():
            _read_op(path, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gravityd",
            "version": __version__,
            "description": "The gravity layer of the Live Radio: listening events in, a "
            "track-to-track graph out. Errors are 4xx with {error: {code, message, field?}}.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(cfg),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
