"""Kept lanes (docs/reads.md): reads serve what the refresher computed, never compute, and agree
exactly with a computation from the graph once refreshed; min_cursor waits for the lanes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gravityd.core.graph import GravityGraph
from gravityd.core.lanes import READING, LaneIndex, compute_track, read_rebuilds

from .support import event, metric, serve, tid
from .test_graph import DAY, SMALL, T0, random_log

DIRECTIONS = ("out", "in", "both")
NOW = T0 + 400 * DAY


def answers(read: Any, track: str) -> list[list[dict[str, Any]]]:
    out = []
    for direction in DIRECTIONS:
        for limit, min_score in ((1, 0.0), (3, 0.0), (100, 0.5)):
            args = {"limit": limit, "direction": direction, "min_score": min_score}
            out.append(read(track, now=NOW, rejected=True, **args))
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    steps=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 6)), min_size=1, max_size=30),
)
def test_kept_lanes_after_any_interleaving_of_folds_and_refreshes(
    seed: int, steps: list[tuple[int, int]]
) -> None:
    """Fold some events, refresh a few tracks, repeat, in any proportion. At every point a
    track that is not waiting for a refresh (nor any track its two-hop term read) answers
    exactly what a computation from the graph answers; what lags is only what the index
    names as dirty, and its cursor never passes the fold's. Once refreshed, every answer is
    exact."""
    events = random_log(seed, 300)
    gg = GravityGraph(SMALL)
    index = LaneIndex(gg, keep=100)
    tracks = sorted({e.track_id for e in events})
    at = 0
    for fold_n, refresh_n in steps:
        reflected = gg.cursor
        gg.fold(events[at : at + fold_n])
        at += fold_n
        index.mark(gg.take_touched(), reflected)
        for _ in range(refresh_n):
            index.refresh_next()
        assert index.cursor <= gg.cursor
        if not index.dirty:
            assert index.cursor == gg.cursor
        waiting = set(index.waiting())
        for t in tracks:
            if t in waiting:
                continue
            rec = index.get(t)
            if rec is not None and waiting.intersection(rec.deps):
                continue
            assert answers(index.neighbors, t) == answers(gg.neighbors, t)
    index.refresh_all()
    assert index.dirty == 0 and index.cursor == gg.cursor
    for t in tracks:
        assert answers(index.neighbors, t) == answers(gg.neighbors, t)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), keep=st.integers(1, 4))
def test_a_short_keep_is_the_head_of_the_whole_order(seed: int, keep: int) -> None:
    """Kept lists past `keep` lanes are cut at the keep-th weight before sorting (ties there
    included): whatever the cut, they are exactly the head of the complete order."""
    gg = GravityGraph(SMALL)
    gg.fold(random_log(seed, 300))
    for t in gg.tracks():
        whole, short = compute_track(gg, t, None, 10_000), compute_track(gg, t, None, keep)
        assert short.fan == whole.fan
        for name in ("out", "inn", "both"):
            a, b = getattr(whole, name), getattr(short, name)
            assert (b.ids, list(b.weights), b.top) == (a.ids[:keep], list(a.weights)[:keep], a.top)
            rejected = (a.rej_ids[:keep], list(a.rej_weights)[:keep])
            assert (b.rej_ids, list(b.rej_weights)) == rejected
            assert (b.dirs, b.rej_dirs) == (
                (a.dirs[:keep], a.rej_dirs[:keep]) if a.dirs is not None else (None, None)
            )


def test_a_hot_track_is_recomputed_once_however_often_it_is_touched() -> None:
    events = random_log(3, 300)
    gg = GravityGraph(SMALL)
    index = LaneIndex(gg)
    for i in range(0, len(events), 5):  # sixty folds, each touching a few of 12 tracks
        reflected = gg.cursor
        gg.fold(events[i : i + 5])
        index.mark(gg.take_touched(), reflected)
    assert index.dirty <= 12
    assert index.refresh_all() == index.refreshed <= 12 + 12 * 12  # own touches + dependents


def test_reads_never_compute_and_the_counter_sees_one_that_would() -> None:
    gg = GravityGraph(SMALL)
    gg.fold(random_log(5, 300))
    index = LaneIndex(gg)
    index.mark_all(gg.cursor)
    index.refresh_all()
    before_refreshed, before = index.refreshed, read_rebuilds()
    token = READING.set(True)
    try:
        for t in gg.tracks():
            answers(index.neighbors, t)
        assert read_rebuilds() == before and index.refreshed == before_refreshed
        gg.neighbors(gg.tracks()[0])  # a computation from the graph, on a read: counted
        assert read_rebuilds() == before + 1
    finally:
        READING.reset(token)


async def test_min_cursor_waits_for_the_lanes_and_reads_never_rebuild(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """With a refresher that would take minutes (a tiny share, a huge bound), a read with
    min_cursor still answers what the writes made: it waits for the lanes cursor, which it
    moves forward, and its Gravityd-Cursor says so. No read computes lanes."""
    client, svc = await serve(
        aiohttp_client,
        tmp_path,
        lanes_max_lag_ms=600_000.0,
        lanes_refresh_share=0.05,
        lanes_refresh_slice_ms=0.1,
        fold_interval_ms=0.0,
    )
    await svc.wait_ready()
    rebuilds = read_rebuilds()
    url = f"/tracks/{tid(1)}/gravity_neighbors"
    last = 0
    for round_ in range(5):
        batch = []
        for i in range(20):
            sid = f"r{round_}-{i}"
            for t in (1, 2 + round_):  # 1 -> 2 + round_, kept
                batch += [event(sid, t, "play_start"), event(sid, t, "play_10s")]
        resp = await client.post("/events", json=batch)
        assert resp.status == 202
        last = (await resp.json())["last_id"]
        got = await client.get(url, params={"min_cursor": last, "limit": 100})
        assert got.status == 200, await got.text()
        assert int(got.headers["Gravityd-Cursor"]) >= last
        lanes = await got.json()
        # every write is in: 1 -> 2 .. 2 + round_, the newest as strong as the others
        assert {x["track_id"] for x in lanes} >= {tid(2 + r) for r in range(round_ + 1)}
        for direction in ("in", "both"):
            back = await client.get(
                f"/tracks/{tid(2 + round_)}/gravity_neighbors",
                params={"min_cursor": last, "direction": direction},
            )
            assert tid(1) in {x["track_id"] for x in await back.json()}
    stats = await (await client.get("/stats", params={"min_cursor": last})).json()
    assert stats["lanes_cursor"] >= last
    assert stats["lanes_max_lag_ms"] == 600_000.0
    text = await (await client.get("/metrics")).text()
    assert metric(text, "gravityd_lanes_read_rebuilds") == read_rebuilds() == rebuilds
    assert metric(text, "gravityd_lanes_refreshed") > 0
    # once refreshed, the kept answer is the one computed from the graph
    await client.post("/admin/fold")
    kept = await (await client.get(url, params={"limit": 100})).json()
    fresh = svc.graph.neighbors(tid(1), limit=100, now=None)
    assert [x["track_id"] for x in kept] == [x["track_id"] for x in fresh]


async def test_the_lag_is_bounded_while_the_fold_runs(aiohttp_client: Any, tmp_path: Path) -> None:
    """The fold refreshes instead of folding more once the oldest touch waits past the bound:
    with a refresher that barely runs, the lag the fold leaves behind stays near the bound."""
    client, svc = await serve(
        aiohttp_client,
        tmp_path,
        lanes_max_lag_ms=50.0,
        lanes_refresh_share=0.05,
        fold_slice_events=20,
    )
    await svc.wait_ready()
    batch = []
    for i in range(300):
        sid = f"b{i}"
        for t in (i % 40, (i * 7) % 40 + 40, (i * 3) % 40):
            batch += [event(sid, t, "play_start"), event(sid, t, "play_10s")]
    assert (await client.post("/events", json=batch)).status == 202
    lags = []
    for _ in range(200):
        lags.append(svc.lanes.index.lag_seconds())
        if svc.graph.cursor >= svc.event_log.last_id and not svc.lanes.index.dirty:
            break
        await asyncio.sleep(0.01)
    assert svc.graph.cursor == svc.event_log.last_id
    text = await (await client.get("/metrics")).text()
    assert "gravityd_lanes_lag_seconds" in text
    assert "gravityd_lanes_dirty_tracks" in text
    assert max(lags) < 5.0  # the bound is 50 ms; a loaded test machine adds slices, not minutes
