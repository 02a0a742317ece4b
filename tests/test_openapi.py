"""The OpenAPI description: in step with the router, and true of a real server under fuzzing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app
from gravityd.http.openapi import build_spec

from .support import Daemon, event, make_config, tid


def _code(response: Any) -> str:
    return response.json()["error"]["code"]


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """not_a_server_error, except the contract's own 503: a read for a position the log has not
    reached (a fuzzed min_cursor) is answered not_caught_up once read_wait_ms has passed."""
    fuzzed = "min_cursor" in str(case.query or case.body or "")
    if fuzzed and response.status_code == 503 and _code(response) == "not_caught_up":
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 25  # per operation and mode: the whole fuzz stays within a few seconds in CI


def test_spec_documents_exactly_the_routes(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    app = create_app(Gravityd(cfg), manage_service=False)
    routed = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    spec = build_spec(cfg)
    documented = {(path, m) for path, ops in spec["paths"].items() for m in ops}
    assert routed == documented
    # The documented limits are the configured ones.
    cfg2 = make_config(tmp_path, max_batch_events=9000, max_rank_pool=2000)
    spec2 = build_spec(cfg2)
    batch = spec2["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["maxItems"] == 9000
    pool = spec2["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"]
    assert pool["schema"]["properties"]["candidate_track_ids"]["maxItems"] == 2000


async def test_openapi_json_is_served(client: Any) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    body = await resp.json()
    assert body["openapi"].startswith("3.1")
    assert "/tracks/{id}/gravity_neighbors" in body["paths"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A real daemon with a small graph, and the schema it serves."""
    # A fuzzed min_cursor past the log waits read_wait_ms before its 503: keep that short.
    d = Daemon(tmp_path_factory.mktemp("fuzz"), env={"GRAVITYD_READ_WAIT_MS": "20"}).start()
    try:
        events = [event(f"s{i % 5}", i % 17) for i in range(300)]
        for i in range(6):  # radio picks of two arms, so the report's schema meets real arms
            arm = f"radio:{'ab'[i % 2]}"
            events.append(event(f"r{i}", 20 + i, "radio_next", context=arm))
            events.append(event(f"r{i}", 20 + i, "skip" if i < 3 else "play_10s"))
        requests.post(d.url + "/events", json=events, timeout=10).raise_for_status()
        requests.post(d.url + "/admin/fold", timeout=10).raise_for_status()
        schema = schemathesis.openapi.from_url(d.url + "/openapi.json")
        yield d.url, schema
    finally:
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait(10)


def _negatable(op: dict[str, Any]) -> bool:
    """Only inputs with constraints have invalid forms (a free string path part has none)."""
    return "requestBody" in op or any(
        p["in"] == "query" or p["schema"].get("format") for p in op.get("parameters", [])
    )


def cases() -> list[Any]:
    spec = build_spec(make_config(Path("/nonexistent")))
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            label = f"{method.upper()} {path}"
            out.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label}-positive"))
            if _negatable(op):
                out.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label}-negative"))
    return out


@pytest.mark.process
@pytest.mark.parametrize(("label", "mode"), cases())
def test_fuzz_operation(live: tuple[str, Any], label: str, mode: GenerationMode) -> None:
    """No 5xx, every status documented, every body in its documented shape (errors included)."""
    url, schema = live
    op = schema.find_operation_by_label(label)
    assert op is not None, label
    seen: set[int] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=url, timeout=30)
        case.validate_response(response, checks=CHECKS)
        seen.add(response.status_code)
        if response.status_code >= 400:
            err = response.json()["error"]
            assert isinstance(err["code"], str) and isinstance(err["message"], str)

    run()
    assert seen, "no request was made"


# ------------------------------------------------------------ every documented status is real

