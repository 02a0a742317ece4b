"""Events in, /admin/fold, warp lanes out: the graph through a real server."""

from __future__ import annotations

from typing import Any

import pytest

from .support import post_and_fold, session, tid


async def test_events_in_fold_neighbors_out(client: Any) -> None:
    events = []
    for i in range(5):  # 1 -> 2 kept five times
        events += session(f"a{i}", [1, 2])
    events += session("b", [1, 3])  # 1 -> 3 kept once
    for i in range(3):  # 1 -> 4 skipped at once, three times
        events += [*session(f"c{i}", [1]), *session(f"c{i}", [4], "skip", elapsed_ms=500)]
    body = await post_and_fold(client, events)
    assert body["cursor"] == len(events)
    resp = await client.get(f"/tracks/{tid(1)}/gravity_neighbors")
    assert resp.status == 200
    lanes = await resp.json()
    assert [lane["track_id"] for lane in lanes] == [tid(2), tid(3)]  # 4 was rejected: no lane
    assert lanes[0]["normalized_score"] == 1.0
    assert 0 < lanes[1]["normalized_score"] < 1
    assert lanes[0]["weight"] > lanes[1]["weight"] > 0
    assert lanes[0]["evidence"]["n"] == 5
    # the in direction of 2 shows 1
    resp = await client.get(f"/tracks/{tid(2)}/gravity_neighbors?direction=in")
    assert [lane["track_id"] for lane in await resp.json()] == [tid(1)]
    both = await (await client.get(f"/tracks/{tid(2)}/gravity_neighbors?direction=both")).json()
    assert [lane["track_id"] for lane in both] == [tid(1)]
    # limit and min_score
    one = await (await client.get(f"/tracks/{tid(1)}/gravity_neighbors?limit=1")).json()
    assert len(one) == 1
    strong = await (await client.get(f"/tracks/{tid(1)}/gravity_neighbors?min_score=0.5")).json()
    assert [lane["track_id"] for lane in strong] == [tid(2)]


async def test_unknown_track_is_empty_and_uppercase_ids_work(client: Any) -> None:
    await post_and_fold(client, session("s", [1, 2]))
    resp = await client.get(f"/tracks/{tid(99)}/gravity_neighbors")
    assert resp.status == 200 and await resp.json() == []
    resp = await client.get(f"/tracks/{tid(1).upper()}/gravity_neighbors")
    assert [lane["track_id"] for lane in await resp.json()] == [tid(2)]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/tracks/not-a-uuid/gravity_neighbors", "invalid_track_id"),
        (f"/tracks/{tid(1)}/gravity_neighbors?limit=0", "invalid_limit"),
        (f"/tracks/{tid(1)}/gravity_neighbors?limit=101", "invalid_limit"),
        (f"/tracks/{tid(1)}/gravity_neighbors?limit=ten", "invalid_limit"),
        (f"/tracks/{tid(1)}/gravity_neighbors?direction=up", "invalid_direction"),
        (f"/tracks/{tid(1)}/gravity_neighbors?min_score=2", "invalid_min_score"),
        (f"/tracks/{tid(1)}/gravity_neighbors?min_score=nan", "invalid_min_score"),
    ],
)
async def test_neighbors_validation(client: Any, path: str, code: str) -> None:
    resp = await client.get(path)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code


async def test_fold_metrics_and_readiness(client: Any) -> None:
    await post_and_fold(client, session("s", [1, 2, 3]))
    text = await (await client.get("/metrics")).text()
    assert "gravityd_fold_lag_events 0.0" in text
    assert "gravityd_graph_nodes 3.0" in text
    assert "gravityd_graph_edges" in text
    assert "gravityd_fold_events_total 6.0" in text
    ready = await (await client.get("/readyz")).json()
    assert ready["ready"] is True and ready["cursor"] == ready["last_id"] == 6


async def test_a_kept_answer_never_outlives_the_fold_or_a_takedown(client: Any) -> None:
    """Neighbors answers are served from kept lanes; a fold that touches the track (refreshed
    by /admin/fold before it answers), or a takedown, shows in the very next read."""
    url = f"/tracks/{tid(1)}/gravity_neighbors"
    await post_and_fold(client, session("a", [1, 2]) + session("b", [1, 3]) + session("c", [1, 3]))
    first = await (await client.get(url)).json()
    assert [x["track_id"] for x in first] == [tid(3), tid(2)]
    more = []
    for i in range(4):
        more += session(f"d{i}", [1, 2])
    await post_and_fold(client, more)
    again = await (await client.get(url)).json()
    assert [x["track_id"] for x in again] == [tid(2), tid(3)]  # 1->2 is now the strongest
    assert (await client.put(f"/admin/tracks/{tid(2)}/block")).status == 200
    after = await (await client.get(url)).json()
    assert [x["track_id"] for x in after] == [tid(3)]
