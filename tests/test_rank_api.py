"""POST /rank and the in-process rank_candidates, on the same graph."""

from __future__ import annotations

from typing import Any

import pytest

from gravityd import gravity
from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app

from .support import event, make_config, post_and_fold, session, tid


def pool_body(**over: Any) -> dict:
    body = {
        "current_track_id": tid(1),
        "candidate_track_ids": [tid(2), tid(3), tid(4), tid(5)],
        "embeddings_scores": {tid(2): 0.50, tid(3): 0.55, tid(4): 0.60, tid(5): 0.1},
        "session_history": [tid(5)],
    }
    body.update(over)
    return body


async def trained(client: Any) -> None:
    events: list[dict] = []
    for i in range(30):  # listeners keep 1 -> 2
        events += session(f"k{i}", [1, 2])
    for i in range(30):  # and skip 1 -> 4 at once
        events += [*session(f"s{i}", [1]), *session(f"s{i}", [4], "skip", elapsed_ms=300)]
    await post_and_fold(client, events)


async def test_rank_uses_the_graph_and_drops_history(client: Any) -> None:
    empty = await client.post("/rank", json=pool_body())
    assert empty.status == 200
    order = [r["track_id"] for r in (await empty.json())["ranked"]]
    assert order == [tid(4), tid(3), tid(2)]  # no evidence: embedding order, 5 is history
    await trained(client)
    resp = await client.post("/rank", json=pool_body())
    ranked = (await resp.json())["ranked"]
    assert [r["track_id"] for r in ranked] == [tid(2), tid(3), tid(4)]
    top = ranked[0]
    assert top["gravity_score"] > 0 and top["evidence"]["pos"] > 0
    assert ranked[-1]["gravity_score"] < 0  # skipped away from: pushed down
    limited = await client.post("/rank", json=pool_body(limit=1))
    assert [r["track_id"] for r in (await limited.json())["ranked"]] == [tid(2)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing_field"),
        (pool_body(current_track_id="x"), 400, "invalid_current_track_id"),
        (pool_body(candidate_track_ids="x"), 400, "invalid_candidate_track_ids"),
        (pool_body(candidate_track_ids=[]), 400, "empty_pool"),
        (pool_body(candidate_track_ids=["nope"]), 400, "invalid_candidate_track_id"),
        (pool_body(embeddings_scores={tid(2): "high"}), 400, "invalid_embedding_score"),
        (pool_body(embeddings_scores=[1]), 400, "invalid_embeddings_scores"),
        (pool_body(session_history="x"), 400, "invalid_session_history"),
        (pool_body(limit=0), 400, "invalid_limit"),
        (pool_body(candidate_track_ids=[tid(i) for i in range(1001)]), 413, "pool_too_large"),
    ],
)
async def test_rank_validation(client: Any, body: dict, status: int, code: str) -> None:
    resp = await client.post("/rank", json=body)
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code


async def test_rank_rejects_non_finite_scores(client: Any) -> None:
    # JSON has no NaN or infinity: an overflowing literal is refused as bad JSON, a boolean as
    # a bad score; neither reaches the ranking.
    raw = (
        b'{"current_track_id":"%s","candidate_track_ids":["%s"],"embeddings_scores":{"%s":1e999}}'
        % (tid(1).encode(), tid(2).encode(), tid(2).encode())
    )
    resp = await client.post("/rank", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_json"
    resp = await client.post("/rank", json=pool_body(embeddings_scores={tid(2): True}))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_embedding_score"


async def test_http_and_in_process_agree_on_the_same_snapshot(
    aiohttp_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(tmp_path)
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    await trained(client)
    snap = await (await client.post("/admin/snapshot")).json()
    monkeypatch.setenv("GRAVITYD_SNAPSHOT_DIR", cfg.snapshot_dir)
    monkeypatch.setattr(gravity, "_sources", {})
    body = pool_body()
    over_http = (await (await client.post("/rank", json=body)).json())["ranked"]
    in_process = gravity.rank_candidates(
        body["current_track_id"].upper(),  # any case works in-process too
        body["candidate_track_ids"],
        body["embeddings_scores"],
        session_history=body["session_history"],
    )
    assert [r["track_id"] for r in in_process] == [r["track_id"] for r in over_http]
    for a, b in zip(in_process, over_http, strict=True):
        assert a["score"] == pytest.approx(b["score"], rel=1e-6)
    (src,) = gravity._sources.values()
    assert src.path == snap["path"] and src.folder == cfg.snapshot_dir


async def test_in_process_picks_up_a_newer_snapshot(
    aiohttp_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(tmp_path)
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    monkeypatch.setenv("GRAVITYD_SNAPSHOT_DIR", cfg.snapshot_dir)
    monkeypatch.setattr(gravity, "_sources", {})
    monkeypatch.setattr(gravity, "CHECK_INTERVAL_S", 0.0)
    body = pool_body()
    args = (body["current_track_id"], body["candidate_track_ids"], body["embeddings_scores"])
    # no snapshot yet: embedding order
    assert gravity.rank_candidates(*args)[0]["track_id"] == tid(4)
    await client.post("/event", json=event("x", 1))
    await client.post("/admin/fold")
    await client.post("/admin/snapshot")
    assert gravity.rank_candidates(*args)[0]["track_id"] == tid(4)
    await trained(client)
    await client.post("/admin/snapshot")
    assert gravity.rank_candidates(*args, session_history=[tid(5)])[0]["track_id"] == tid(2)