# Statuses whose setup (a stalled body, a full disk, a saturated server...) lives in a test of
# its own; each name must exist, so deleting such a test breaks this one.
ELSEWHERE = {
    "408": "tests.test_limits.test_slow_body_gets_408_and_nothing_is_stored",
    "414": "tests.test_limits.test_long_url_and_headers_are_refused",
    "503": "tests.test_limits.test_concurrency_cap_answers_503_and_probes_still_answer",
    "304": "tests.test_catalog_api.test_static_files_etag_cors_and_policy",
    "403": "tests.test_ingest_api.test_admin_forbidden_without_token_off_loopback",
    "409": "tests.test_replicas.test_one_snapshotter_among_replicas",
}
ALSO_503 = {
    "POST /event": "tests.test_faults.test_sqlite_full_answers_503_then_recovers",
    "POST /events": "tests.test_faults.test_real_full_disk_loses_nothing_acknowledged",
    "POST /admin/snapshot": (
        "tests.test_faults.test_unwritable_snapshot_folder_keeps_previous_and_retries"
    ),
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A daemon that rate limits loopback too and wants an admin token."""
    env = {
        "GRAVITYD_RATE_LIMIT_EXEMPT": "",
        "GRAVITYD_RATE_LIMIT_PER_S": "0.01",
        "GRAVITYD_RATE_LIMIT_BURST": "1",
        "GRAVITYD_ADMIN_TOKEN": "s3cret",
    }
    d = Daemon(tmp_path_factory.mktemp("strict"), env=env).start()
    try:
        yield d.url
    finally:
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait(10)


@pytest.mark.process
def test_documented_statuses_are_real(live: tuple[str, Any], strict: str) -> None:
    """Each documented (operation, status) is produced by a real request here, its body checked
    against the schema, or by the named test that sets its fault up."""
    import importlib

    url, schema = live
    track = event()["track_id"]
    big = [event("b", i) for i in range(5001)]
    rank = {"current_track_id": track, "candidate_track_ids": [track], "embeddings_scores": {}}
    table: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST /event", url, {"body": event("t1")}, "202"),
        ("POST /event", url, {"body": {"track_id": track}}, "400"),
        ("POST /event", url, {"body": {**event(), "pad": "x" * 70000}}, "413"),
        ("POST /event", url, {"body": "x", "media_type": "text/xml"}, "415"),
        ("POST /event", strict, {"body": event("t2")}, "202"),
        ("POST /event", strict, {"body": event("t3")}, "429"),
        ("POST /events", url, {"body": [event("t4")]}, "202"),
        ("POST /events", url, {"body": [{"nope": 1}]}, "400"),
        ("POST /events", url, {"body": big}, "413"),
        ("POST /events", url, {"body": "x", "media_type": "text/xml"}, "415"),
        ("POST /events", strict, {"body": [event("t5")]}, "429"),
        ("GET /tracks/top", url, {"query": {"limit": 3}}, "200"),
        ("GET /tracks/top", url, {"query": {"limit": 0}}, "400"),
        ("GET /tracks/{id}", url, {"path_parameters": {"id": track}}, "200"),
        ("GET /tracks/{id}", url, {"path_parameters": {"id": "x"}}, "400"),
        (
            "GET /tracks/{id}/gravity_neighbors",
            url,
            {"path_parameters": {"id": track}, "query": {"with": "meta", "rejected": "1"}},
            "200",
        ),
        (
            "GET /tracks/{id}/gravity_neighbors",
            url,
            {"path_parameters": {"id": track}, "query": {"limit": 1000}},
            "400",
        ),
        ("POST /rank", url, {"body": rank}, "200"),
        ("POST /rank", url, {"body": {**rank, "limit": 0}}, "400"),
        ("POST /rank", url, {"body": {**rank, "candidate_track_ids": [track] * 1001}}, "413"),
        ("POST /rank", url, {"body": "x", "media_type": "text/xml"}, "415"),
        ("GET /healthz", url, {}, "200"),
        ("GET /readyz", url, {}, "200"),
        ("GET /metrics", url, {}, "200"),
        ("GET /stats", url, {}, "200"),
        ("GET /radio/report", url, {"query": {"bucket": "hour", "arms": "radio:a,radio:b"}}, "200"),
        ("GET /radio/report", url, {"query": {"bucket": "week"}}, "400"),
        ("GET /stats", url, {"query": {"min_cursor": "-1"}}, "400"),
        ("GET /stats", url, {"query": {"min_cursor": 10**15}}, "503"),
        ("POST /admin/fold", url, {}, "200"),
        ("POST /admin/fold", strict, {}, "401"),
        ("POST /admin/snapshot", url, {}, "200"),
        ("POST /admin/snapshot", strict, {}, "401"),
        # the snapshot above brought the galaxies up to the lanes
        ("GET /galaxies", url, {"query": {"limit": 5}}, "200"),
        ("GET /galaxies", url, {"query": {"limit": 0}}, "400"),
        ("GET /galaxies/{galaxy}", url, {"path_parameters": {"galaxy": 0}}, "200"),
        ("GET /galaxies/{galaxy}", url, {"path_parameters": {"galaxy": "x"}}, "400"),
        ("GET /galaxies/{galaxy}", url, {"path_parameters": {"galaxy": 10**6}}, "404"),
        ("GET /route", url, {"query": {"from": track, "to": track}}, "200"),
        ("GET /route", url, {"query": {"from": "x", "to": track}}, "400"),
        ("GET /route", url, {"query": {"from": track, "to": tid("nowhere")}}, "404"),
        ("PUT /admin/tracks/{id}/block", url, {"path_parameters": {"id": track}}, "200"),
        ("PUT /admin/tracks/{id}/block", url, {"path_parameters": {"id": "x"}}, "400"),
        ("PUT /admin/tracks/{id}/block", strict, {"path_parameters": {"id": track}}, "401"),
        ("GET /admin/blocks", url, {}, "200"),
        ("GET /admin/blocks", strict, {}, "401"),
        ("GET /admin/blocks", url, {"query": {"min_cursor": "-1"}}, "400"),
        ("GET /admin/blocks", url, {"query": {"min_cursor": 10**15}}, "503"),
        ("DELETE /admin/tracks/{id}/block", url, {"path_parameters": {"id": track}}, "200"),
        ("DELETE /admin/tracks/{id}/block", url, {"path_parameters": {"id": "x"}}, "400"),
        ("DELETE /admin/tracks/{id}/block", strict, {"path_parameters": {"id": track}}, "401"),
        ("GET /openapi.json", url, {}, "200"),
        ("GET /", url, {}, "200"),
        ("GET /client.js", url, {}, "200"),
        ("GET /static/{name}", url, {"path_parameters": {"name": "explorer.js"}}, "200"),
        ("GET /static/{name}", url, {"path_parameters": {"name": "nope.js"}}, "404"),
    ]
    seen: set[tuple[str, str]] = set()
    for label, base, kwargs, status in table:
        op = schema.find_operation_by_label(label)
        kwargs.setdefault("media_type", "application/json" if "body" in kwargs else None)
        case = op.Case(**kwargs)
        response = case.call(base_url=base, timeout=30)
        assert str(response.status_code) == status, (label, response.text[:300])
        case.validate_response(response, checks=CHECKS)
        seen.add((label, status))
    # The lanes schema met a real lane: the fuzz graph's busiest track has some.
    lanes = requests.get(f"{url}/tracks/{event('s', 1)['track_id']}/gravity_neighbors", timeout=5)
    assert lanes.json(), "the fixture graph should give track 1 lanes"

    documented = {
        (f"{m.upper()} {p}", code)
        for p, ops in schema.raw_schema["paths"].items()
        for m, op in ops.items()
        for code in op["responses"]
    }
    for label, code in sorted(documented - seen):
        where = ALSO_503.get(label) if code == "503" else None
        where = where or ELSEWHERE.get(code)
        if label == "GET /readyz" and code == "503":
            where = "tests.test_ingest_api.test_readyz_is_503_until_caught_up"
        assert where, f"{label} {code} is documented but no test produces it"
        module, name = where.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), where
