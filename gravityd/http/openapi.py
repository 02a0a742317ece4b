"""The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json.

Built from the route table and the running configuration, so documented limits (batch size,
pool size, `limit`) are the ones in force. Each route's own operation is in operations.py;
what the table says of a route (admin, guarded, rate limited, a read) is documented here, the
same way for every route. A test compares the paths with the router's, and schemathesis
fuzzes a real server against the document: a response that does not match fails the suite.
"""

from __future__ import annotations

import copy
from typing import Any

from gravityd import __version__
from gravityd.config import Config
from gravityd.core.events import EVENT_TYPES, MAX_ELAPSED_MS
from gravityd.http.operations import JSON, UUID, Operation, error
from gravityd.http.routes import Route, served

# Answers any capped route may give before its handler runs (see middleware/guard.py).
GUARD = {
    "414": error("the path and query are longer than max_url_bytes"),
    "503": error("too many requests in flight (overloaded), or the log cannot write", True),
}
RATE_LIMITED = {"429": error("too many requests from this client", True)}
ADMIN = {
    "401": error("a valid bearer token is required (admin_token is set)"),
    "403": error(
        "with no admin_token set: the client is not on loopback, or the request came through "
        "a proxy (X-Forwarded-For, Forwarded, X-Real-IP) or from a web page (Origin, "
        "Sec-Fetch-Site)"
    ),
}
ADMIN_SECURITY = [{"bearer": []}, {}]
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


def _read_op(route: Route, op: Operation) -> None:
    """Every read takes min_cursor, may answer 503 not_caught_up, and carries Gravityd-Cursor."""
    if route.min_cursor_in_body:
        body = op["requestBody"]["content"][JSON]["schema"]
        body["properties"]["min_cursor"] = MIN_CURSOR["schema"]
        op["parameters"] = [MIN_CURSOR]
    else:
        op["parameters"] = [*op.get("parameters", []), MIN_CURSOR]
    responses = op["responses"]
    responses["200"] = {**responses["200"], "headers": CURSOR_HEADERS}
    responses.setdefault("400", error("a bad parameter (the error names it)"))
    responses["503"] = error(
        "not_caught_up (the graph has not folded through min_cursor within read_wait_ms), or "
        "too many requests in flight",
        True,
    )


def operation(route: Route, cfg: Config) -> Operation:
    """The route's own operation, with what the table says of it."""
    op = copy.deepcopy(route.doc(cfg))
    responses = op["responses"]
    if route.admin:
        op["security"] = ADMIN_SECURITY
        responses.update(ADMIN)
    if route.rate_limited:
        responses.update(RATE_LIMITED)
    if route.capped:
        responses.update(GUARD)
    if route.reads:
        _read_op(route, op)
    return op


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
                "galaxy": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "its galaxy (GET /galaxies/{galaxy}); null: in none yet",
                },
                "centrality": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "description": "PageRank on the warp lanes; null: in no galaxy yet",
                },
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


def build_spec(cfg: Config) -> dict[str, Any]:
    """The whole API as an OpenAPI 3.1 document: the routes this role serves."""
    paths: dict[str, dict[str, Operation]] = {}
    for route in served(cfg.role):
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route, cfg)
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
