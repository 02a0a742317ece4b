"""The learned transition model: what it learns from kept and skipped verdicts, its bit-for-bit
determinism (the same log, whatever the fold's batches, trains the same model), its trip through
a real snapshot file, and how the ranking uses it as a prior."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gravityd.core.events import FoldEvent
from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.core.ranking import RankParams, rank_pool
from gravityd.core.session_index import SessionIndex, SessionQuery, session_scores
from gravityd.core.transitions import ModelParams, TransitionModel, edge_arrays, fit_transitions
from gravityd.snapshots.files import load_newest, write_snapshot
from gravityd.snapshots.state import State, fold_rows, train_model
from tests.test_session_index import kept

GENRE = {f"{g}{i}": g for g in "abcd" for i in range(6)}  # 4 genres of 6 tracks
NEXT = {"a": "b", "b": "c", "c": "d", "d": "a"}  # listeners keep a -> b, skip b -> a
# a small model; random tracks uniform: in this world every popular target is a good move
FP = FoldParams(
    model_dims=8, model_epochs=150, model_l2=0.01, model_negatives=2, model_negative_popularity=0.0
)


def world_rows(sessions: int, start_id: int = 1) -> list[FoldEvent]:
    """Sessions that alternate between a kept move to the next genre and a skipped move to the
    previous one; deterministic, no clock but the events' own."""
    rows: list[FoldEvent] = []
    eid = start_id
    t = 1_000.0
    tracks = sorted(GENRE)
    for s in range(sessions):
        sid = f"s{s}"
        cur = tracks[(s * 7) % len(tracks)]
        rows.append(FoldEvent(eid, sid, cur, "play_start", t, None))
        rows.append(FoldEvent(eid + 1, sid, cur, "play_10s", t + 10, None))
        eid += 2
        for k in range(6):
            t += 60
            g = GENRE[cur]
            if k % 2:  # a move back a genre: skipped at once
                prev = next(p for p, n in NEXT.items() if n == g)
                nxt = f"{prev}{(s + k) % 6}"
                rows.append(FoldEvent(eid, sid, nxt, "play_start", t, None))
                rows.append(FoldEvent(eid + 1, sid, nxt, "skip", t + 1, 1000))
                eid += 2
                continue
            nxt = f"{NEXT[g]}{(s * 3 + k) % 6}"
            rows.append(FoldEvent(eid, sid, nxt, "play_start", t, None))
            rows.append(FoldEvent(eid + 1, sid, nxt, "play_10s", t + 10, None))
            eid += 2
            cur = nxt
        t += 3600  # a new session
    return rows


def folded(rows: list[FoldEvent], parts: int = 1, params: FoldParams = FP) -> GravityGraph:
    graph = GravityGraph(params)
    step = max(1, math.ceil(len(rows) / parts))
    for i in range(0, len(rows), step):
        graph.fold(rows[i : i + step])
    return graph


def test_the_graph_hands_over_its_direct_evidence() -> None:
    rows = [
        FoldEvent(1, "s", "x", "play_start", 0.0, None),
        FoldEvent(2, "s", "x", "play_10s", 10.0, None),
        FoldEvent(3, "s", "y", "play_start", 60.0, None),
        FoldEvent(4, "s", "y", "skip", 61.0, 3000),
        FoldEvent(5, "s", "z", "play_start", 62.0, None),
        FoldEvent(6, "s", "z", "play_10s", 72.0, None),
        FoldEvent(7, "s", "z", "like", 90.0, None),
    ]
    graph = folded(rows, params=FoldParams(half_life_days=0))
    # the skip at 3 s grades the penalty (1 - 3000 / 30000) and passes through y: z's verdicts
    # (a play and a like) are on x -> z, its visible predecessor
    assert sorted(graph.direct_evidence(graph.tracks())) == [
        ("x", "y", 0.0, pytest.approx(0.9)),
        ("x", "z", 3.0, 0.0),
    ]
    arrays = edge_arrays(graph.direct_evidence(graph.tracks()))
    assert arrays.ids == ["x", "y", "z"]
    assert arrays.src.tolist() == [0, 0] and arrays.dst.tolist() == [1, 2]


