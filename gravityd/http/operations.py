"""Each route's OpenAPI operation: what it takes and what it answers, in its own words.

What the route table already says is added by `openapi.build_spec`, not written here: the
admin security and 401/403, the guard's 414/503, the rate limit's 429, and a read's
min_cursor, 503 not_caught_up and Gravityd-Cursor header.
"""

from __future__ import annotations

from typing import Any

from gravityd.config import Config

JSON = "application/json"
UUID = {"type": "string", "format": "uuid", "description": "a UUID (any case, braces-free)"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
Operation = dict[str, Any]


def error(description: str, retry: bool = False) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ERROR_REF}}}
    if retry:
        resp["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return resp


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


BODY_ERRORS = {
    "400": error("the body is not valid (the error names the field)"),
    "408": error("the body was not sent within body_timeout_s"),
    "413": error("the body, the batch or the pool is larger than the limit"),
    "415": error("send application/json (or x-ndjson, text/plain)"),
}


def limit_param(name: str, default: int, hi: int, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": text,
        "schema": {"type": "integer", "minimum": 1, "maximum": hi, "default": default},
    }


def track_id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": UUID}


def _static(description: str, media: str) -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {media: {"schema": {"type": "string"}}}},
        "304": {"description": "not modified (If-None-Match matched the ETag)"},
    }


# ---------------------------------------------------------------------------- ingest


def post_event(cfg: Config) -> Operation:
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
    return {
        "summary": "Ingest one listening event",
        "description": "202 once the event is durably in the log.",
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Event"}}},
        },
        "responses": {
            "202": json_answer("stored (or already stored: duplicate)", accepted_one),
            **BODY_ERRORS,
        },
    }


def post_events(cfg: Config) -> Operation:
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
    return {
        "summary": "Ingest a batch of events (JSON array or NDJSON)",
        "description": "Valid events are kept even when others in the batch are bad; "
        "text/plain bodies are read as JSON (navigator.sendBeacon).",
        "requestBody": batch_body,
        "responses": {
            "202": json_answer("the valid events are stored", accepted_many),
            **BODY_ERRORS,
        },
    }


# ---------------------------------------------------------------------------- tracks and rank


def get_top_tracks(cfg: Config) -> Operation:
    return {
        "summary": "The most connected (or most central) tracks (for the explorer)",
        "parameters": [
            limit_param("limit", 20, cfg.max_neighbors_limit, "how many tracks"),
            {
                "name": "by",
                "in": "query",
                "required": False,
                "description": "lanes: most lanes first; centrality: PageRank on the lanes",
                "schema": {"type": "string", "enum": ["lanes", "centrality"], "default": "lanes"},
            },
        ],
        "responses": {
            "200": json_answer(
                "most lanes (or most central) first",
                {"type": "array", "items": {"$ref": "#/components/schemas/Track"}},
            ),
            "400": error("bad limit or by"),
        },
    }


def get_track(cfg: Config) -> Operation:
    return {
        "summary": "One track: catalogue entry and lane counts",
        "parameters": [track_id_param()],
        "responses": {
            "200": json_answer(
                "an unknown well-formed id has 0 lanes", {"$ref": "#/components/schemas/Track"}
            ),
            "400": error("the id is not a UUID"),
        },
    }


def get_neighbors(cfg: Config) -> Operation:
    return {
        "summary": "Warp lanes: a track's strongest gravity neighbors",
        "parameters": [
            track_id_param(),
            limit_param("limit", 10, cfg.max_neighbors_limit, "most lanes returned"),
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
            "200": json_answer(
                "strongest first; an unknown well-formed id gives []",
                {"type": "array", "items": {"$ref": "#/components/schemas/Lane"}},
            ),
            "400": error("a bad id or parameter (the error names it)"),
        },
    }


def post_rank(cfg: Config) -> Operation:
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
    return {
        "summary": "Re-rank next-track candidates with the live graph",
        "requestBody": rank_body,
        "responses": {"200": json_answer("best first", ranked), **BODY_ERRORS},
    }


# ---------------------------------------------------------------------------- probes and figures


def healthz(cfg: Config) -> Operation:
    return {
        "summary": "Liveness",
        "responses": {"200": json_answer("the process runs", {"type": "object"})},
    }


def readyz(cfg: Config) -> Operation:
    status = {"$ref": "#/components/schemas/Status"}
    return {
        "summary": "Readiness: the graph is loaded and caught up with the log",
        "responses": {
            "200": json_answer("ready", status),
            "503": json_answer("still loading", status),
        },
    }


