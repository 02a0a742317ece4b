"""Validation of one event: each rule has its own code and names its field."""

from __future__ import annotations

import pytest

from gravityd.core.events import EventError, ValidationLimits, parse_batch, validate_event

from .support import event, tid

NOW = 1_750_000_000.0
LIMITS = ValidationLimits()


def check(obj: object, code: str, field: str | None) -> None:
    with pytest.raises(EventError) as info:
        validate_event(obj, LIMITS, NOW)
    assert info.value.code == code
    assert info.value.field == field


def test_minimal_event_gets_server_time_and_canonical_ids() -> None:
    ev = validate_event(
        {
            "session_id": "s",
            "track_id": tid(1).upper(),
            "event_type": "like",
            "user_id": tid("u").upper(),
        },
        LIMITS,
        NOW,
    )
    assert ev.track_id == tid(1)
    assert ev.user_id == tid("u")
    assert ev.ts == NOW
    assert ev.event_id is None and ev.meta is None and ev.elapsed_ms is None


@pytest.mark.parametrize(
    ("patch", "code", "field"),
    [
        ({"session_id": None}, "missing_field", "session_id"),
        ({"session_id": ""}, "invalid_session_id", "session_id"),
        ({"session_id": "   "}, "invalid_session_id", "session_id"),
        ({"session_id": 12}, "invalid_session_id", "session_id"),
        ({"session_id": "x" * 129}, "invalid_session_id", "session_id"),
        ({"track_id": None}, "missing_field", "track_id"),
        ({"track_id": "not-a-uuid"}, "invalid_track_id", "track_id"),
        ({"track_id": tid(1).replace("-", "")}, "invalid_track_id", "track_id"),
        ({"track_id": 5}, "invalid_track_id", "track_id"),
        ({"user_id": "bob"}, "invalid_user_id", "user_id"),
        ({"event_type": None}, "missing_field", "event_type"),
        ({"event_type": "pause"}, "invalid_event_type", "event_type"),
        ({"event_type": ["like"]}, "invalid_event_type", "event_type"),
        ({"timestamp": "yesterday"}, "invalid_timestamp", "timestamp"),
        ({"timestamp": "2024"}, "invalid_timestamp", "timestamp"),
        ({"timestamp": "2024-13-01T00:00:00Z"}, "invalid_timestamp", "timestamp"),
        ({"timestamp": 1700000000}, "invalid_timestamp", "timestamp"),
        ({"timestamp": "2100-01-01T00:00:00Z"}, "timestamp_in_future", "timestamp"),
        ({"meta": [1]}, "invalid_meta", "meta"),
        ({"meta": "x"}, "invalid_meta", "meta"),
        ({"meta": {"elapsed_ms": -1}}, "invalid_elapsed_ms", "meta.elapsed_ms"),
        ({"meta": {"elapsed_ms": 1.5}}, "invalid_elapsed_ms", "meta.elapsed_ms"),
        ({"meta": {"elapsed_ms": "12"}}, "invalid_elapsed_ms", "meta.elapsed_ms"),
        ({"meta": {"elapsed_ms": True}}, "invalid_elapsed_ms", "meta.elapsed_ms"),
        ({"meta": {"elapsed_ms": 2**64 - 1}}, "invalid_elapsed_ms", "meta.elapsed_ms"),
        ({"meta": {"elapsed_ms": 1e29}}, "invalid_elapsed_ms", "meta.elapsed_ms"),
        ({"context": 3}, "invalid_context", "context"),
        ({"context": "c" * 65}, "invalid_context", "context"),
        ({"event_id": ""}, "invalid_event_id", "event_id"),
        ({"event_id": 7}, "invalid_event_id", "event_id"),
    ],
)
def test_each_rule_has_its_code_and_field(patch: dict, code: str, field: str) -> None:
    obj = event()
    for k, v in patch.items():
        if v is None:
            obj.pop(k, None)
        else:
            obj[k] = v
    check(obj, code, field)


@pytest.mark.parametrize("obj", [[event()], "x", 3, None])
def test_not_an_object(obj: object) -> None:
    check(obj, "not_an_object", None)


def test_timestamps_past_naive_offset_and_near_future() -> None:
    old = validate_event(event(timestamp="1999-12-31T23:59:59Z"), LIMITS, NOW)
    assert old.ts == 946684799.0  # however old, still accepted
    naive = validate_event(event(timestamp="2020-01-01T00:00:00"), LIMITS, NOW)
    assert naive.ts == 1577836800.0  # naive means UTC
    offset = validate_event(event(timestamp="2020-01-01T02:00:00+02:00"), LIMITS, NOW)
    assert offset.ts == naive.ts
    frac = validate_event(event(timestamp="2020-01-01T00:00:00.250Z"), LIMITS, NOW)
    assert frac.ts == naive.ts + 0.25
    from datetime import UTC, datetime

    soon = datetime.fromtimestamp(NOW + 200, UTC).isoformat()
    assert validate_event(event(timestamp=soon), LIMITS, NOW).ts == NOW + 200


def test_unknown_fields_are_ignored_and_meta_kept() -> None:
    ev = validate_event(
        event(
            event_type="skip",
            meta={"elapsed_ms": 2000.0, "x": [1]},
            brand_new_field={"a": 1},
            context="radio",
            event_id="e-1",
        ),
        LIMITS,
        NOW,
    )
    assert ev.elapsed_ms == 2000
    assert ev.meta is not None and '"x":[1]' in ev.meta
    assert ev.context == "radio" and ev.event_id == "e-1"


def test_parse_batch_json_and_ndjson() -> None:
    items, bad = parse_batch(b'[{"a":1},{"b":2}]', ndjson=False)
    assert items == [{"a": 1}, {"b": 2}] and bad == []
    items, bad = parse_batch(b'{"a":1}\n\n{oops\n{"c":3}\n', ndjson=True)
    assert items[0] == {"a": 1} and items[2] == {"c": 3}
    assert [(i, e.code) for i, e in bad] == [(1, "invalid_json")]
    # text/plain bodies that are NDJSON are recognised without the content type
    items, bad = parse_batch(b'{"a":1}\n{"b":2}\n', ndjson=False)
    assert items == [{"a": 1}, {"b": 2}]
    with pytest.raises(EventError) as info:
        parse_batch(b'{"a":1}', ndjson=False)
    assert info.value.code == "not_an_array"
    with pytest.raises(EventError) as info:
        parse_batch(b"[1,", ndjson=False)
    assert info.value.code == "invalid_json"