def test_it_learns_kept_from_skipped_and_carries_over_to_untried_pairs() -> None:
    rows = world_rows(300)
    graph = folded(rows)
    model = train_model(graph)
    assert model.cursor == graph.cursor and len(model) == len(GENRE)
    tried = {(a, b) for a, b, _, _ in graph.direct_evidence(graph.tracks())}
    good = bad = 0.0
    n_good = n_bad = 0
    untried_good = []
    for src in GENRE:
        pri = model.priors([(src, 1.0)], list(GENRE))
        for dst, p in pri.items():
            if GENRE[dst] == NEXT[GENRE[src]]:
                good += p
                n_good += 1
                if (src, dst) not in tried:
                    untried_good.append(p)
            elif NEXT[GENRE[dst]] == GENRE[src]:
                bad += p
                n_bad += 1
    assert good / n_good > 0.6 > 0.25 > bad / n_bad
    # pairs never folded still get the genre's prior, over twice the skipped moves': what was
    # learnt carries over
    assert untried_good and sum(untried_good) / len(untried_good) > max(0.45, 2 * bad / n_bad)


def test_batches_do_not_matter_and_a_replay_is_bit_for_bit() -> None:
    rows = world_rows(60)
    whole = train_model(folded(rows))
    for parts in (3, 17, len(rows)):
        assert train_model(folded(rows, parts)).signature() == whole.signature()
    # the rows' order does not matter either: the input is sorted
    graph = folded(rows)
    ev = graph.direct_evidence(graph.tracks(), graph.clock)  # decayed to the graph's clock
    params = ModelParams.from_fold(FP)
    one = fit_transitions(edge_arrays(ev), params, graph.cursor)
    two = fit_transitions(edge_arrays(list(reversed(ev))), params, graph.cursor)
    assert one.signature() == two.signature() == whole.signature()
    other = fit_transitions(edge_arrays(ev), replace(params, seed=1), graph.cursor)
    assert other.out.tobytes() != one.out.tobytes()


def test_snapshot_round_trip(tmp_path: Path) -> None:
    state = State.empty(FP, None)
    fold_rows(state, world_rows(41))
    state.model = train_model(state.graph)
    write_snapshot(state.graph, tmp_path, 5, state.blocks, state.extra_records(5))
    found = load_newest(tmp_path, FP)
    assert found is not None
    loaded = State.from_found(found, None)
    assert loaded.model.signature() == state.model.signature()
    assert loaded.model.priors([("a0", 1.0)], ["b1"]) == state.model.priors([("a0", 1.0)], ["b1"])
    # a config with other model settings cannot use the vectors: no prior until it trains
    other = replace(FP, model_dims=4)
    found = load_newest(tmp_path, other)
    assert found is not None
    fresh = State.from_found(found, None)
    assert len(fresh.model) == 0 and fresh.model.params.dims == 4


def test_old_snapshot_without_a_model_loads(tmp_path: Path) -> None:
    state = State.empty(FoldParams(), None)
    fold_rows(state, world_rows(3))
    write_snapshot(state.graph, tmp_path, 100, state.blocks, ())  # as before the model
    found = load_newest(tmp_path)
    assert found is not None
    loaded = State.from_found(found, None)
    assert len(loaded.model) == 0 and loaded.cursor == state.cursor
    assert loaded.model.priors([("a0", 1.0)], ["b1"]) == {}


def test_unreadable_part_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        TransitionModel.from_records([{"format": 99}])
    with pytest.raises(ValueError, match="unreadable"):
        TransitionModel.from_records([{"format": 2, "params": [8]}])


def test_priors_skip_what_the_model_never_saw() -> None:
    model = train_model(folded(world_rows(50)))
    assert model.priors([("nobody", 1.0)], ["a0"]) == {}
    assert set(model.priors([("a0", 1.0)], ["a1", "new-track"])) == {"a1"}
    off = train_model(folded(world_rows(5), params=replace(FP, model_dims=0)))
    assert len(off) == 0 and off.priors([("a0", 1.0)], ["a1"]) == {}


