"""The learned transition model: what it learns from kept and skipped verdicts, its determinism
whatever the fold's batches, its bit-for-bit replay, its trip through a real snapshot file, and
how the ranking uses it as a prior."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gravityd.core.events import FoldEvent
from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.core.ranking import RankParams, rank_pool
from gravityd.core.session_index import SessionIndex, SessionQuery, session_scores
from gravityd.core.transitions import ModelParams, TransitionModel
from gravityd.snapshots.files import load_newest, write_snapshot
from gravityd.snapshots.state import State, fold_rows
from tests.test_session_index import kept

GENRE = {f"{g}{i}": g for g in "abcd" for i in range(6)}  # 4 genres of 6 tracks
NEXT = {"a": "b", "b": "c", "c": "d", "d": "a"}  # listeners keep a -> b, skip b -> a


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


def trained(rows: list[FoldEvent], params: ModelParams, parts: int = 1) -> TransitionModel:
    graph = GravityGraph(FoldParams(model_dims=params.dims))
    graph.record_verdicts()
    model = TransitionModel(params)
    step = max(1, math.ceil(len(rows) / parts))
    for i in range(0, len(rows), step):
        graph.fold(rows[i : i + step])
        model.learn(graph.take_verdicts())
    return model


SMALL = ModelParams(dims=8, batch=16, learning_rate=0.2, negatives=1)


def test_the_fold_hands_over_its_direct_verdicts() -> None:
    graph = GravityGraph(FoldParams())
    rows = [
        FoldEvent(1, "s", "x", "play_start", 0.0, None),
        FoldEvent(2, "s", "x", "play_10s", 10.0, None),
        FoldEvent(3, "s", "y", "play_start", 60.0, None),
        FoldEvent(4, "s", "y", "skip", 61.0, 3000),
        FoldEvent(5, "s", "z", "play_start", 62.0, None),
        FoldEvent(6, "s", "z", "play_10s", 72.0, None),
        FoldEvent(7, "s", "z", "like", 90.0, None),
    ]
    graph.fold(rows[:2])
    assert graph.take_verdicts() == []  # not recording: nothing kept, nothing to drain
    graph = GravityGraph(FoldParams())
    graph.record_verdicts()
    graph.fold(rows)
    # the skip at 3 s grades the penalty (1 - 3000 / 30000) and passes through y: z's verdicts
    # are on x -> z, the visible predecessor
    assert graph.take_verdicts() == [
        ("x", "y", 0.0, pytest.approx(0.9)),
        ("x", "z", 1.0, 1.0),
        ("x", "z", 1.0, 2.0),
    ]
    assert graph.take_verdicts() == []


def test_it_learns_kept_from_skipped_and_carries_over_to_untried_pairs() -> None:
    rows = world_rows(300)
    model = trained(rows, SMALL)
    assert model.verdicts >= 1500 and len(model.pending) < SMALL.batch
    tried = {(r[2], q[2]) for r, q in zip(rows, rows[2:], strict=False)}
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
    assert good / n_good > 0.6 > bad / n_bad
    assert bad / n_bad < 0.4
    # pairs never folded still get the genre's prior: what was learnt carries over
    assert untried_good and sum(untried_good) / len(untried_good) > 0.6


def test_batches_do_not_matter_and_a_replay_is_bit_for_bit() -> None:
    rows = world_rows(60)
    whole = trained(rows, SMALL)
    for parts in (3, 17, len(rows)):
        assert trained(rows, SMALL, parts).signature() == whole.signature()
    assert whole.steps > 5


def test_snapshot_round_trip_then_the_same_training(tmp_path: Path) -> None:
    params = FoldParams(model_dims=8, model_batch=16, model_negatives=1)
    state = State.empty(params, None)
    first = world_rows(41)  # 246 verdicts: 15 batches of 16 and 6 waiting
    fold_rows(state, first)
    fold_rows(state, first)  # at or below the cursor: nothing more learnt
    assert state.model.steps > 0 and state.model.pending  # some verdicts wait for a batch
    write_snapshot(state.graph, tmp_path, 5, state.blocks, state.extra_records(5))
    found = load_newest(tmp_path, params)
    assert found is not None
    loaded = State.from_found(found, None)
    assert loaded.model.signature() == state.model.signature()
    more = world_rows(30, start_id=first[-1].id + 1)
    more = [ev._replace(ts=ev.ts + 10**6) for ev in more]
    fold_rows(state, more)
    fold_rows(loaded, more)
    assert loaded.model.signature() == state.model.signature()
    # a config with other model settings cannot reuse the vectors: the model starts empty
    other = FoldParams(model_dims=4, model_batch=16, model_negatives=1)
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
    later = world_rows(20, start_id=state.cursor + 1)
    fold_rows(loaded, [ev._replace(ts=ev.ts + 10**6) for ev in later])  # new sessions
    assert loaded.model.verdicts + len(loaded.model.pending) == 120  # it learns what comes after


def test_unreadable_part_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unreadable|unknown"):
        TransitionModel.from_records([{"format": 99}])
    with pytest.raises(ValueError, match="unreadable"):
        TransitionModel.from_records([{"format": 1, "params": [8]}])


def test_priors_skip_what_the_model_never_saw() -> None:
    model = trained(world_rows(50), SMALL)
    assert model.priors([("nobody", 1.0)], ["a0"]) == {}
    assert set(model.priors([("a0", 1.0)], ["a1", "new-track"])) <= {"a1"}
    assert TransitionModel(ModelParams(dims=0)).learn([("a", "b", 1.0, 1.0)]) == 0


def test_the_ranking_takes_the_prior_for_an_edge_without_evidence() -> None:
    rows = world_rows(300)
    fp = FoldParams(model_dims=8, model_batch=16, model_learning_rate=0.2, model_negatives=1)
    state = State.empty(fp, None)
    fold_rows(state, rows)
    graph, model = state.graph, state.model
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
    model = trained(world_rows(100), SMALL)
    per_track = model.nbytes() / max(1, len(model.bias))
    assert per_track == (2 * SMALL.dims + 3) * 4 + 8  # float32 vectors, bias, sums; int64 count
    assert np.all(np.isfinite(model.out[: len(model)]))
