"""The event model: validation of what clients post, and the shape the fold reads back.

Validation is pure and allocation-light because it sits on the ingest hot path.
"""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

# About 24.8 days: longer than any track, and small enough for every store and client.
MAX_ELAPSED_MS = 2**31 - 1
EVENT_TYPES = frozenset({"play_start", "play_10s", "skip", "radio_next", "like"})

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
# A naive ISO 8601 string still has to look like a date; fromisoformat alone accepts "2024".
_ISO_HEAD_RE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]|\Z)")


class FoldEvent(NamedTuple):
    """One logged event as the fold reads it back: only what the model needs."""

    id: int
    session_id: str
    track_id: str
    event_type: str
    ts: float  # event time, Unix seconds UTC
    elapsed_ms: int | None
    context: str | None = None  # the radio's arm on radio_next; the fold itself ignores it


class EventError(ValueError):
    """A client error about one event: a stable code, a message and the field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Bounds that validation enforces; from the [ingest] section of the config."""

    max_session_id_len: int = 128
    max_event_id_len: int = 128
    max_context_len: int = 64
    max_future_s: float = 300.0
    max_meta_bytes: int = 16384


class ValidEvent(NamedTuple):
    """A validated event, in the column order of the log's insert."""

    event_id: str | None  # the client's; None means the log assigns one
    session_id: str
    track_id: str
    event_type: str
    user_id: str | None
    ts: float
    context: str | None
    meta: str | None  # JSON text of the meta object
    elapsed_ms: int | None


def canonical_uuid(value: Any) -> str | None:
    """Lower-case canonical form of a hyphenated UUID string, or None if it is not one."""
    return _canonical(value) if type(value) is str else None


# Track and user ids repeat: a catalogue has far fewer tracks than a day has events, so the
# regex runs about once per distinct id (of the last 100,000) and a repeat is a cache hit.
@functools.lru_cache(maxsize=100_000)
def _canonical(value: str) -> str | None:
    if len(value) == 36 and _UUID_RE.match(value):
        return value.lower()
    return None


def parse_timestamp(value: str) -> float:
    """ISO 8601 to Unix seconds; a naive time is taken as UTC (documented in docs/api.md)."""
    if not _ISO_HEAD_RE.match(value):
        raise ValueError(value)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _opt_str(obj: dict, key: str, max_len: int, code: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise EventError(
            code, f"{key} must be a non-empty string of at most {max_len} characters", key
        )
    return value


def validate_event(obj: Any, limits: ValidationLimits, now: float | None = None) -> ValidEvent:
    """Check one decoded event; raise EventError naming the first field at fault.

    Unknown extra fields are ignored so that newer clients never break ingestion.
    """
    if not isinstance(obj, dict):
        raise EventError("not_an_object", "an event must be a JSON object")

    session_id = obj.get("session_id")
    if session_id is None:
        raise EventError("missing_field", "session_id is required", "session_id")
    if not isinstance(session_id, str) or not session_id.strip():
        raise EventError(
            "invalid_session_id", "session_id must be a non-empty string", "session_id"
        )
    if len(session_id) > limits.max_session_id_len:
        raise EventError(
            "invalid_session_id",
            f"session_id is longer than {limits.max_session_id_len} characters",
            "session_id",
        )

    raw_track = obj.get("track_id")
    if raw_track is None:
        raise EventError("missing_field", "track_id is required", "track_id")
    track_id = canonical_uuid(raw_track)
    if track_id is None:
        raise EventError("invalid_track_id", "track_id must be a UUID", "track_id")

    event_type = obj.get("event_type")
    if event_type is None:
        raise EventError("missing_field", "event_type is required", "event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise EventError(
            "invalid_event_type",
            "event_type must be one of " + ", ".join(sorted(EVENT_TYPES)),
            "event_type",
        )

    user_id = None
    raw_user = obj.get("user_id")
    if raw_user is not None:
        user_id = canonical_uuid(raw_user)
        if user_id is None:
            raise EventError("invalid_user_id", "user_id must be a UUID", "user_id")

    if now is None:
        now = time.time()
    raw_ts = obj.get("timestamp")
    if raw_ts is None:
        ts = now
    else:
        if not isinstance(raw_ts, str):
            raise EventError(
                "invalid_timestamp", "timestamp must be an ISO 8601 string", "timestamp"
            )
        try:
            ts = parse_timestamp(raw_ts)
        except (ValueError, OverflowError):
            raise EventError(
                "invalid_timestamp", "timestamp is not a valid ISO 8601 date-time", "timestamp"
            ) from None
        if ts > now + limits.max_future_s:
            raise EventError(
                "timestamp_in_future",
                f"timestamp is more than {limits.max_future_s:g} s ahead of the server clock",
                "timestamp",
            )

    context = _opt_str(obj, "context", limits.max_context_len, "invalid_context")
    event_id = _opt_str(obj, "event_id", limits.max_event_id_len, "invalid_event_id")

    meta_raw = obj.get("meta")
    meta: str | None = None
    elapsed_ms: int | None = None
    if meta_raw is not None:
        if not isinstance(meta_raw, dict):
            raise EventError("invalid_meta", "meta must be a JSON object", "meta")
        if "elapsed_ms" in meta_raw:
            elapsed = meta_raw["elapsed_ms"]
            if isinstance(elapsed, float) and elapsed.is_integer() and math.isfinite(elapsed):
                elapsed = int(elapsed)
            if (
                not isinstance(elapsed, int)
                or isinstance(elapsed, bool)
                or not 0 <= elapsed <= MAX_ELAPSED_MS
            ):
                raise EventError(
                    "invalid_elapsed_ms",
                    f"meta.elapsed_ms must be an integer from 0 to {MAX_ELAPSED_MS}",
                    "meta.elapsed_ms",
                )
            elapsed_ms = elapsed
        if meta_raw:
            meta = orjson.dumps(meta_raw).decode()
            # The only unbounded part of a stored event (the rest is ids and short strings), so
            # this bounds an event inside a batch as max_event_bytes bounds POST /event.
            if len(meta) > limits.max_meta_bytes:
                raise EventError(
                    "meta_too_large",
                    f"meta is larger than {limits.max_meta_bytes} bytes as JSON",
                    "meta",
                )

    return ValidEvent(
        event_id, session_id, track_id, event_type, user_id, ts, context, meta, elapsed_ms
    )


def parse_batch(body: bytes, ndjson: bool) -> tuple[list[Any], list[tuple[int, EventError]]]:
    """Split a batch body into decoded items; undecodable NDJSON lines are rejected by index.

    A JSON body must be an array. An NDJSON body (or a text/plain one that is not a single JSON
    document) holds one event per non-blank line, and the index counts those lines.
    """
    if not ndjson:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            if b"\n" not in body.strip():
                raise EventError("invalid_json", "the body is not valid JSON") from None
            ndjson = True
        else:
            if not isinstance(data, list):
                raise EventError("not_an_array", "the body must be a JSON array of events")
            return data, []
    items: list[Any] = []
    bad: list[tuple[int, EventError]] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            bad.append(
                (len(items) + len(bad), EventError("invalid_json", "line is not valid JSON"))
            )
            items.append(None)
    return items, bad