def test_the_ranking_takes_the_prior_for_an_edge_without_evidence() -> None:
    graph = folded(world_rows(300))
    model = train_model(graph)
    # a0 -> b-genre is good, a0 -> d-genre bad; pick two without an edge from a0
    pool = [c for c in GENRE if GENRE[c] in "bd" and graph.edge("a0", c) is None]
    good = next(c for c in pool if GENRE[c] == "b")
    bad = next(c for c in pool if GENRE[c] == "d")
    emb = {good: 0.0, bad: 0.1}  # the embedding prefers the bad one
    params = RankParams(rank_session_weight=0.0)
    plain = rank_pool("a0", [good, bad], emb, graph=graph, params=params, now=graph.clock)
    assert [r["track_id"] for r in plain] == [bad, good]
    ranked = rank_pool(
        "a0", [good, bad], emb, graph=graph, params=params, now=graph.clock, model=model
    )
    assert [r["track_id"] for r in ranked] == [good, bad]
    pri = model.priors([("a0", 1.0)], [good, bad])
    a0 = params.rank_neutral_acceptance
    # no evidence: the score is the embedding plus the prior's mapped distance from neutral
    want = (pri[good] - a0) / (1 - a0) if pri[good] >= a0 else (pri[good] - a0) / a0
    by_id = {r["track_id"]: r for r in ranked}
    assert by_id[good]["gravity_score"] == pytest.approx(want, rel=1e-9)
    assert by_id[good]["confidence"] == 0.0
    off = RankParams(rank_session_weight=0.0, rank_model_weight=0.0)
    again = rank_pool("a0", [good, bad], emb, graph=graph, params=off, now=graph.clock, model=model)
    assert [r["track_id"] for r in again] == [bad, good]


def test_exploration_lifts_the_untried_by_its_uncertainty() -> None:
    graph = GravityGraph(FoldParams())
    rows = []
    for i in range(20):  # x -> seen: kept 20 times; x -> new: never tried
        t = 1000.0 + i * 4000
        rows += [
            FoldEvent(4 * i + 1, f"s{i}", "x", "play_start", t, None),
            FoldEvent(4 * i + 2, f"s{i}", "x", "play_10s", t + 10, None),
            FoldEvent(4 * i + 3, f"s{i}", "seen", "play_start", t + 60, None),
            FoldEvent(4 * i + 4, f"s{i}", "seen", "play_10s", t + 70, None),
        ]
    graph.fold(rows)
    beta = 1.0
    p = RankParams(rank_explore=beta, rank_session_weight=0.0)
    ranked = {
        r["track_id"]: r
        for r in rank_pool("x", ["seen", "new"], {}, graph=graph, params=p, now=graph.clock)
    }
    k, a0 = p.rank_confidence_half_evidence, p.rank_neutral_acceptance
    bonus = beta * math.sqrt(a0 * (1 - a0) / (k + 1))
    assert ranked["new"]["gravity_score"] == pytest.approx(bonus / (1 - a0))
    # the well-known edge's bonus is small: evidence shrinks the standard deviation
    e = graph.edge("x", "seen", now=graph.clock)
    assert e is not None
    mass = e["pos"] + e["neg"]
    conf = mass / (mass + k)
    a_hat = conf * 1.0 + (1 - conf) * a0
    a_ucb = a_hat + beta * math.sqrt(a_hat * (1 - a_hat) / (mass + k + 1))
    assert ranked["seen"]["gravity_score"] == pytest.approx((min(1.0, a_ucb) - a0) / (1 - a0))