def metrics(cfg: Config) -> Operation:
    text_ok = {"description": "the file", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {"summary": "Prometheus metrics", "responses": {"200": text_ok}}


# ---------------------------------------------------------------------------- galaxies

_GALAXIES_MAX = 1000  # gravityd.http.handlers.galaxies.MAX_GALAXIES_LIMIT


def get_galaxies(cfg: Config) -> Operation:
    summary = {
        "type": "object",
        "required": ["galaxy", "size", "tracks", "label"],
        "properties": {
            "galaxy": {"type": "integer", "minimum": 0},
            "size": {"type": "integer", "minimum": 1},
            "tracks": {"type": "array", "items": UUID, "maxItems": 10},
            "label": {"type": ["string", "null"]},
        },
    }
    return {
        "summary": "Galaxies: communities of the warp lanes, biggest first",
        "parameters": [limit_param("limit", 50, _GALAXIES_MAX, "most galaxies returned")],
        "responses": {
            "200": json_answer(
                "as of the last computation (cursor, computed_at); empty before the first",
                {
                    "type": "object",
                    "required": ["cursor", "computed_at", "count", "galaxies"],
                    "properties": {
                        "cursor": {"type": "integer"},
                        "computed_at": {"type": ["string", "null"], "format": "date-time"},
                        "count": {"type": "integer", "minimum": 0},
                        "galaxies": {"type": "array", "items": summary},
                    },
                },
            ),
            "400": error("bad limit"),
        },
    }


def get_galaxy(cfg: Config) -> Operation:
    member = {
        "type": "object",
        "required": ["track_id", "centrality", "title", "artist"],
        "properties": {
            "track_id": UUID,
            "centrality": {"type": "number", "minimum": 0},
            "title": {"type": ["string", "null"]},
            "artist": {"type": ["string", "null"]},
            "x": {"type": "number", "description": "the map's layout"},
            "y": {"type": "number"},
        },
    }
    return {
        "summary": "One galaxy's tracks, most central first",
        "parameters": [
            {
                "name": "galaxy",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            },
            limit_param("limit", 100, _GALAXIES_MAX, "most tracks returned"),
        ],
        "responses": {
            "200": json_answer(
                "the galaxy",
                {
                    "type": "object",
                    "required": ["galaxy", "size", "tracks"],
                    "properties": {
                        "galaxy": {"type": "integer", "minimum": 0},
                        "size": {"type": "integer", "minimum": 1},
                        "tracks": {"type": "array", "items": member},
                    },
                },
            ),
            "400": error("the galaxy is not a non-negative integer, or bad limit"),
            "404": error("unknown_galaxy"),
        },
    }


def get_route(cfg: Config) -> Operation:
    def end(name: str, text: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": True, "description": text, "schema": UUID}

    return {
        "summary": "A playable route from one track to another along warp lanes",
        "parameters": [
            end("from", "the track the route starts at"),
            end("to", "the track it arrives at"),
            limit_param("max_len", 12, cfg.galaxies.route_max_len, "most hops"),
        ],
        "responses": {
            "200": json_answer(
                "the path with the best product of lane scores within the bounds",
                {
                    "type": "object",
                    "required": ["from", "to", "path", "hops", "score"],
                    "properties": {
                        "from": UUID,
                        "to": UUID,
                        "path": {"type": "array", "items": UUID, "minItems": 1},
                        "hops": {"type": "integer", "minimum": 0},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "scores": {
                            "type": "array",
                            "items": {"type": "number", "minimum": 0, "maximum": 1},
                            "description": "each hop's normalized_score",
                        },
                    },
                },
            ),
            "400": error("from or to is not a track id, or bad max_len (names the field)"),
            "404": error("no_route: none within max_len (or the search's bounds)"),
        },
    }


def get_stats(cfg: Config) -> Operation:
    return {
        "summary": "Live figures for the explorer panel",
        "responses": {
            "200": json_answer(
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
        },
    }


def get_radio_report(cfg: Config) -> Operation:
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
            "200": json_answer(
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
            "400": error("a bad since, until, bucket or arms (the error names it)"),
        },
    }


# ---------------------------------------------------------------------------- admin


def admin_fold(cfg: Config) -> Operation:
    return {
        "summary": "Fold every event committed so far",
        "responses": {
            "200": json_answer(
                "folded",
                {
                    "type": "object",
                    "required": ["cursor"],
                    "properties": {"cursor": {"type": "integer"}},
                },
            ),
        },
    }


def admin_snapshot(cfg: Config) -> Operation:
    return {
        "summary": "Write a snapshot now",
        "responses": {
            "200": json_answer(
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
            "409": error("not_snapshotter: another process holds the snapshotter lease"),
        },
    }


def _admin_block(summary: str) -> Operation:
    return {
        "summary": summary,
        "parameters": [track_id_param()],
        "responses": {
            "200": json_answer(
                "the change is durable in the log; `id` is its log position",
                {"$ref": "#/components/schemas/BlockChange"},
            ),
            "400": error("the id is not a UUID (field id)"),
        },
    }


def admin_block(cfg: Config) -> Operation:
    return _admin_block("Block (take down) a track: gone from lanes, top tracks and rank")


def admin_unblock(cfg: Config) -> Operation:
    return _admin_block("Unblock a track: it comes back as the graph has it")


def admin_blocks(cfg: Config) -> Operation:
    return {
        "summary": "The blocked tracks, most recent first",
        "responses": {
            "200": json_answer(
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
        },
    }


# ---------------------------------------------------------------------------- documents and files


def openapi(cfg: Config) -> Operation:
    return {
        "summary": "This document",
        "responses": {"200": json_answer("OpenAPI 3.1", {"type": "object"})},
    }


def index(cfg: Config) -> Operation:
    return {"summary": "The graph explorer page", "responses": _static("the page", "text/html")}


def client_js(cfg: Config) -> Operation:
    return {
        "summary": "The browser client (ES module; CORS, so other origins can import it)",
        "responses": _static("the module", "text/javascript"),
    }


def static_file(cfg: Config) -> Operation:
    return {
        "summary": "The explorer's files",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {**_static("the file", "*/*"), "404": error("no such file")},
    }
