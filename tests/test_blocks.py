"""Takedowns: a blocked track leaves every read path at once, through the log and snapshots."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from gravityd import gravity
from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.core.takedowns import Blocks, visible_lanes
from gravityd.log.sqlite_schema import connect_sync
from gravityd.log.sqlite_tables import current_blocks
from gravityd.snapshots.files import list_snapshots, load_newest, write_snapshot

from .support import event, metric, recent, run_cli, serve, tid

# Times near now, not a fixed date: the daemon refuses events ahead of its own clock.
T0 = recent(0)
T1 = recent(60)


def sessions() -> list[dict[str, Any]]:
    """Listeners going 1 -> 2 (most), 1 -> 3, 1 -> 4 (least), and 5 -> 2: lanes both ways."""
    out = []
    for i, (nxt, times) in enumerate([(2, 5), (3, 3), (4, 1)]):
        for k in range(times):
            s = f"s{i}-{k}"
            out += [
                event(s, 1, "play_10s", timestamp=T0),
                event(s, nxt, "play_10s", timestamp=T1),
            ]
    for k in range(2):
        out += [
            event(f"t{k}", 5, "play_10s", timestamp=T0),
            event(f"t{k}", 2, "play_10s", timestamp=T1),
        ]
    return out


async def lanes(client: Any, track: int, direction: str = "out", **q: Any) -> list[str]:
    resp = await client.get(
        f"/tracks/{tid(track)}/gravity_neighbors", params={"direction": direction, **q}
    )
    assert resp.status == 200
    return [it["track_id"] for it in await resp.json()]


async def ranked(client: Any, candidates: list[int]) -> list[str]:
    body = {
        "current_track_id": tid(1),
        "candidate_track_ids": [tid(c) for c in candidates],
        "embeddings_scores": {tid(c): 0.5 for c in candidates},
    }
    resp = await client.post("/rank", json=body)
    assert resp.status == 200
    return [it["track_id"] for it in (await resp.json())["ranked"]]


async def test_block_leaves_every_read_path_and_unblock_restores_it(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # One-hop lanes (the read-time terms off), so the expected lists are the edges themselves.
    one_hop = FoldParams(lanes_backward_credit=0.0, lanes_two_hop=0.0)
    client, svc = await serve(aiohttp_client, tmp_path, graph=one_hop)
    assert (await client.post("/events", json=sessions())).status == 202
    assert (await client.post("/admin/fold")).status == 200
    assert await lanes(client, 1) == [tid(2), tid(3), tid(4)]
    assert tid(1) in await lanes(client, 2, "in")
    top = [t["track_id"] for t in await (await client.get("/tracks/top")).json()]
    assert tid(2) in top

    resp = await client.put(f"/admin/tracks/{tid(2)}/block")
    assert resp.status == 200
    body = await resp.json()
    assert body["blocked"] is True and body["changed"] is True and body["id"] > 0
    again = await (await client.put(f"/admin/tracks/{tid(2).upper()}/block")).json()
    assert again["blocked"] is True and again["changed"] is False  # idempotent

    # gone at once from every read path, in every direction
    assert await lanes(client, 1) == [tid(3), tid(4)]
    for direction in ("out", "in", "both"):
        for track in (1, 3, 4, 5):
            assert tid(2) not in await lanes(client, track, direction, rejected="1")
        assert await lanes(client, 2, direction) == []  # a blocked track has no lanes itself
    # the strongest visible lane scores 1 again; min_score and limit apply after the block
    resp = await client.get(f"/tracks/{tid(1)}/gravity_neighbors", params={"limit": 1})
    (first,) = await resp.json()
    assert first["track_id"] == tid(3) and first["normalized_score"] == 1.0
    resp = await client.get(f"/tracks/{tid(1)}/gravity_neighbors", params={"min_score": 0.5})
    assert [it["track_id"] for it in await resp.json()] == [tid(3)]  # 4 scores 1/3 of 3
    top = [t["track_id"] for t in await (await client.get("/tracks/top")).json()]
    assert top and tid(2) not in top
    assert set(await ranked(client, [2, 3, 4])) == {tid(3), tid(4)}
    track = await (await client.get(f"/tracks/{tid(2)}")).json()
    assert track["blocked"] is True
    assert "blocked" not in await (await client.get(f"/tracks/{tid(3)}")).json()
    listed = await (await client.get("/admin/blocks")).json()
    assert [b["track_id"] for b in listed["blocks"]] == [tid(2)] and listed["count"] == 1
    assert metric(await (await client.get("/metrics")).text(), "gravityd_blocked_tracks") == 1

    # the graph keeps folding the blocked track's events
    more = [event(f"u{k}", n, "play_10s", timestamp=T0) for k in range(3) for n in (4, 2)]
    assert (await client.post("/events", json=more)).status == 202
    assert (await client.post("/admin/fold")).status == 200
    assert tid(2) not in await lanes(client, 4)

    resp = await client.delete(f"/admin/tracks/{tid(2)}/block")
    assert resp.status == 200
    assert (await resp.json())["changed"] is True
    assert await lanes(client, 1) == [tid(2), tid(3), tid(4)]
    assert tid(2) in await lanes(client, 4)
    assert set(await ranked(client, [2, 3, 4])) == {tid(2), tid(3), tid(4)}
    assert (await (await client.get("/admin/blocks")).json())["blocks"] == []
    # ...exactly as it would have been: the same events folded without any block
    control = GravityGraph(svc.config.graph)
    conn = connect_sync(svc.config.db)
    try:
        rows = conn.execute(
            "SELECT id, session_id, track_id, event_type, ts, elapsed_ms, context FROM events"
            " ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    control.fold(rows)
    assert svc.graph.to_edge_list() == control.to_edge_list()


async def test_block_refuses_bad_ids_and_wants_admin(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(aiohttp_client, tmp_path)
    resp = await client.put("/admin/tracks/not-a-uuid/block")
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_track_id" and err["field"] == "id"
    assert (await client.delete("/admin/tracks/x/block")).status == 400
    resp = await client.put(f"/admin/tracks/{tid(1)}/block", headers={"Origin": "http://x"})
    assert resp.status == 403  # the admin rules of every /admin route
    strict, _ = await serve(aiohttp_client, tmp_path / "strict", admin_token="s3cret")
    assert (await strict.put(f"/admin/tracks/{tid(1)}/block")).status == 401
    assert (await strict.get("/admin/blocks")).status == 401
    ok = await strict.put(
        f"/admin/tracks/{tid(1)}/block", headers={"Authorization": "Bearer s3cret"}
    )
    assert ok.status == 200


def admin(url: str, method: str, track: int) -> dict[str, Any]:
    resp = requests.request(method, f"{url}/admin/tracks/{tid(track)}/block", timeout=10)
    resp.raise_for_status()
    return resp.json()


def blocked_ids(url: str) -> set[str]:
    resp = requests.get(url + "/admin/blocks", timeout=10)
    resp.raise_for_status()
    return {b["track_id"] for b in resp.json()["blocks"]}


@pytest.mark.process
def test_blocks_survive_restarts_snapshots_and_restores(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = daemon_factory().start()
    requests.post(d.url + "/events", json=sessions(), timeout=10).raise_for_status()
    requests.post(d.url + "/admin/fold", timeout=10).raise_for_status()
    admin(d.url, "PUT", 2)
    written = requests.post(d.url + "/admin/snapshot", timeout=30).json()["path"]
    snap = str(tmp_path / "saved.gsnap")
    shutil.copyfile(written, snap)  # an operator's copy, kept elsewhere
    admin(d.url, "PUT", 3)
    admin(d.url, "DELETE", 2)
    assert blocked_ids(d.url) == {tid(3)}
    assert d.terminate() == 0

    # in the log's database: the blocks table, ordered by position
    conn = connect_sync(d.db)
    try:
        assert [t for t, _, _ in current_blocks(conn)] == [tid(3)]
    finally:
        conn.close()

    d.start()  # from the shutdown snapshot
    assert blocked_ids(d.url) == {tid(3)}
    assert tid(3) not in [
        it["track_id"]
        for it in requests.get(f"{d.url}/tracks/{tid(1)}/gravity_neighbors", timeout=5).json()
    ]
    d.kill()

    # from the log alone: every snapshot gone, the whole log replayed
    for info in list_snapshots(d.db.parent / "snapshots"):
        info.path.unlink()
    d.start()
    assert blocked_ids(d.url) == {tid(3)}
    assert d.terminate() == 0

    # a restored snapshot (2 blocked, 3 not yet) plus the log after its cursor: the same end
    res = run_cli(
        "restore", snap, "--db", str(d.db), "--snapshot-dir", str(d.db.parent / "snapshots")
    )
    assert res.returncode == 0, res.stderr
    found = load_newest(d.db.parent / "snapshots")
    assert found is not None and Blocks.from_header(found[1]).ids == {tid(2)}
    d.start()
    assert blocked_ids(d.url) == {tid(3)}
    d.kill()

    # the cron builder folds blocks the same way into its snapshot
    res = run_cli("build", "--db", str(d.db), "--snapshot-dir", str(d.db.parent / "snapshots"))
    assert res.returncode == 0, res.stderr
    found = load_newest(d.db.parent / "snapshots")
    assert found is not None and Blocks.from_header(found[1]).ids == {tid(3)}


@pytest.mark.process
def test_in_process_rank_candidates_honours_blocks_through_the_snapshot(
    daemon_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = daemon_factory().start()
    monkeypatch.setenv("GRAVITYD_SNAPSHOT_DIR", str(d.db.parent / "snapshots"))
    monkeypatch.delenv("GRAVITYD_CONFIG", raising=False)
    monkeypatch.setattr(gravity, "CHECK_INTERVAL_S", 0.0)  # look at the folder on every call
    monkeypatch.setattr(gravity, "_sources", {})
    requests.post(d.url + "/events", json=sessions(), timeout=10).raise_for_status()
    requests.post(d.url + "/admin/fold", timeout=10).raise_for_status()

    def rank() -> list[str]:
        cands = [tid(2), tid(3), tid(4)]
        out = gravity.rank_candidates(tid(1), cands, {c: 0.5 for c in cands}, [])
        return [it["track_id"] for it in out]

    requests.post(d.url + "/admin/snapshot", timeout=30).raise_for_status()
    assert rank()[0] == tid(2)
    admin(d.url, "PUT", 2)
    requests.post(d.url + "/admin/snapshot", timeout=30).raise_for_status()
    assert rank() == [tid(3), tid(4)]
    # given a graph, the caller passes the blocks it knows
    g = load_newest(d.db.parent / "snapshots")
    assert g is not None
    out = gravity.rank_candidates(tid(1), [tid(2), tid(3)], {}, graph=g[2], blocked={tid(3)})
    assert [it["track_id"] for it in out] == [tid(2)]
    admin(d.url, "DELETE", 2)
    requests.post(d.url + "/admin/snapshot", timeout=30).raise_for_status()
    assert rank()[0] == tid(2)


def test_snapshots_without_blocks_still_load(tmp_path: Path) -> None:
    gg = GravityGraph()
    gg.fold([(1, "s", tid(1), "play_10s", 1.0, None, None)])
    write_snapshot(gg, tmp_path)  # the 0.2 header: no blocks field
    found = load_newest(tmp_path)
    assert found is not None and "blocks" not in found[1]
    assert len(Blocks.from_header(found[1])) == 0
    b = Blocks()
    b.apply(tid(7), True, 5, 1.0)
    write_snapshot(gg, tmp_path, blocks=b)
    found = load_newest(tmp_path)
    assert found is not None and Blocks.from_header(found[1]).ids == {tid(7)}


def test_blocks_state_is_last_writer_wins_in_any_order() -> None:
    changes = [(tid(1), True, 3), (tid(1), False, 7), (tid(2), True, 8), (tid(1), True, 9)]
    want = None

    for order in itertools.permutations(changes):
        b = Blocks()
        for track, blocked, pos in order:
            b.apply(track, blocked, pos, float(pos))
        assert want is None or b.ids == want
        want = b.ids
    assert want == {tid(1), tid(2)}
    rows = [
        (3, "", tid(1), "block", 1.0, None, None),
        (4, "s", tid(1), "play_10s", 1.0, None, None),
    ]
    b = Blocks()
    assert b.fold(rows) == 1 and tid(1) in b
    assert b.fold([(2, "", tid(1), "unblock", 1.0, None, None)]) == 1 and tid(1) in b  # older
    with pytest.raises(ValueError):
        Blocks.from_record([["x", "not a position", 1.0]])


def test_visible_lanes_asks_for_more_until_enough_are_left() -> None:
    lanes = [
        {"track_id": f"t{i}", "weight": 10.0 - i, "normalized_score": (10.0 - i) / 10}
        for i in range(10)
    ]
    asked: list[int] = []

    def fetch(n: int) -> list[dict[str, Any]]:
        asked.append(n)
        return lanes[:n]

    b = Blocks()
    for i in range(5):
        b.apply(f"t{i}", True, i + 1, 0.0)
    out = visible_lanes(fetch, 3, 0.0, b)
    assert [it["track_id"] for it in out] == ["t5", "t6", "t7"]
    assert out[0]["normalized_score"] == 1.0
    assert out[1]["normalized_score"] == pytest.approx(4 / 5)
    assert asked == [6, 12]