def test_session_votes_before_the_match_can_be_turned_down() -> None:
    idx = SessionIndex(per_track=10, length=20, sessions=100)
    idx.fold(kept([("s0", ["p", "b", "n"])]))
    q = SessionQuery(sample=10, neighbours=10, position_decay=1.0, item_decay=1.0, idf=0.0)
    sim = 1.0 / math.sqrt(3.0)
    both = session_scores(idx, ["b"], dict.fromkeys(["p", "n"]), q)
    assert both == pytest.approx({"p": sim * math.exp(-1), "n": sim * math.exp(-1)})
    half, after = replace(q, before=0.5), replace(q, before=0.0)
    got = session_scores(idx, ["b"], dict.fromkeys(["p", "n"]), half)
    assert got == pytest.approx({"p": 0.5 * sim * math.exp(-1), "n": sim * math.exp(-1)})
    assert session_scores(idx, ["b"], dict.fromkeys(["p", "n"]), after) == pytest.approx(
        {"n": sim * math.exp(-1)}
    )


def test_memory_is_per_track_not_per_edge() -> None:
    graph = folded(world_rows(100))
    model = train_model(graph)
    assert model.nbytes() == len(model) * (2 * FP.model_dims + 1) * 4  # float32 vectors, bias
    assert model.edges == len(graph.direct_evidence(graph.tracks())) < graph.edge_count
    assert np.all(np.isfinite(model.out)) and np.all(np.isfinite(model.inn))


# ---------------------------------------------------------------- the daemon's background model


@pytest.mark.process  # the training runs in a worker process
async def test_the_daemon_trains_in_the_background_snapshots_and_reloads_it(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from gravityd.daemon.service import Gravityd
    from gravityd.http.app import create_app

    from .support import event, make_config, tid

    def cfg() -> Any:
        c = make_config(tmp_path)
        model = {f.name: getattr(FP, f.name) for f in fields(FP) if f.name.startswith("model_")}
        c.graph = replace(c.graph, **{**model, "model_interval_s": 3600.0})
        return c

    svc = Gravityd(cfg())
    svc.models.inline_rows = 0  # the worker process, as on a real catalogue
    client = await aiohttp_client(create_app(svc))
    body = []
    for ev in world_rows(120):  # the toy world over the API, in log order, stamped now
        extra = {"meta": {"elapsed_ms": ev.elapsed_ms}} if ev.event_type == "skip" else {}
        body.append(event(ev.session_id, ev.track_id, ev.event_type, **extra))
    assert (await client.post("/events", json=body)).status == 202
    assert (await client.post("/admin/fold")).status == 200
    assert len(svc.models.current) == 0  # nothing trained yet: the interval is an hour
    # the explicit signal: a snapshot brings the model up to the graph it writes
    assert (await client.post("/admin/snapshot")).status == 200
    model = svc.models.current
    assert model.cursor == svc.graph.cursor and len(model) == len(GENRE)
    assert model.signature()[1:] == train_model(svc.graph).signature()[1:]  # as a replay would
    metrics = await (await client.get("/metrics")).text()
    assert f"gravityd_model_cursor {float(model.cursor)}" in metrics
    # POST /rank ranks with it: an untried next-genre track above an embedding favourite
    a0 = tid("a0")
    tried = {b for a, b, _, _ in svc.graph.direct_evidence([a0])}
    good = next(tid(t) for t in GENRE if GENRE[t] == "b" and tid(t) not in tried)
    bad = next(tid(t) for t in GENRE if GENRE[t] == "d" and tid(t) not in tried)
    answer = await client.post(
        "/rank",
        json={
            "current_track_id": a0,
            "candidate_track_ids": [bad, good],
            "embeddings_scores": {bad: 0.1, good: 0.0},
        },
    )
    assert answer.status == 200
    assert [r["track_id"] for r in (await answer.json())["ranked"]] == [good, bad]
    await client.close()
    await svc.close()
    # a restart ranks with the snapshot's model before any training
    svc2 = Gravityd(cfg())
    client2 = await aiohttp_client(create_app(svc2))
    assert (await client2.post("/admin/fold")).status == 200
    assert svc2.models.current.signature() == model.signature()
    await client2.close()
    await svc2.close()
