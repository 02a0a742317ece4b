"""The route table is the one list of routes: what it says of a route is what a real server does
and what the OpenAPI document says, for every route, including ones added later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gravityd.http.openapi import build_spec
from gravityd.http.routes import ROUTES, PathSet, Route, served

from .support import event, make_config, serve, tid

TRACK = tid(1)
RANK_BODY = {"current_track_id": TRACK, "candidate_track_ids": [tid(2)], "embeddings_scores": {}}
BODIES: dict[str, Any] = {"/event": event(), "/events": [event()], "/rank": RANK_BODY}


def concrete(route: Route) -> str:
    """A path of this route's template that reaches its handler."""
    return (
        route.path.replace("{id}", TRACK).replace("{name}", "explorer.js").replace("{galaxy}", "0")
    )


QUERIES: dict[str, dict[str, str]] = {"/route": {"from": TRACK, "to": tid(2)}}


async def call(client: Any, route: Route, **query: str) -> Any:
    body = BODIES.get(route.path)
    params = {**QUERIES.get(route.path, {}), **query}
    return await client.request(route.method, concrete(route), params=params, json=body)


def documents_min_cursor(spec: dict[str, Any], route: Route) -> bool:
    op = spec["paths"][route.path][route.method.lower()]
    return any(p["name"] == "min_cursor" for p in op.get("parameters", []))


async def test_every_read_route_carries_the_cursor_on_its_errors(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """A read answered with an error (here a bad min_cursor) still says where the graph is."""
    client, _ = await serve(aiohttp_client, tmp_path)
    await client.post("/events", json=[event("a", 1), event("a", 2)])
    folded = await (await client.post("/admin/fold")).json()
    reads = [r for r in served("all") if r.reads]
    assert {r.path for r in reads} >= {"/radio/report", "/admin/blocks", "/rank", "/stats"}
    for route in reads:
        resp = await call(client, route, min_cursor="-1")
        assert resp.status == 400, route.label
        assert (await resp.json())["error"]["code"] == "invalid_min_cursor", route.label
        assert resp.headers.get("Gravityd-Cursor") == str(folded["cursor"]), route.label


async def test_a_route_takes_min_cursor_exactly_when_it_documents_it(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """Asked with a bad min_cursor, every route either refuses it (a read: documented) or
    ignores it (documented nowhere) — the handler, the table and the document agree."""
    client, svc = await serve(aiohttp_client, tmp_path)
    spec = build_spec(svc.config)
    for route in served("all"):
        resp = await call(client, route, min_cursor="-1")
        body = await resp.json() if resp.content_type == "application/json" else None
        refused = isinstance(body, dict) and body.get("error", {}).get("code") == (
            "invalid_min_cursor"
        )
        assert refused == route.reads == documents_min_cursor(spec, route), (
            route.label,
            resp.status,
        )


async def test_cors_answers_exactly_the_table_s_cors_routes(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, cors_origins=["https://radio.example"])
    origin = {"Origin": "https://radio.example"}
    for route in served("all"):
        preflight = await client.options(
            concrete(route), headers={**origin, "Access-Control-Request-Method": route.method}
        )
        if route.cors:
            assert preflight.status == 204, route.label
            assert preflight.headers["Access-Control-Allow-Origin"] == origin["Origin"]
        else:
            assert "Access-Control-Allow-Origin" not in preflight.headers, route.label
        if route.cors:  # the real request too, error answers included
            resp = await client.request(route.method, concrete(route), headers=origin)
            assert resp.headers.get("Access-Control-Allow-Origin") == origin["Origin"], (
                route.label
            )


async def test_a_writer_names_the_reader_routes_it_does_not_serve(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, role="writer")
    mine = {r.path for r in served("writer")}
    others = [r for r in ROUTES if r.path not in mine]
    assert others, "the table has reader-only routes"
    for route in others:
        resp = await client.request(route.method, concrete(route))
        assert resp.status == 404, route.label
        assert (await resp.json())["error"]["code"] == "wrong_role", route.label
    resp = await client.get("/no/such/route")
    assert (await resp.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize("role", ["all", "writer", "replica"])
def test_the_document_and_the_table_agree(tmp_path: Path, role: str) -> None:
    spec = build_spec(make_config(tmp_path, role=role))
    documented = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    assert documented == {(r.path, r.method) for r in served(role)}
    for route in served(role):
        op = spec["paths"][route.path][route.method.lower()]
        assert ("security" in op) == route.admin, route.label
        assert ("429" in op["responses"]) == route.rate_limited, route.label
        assert ("414" in op["responses"]) == route.capped, route.label
        ok = op["responses"].get("200") or op["responses"]["202"]
        headers = ok.get("headers", {})
        assert ("Gravityd-Cursor" in headers) == route.reads, route.label


def test_the_table_keeps_the_contract_s_rules() -> None:
    labels = [r.label for r in ROUTES]
    assert len(labels) == len(set(labels)), "a route declared twice"
    for route in ROUTES:
        assert not (route.admin and route.cors), f"{route.label}: /admin/* never answers CORS"
        assert route.admin == route.path.startswith("/admin/"), route.label
        if route.reads:
            assert route.roles <= {"all", "replica"}, f"{route.label}: a read needs a graph"
    # The router takes the first match: the literal path must come before the template.
    paths = [r.path for r in ROUTES]
    assert paths.index("/tracks/top") < paths.index("/tracks/{id}")


def test_path_set_matches_templates_one_segment_at_a_time() -> None:
    paths = PathSet(["/event", "/tracks/{id}", "/tracks/{id}/gravity_neighbors"])
    assert "/event" in paths and f"/tracks/{TRACK}" in paths
    assert f"/tracks/{TRACK}/gravity_neighbors" in paths
    assert "/events" not in paths and "/tracks/" not in paths
    assert f"/tracks/{TRACK}/x" not in paths and "/tracks/a/b/gravity_neighbors" not in paths
    assert "/x" not in PathSet([])
