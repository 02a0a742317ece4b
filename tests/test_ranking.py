"""rank_pool (the core of rank_candidates) on graphs folded from hand-written sessions, and
the POST /rank validator."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravityd.core.events import EventError, FoldEvent
from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.core.ranking import (
    RankParams,
    rank_pool,
    validate_rank_request,
)

T0 = 1_700_000_000.0
NO_DECAY = FoldParams(half_life_days=0)
CUR, B, C, D, E, F, H1, H2, H3 = (str(uuid.UUID(int=i + 1)) for i in range(9))


class Sessions:
    """Folds one short session per transition verdict into a graph (no decay by default)."""

    def __init__(self) -> None:
        self.events: list[FoldEvent] = []
        self.t = T0
        self.sessions = 0

    def _add(self, sid: str, track: str, kind: str, elapsed_ms: int | None = None) -> None:
        self.t += 1.0
        self.events.append(FoldEvent(len(self.events) + 1, sid, track, kind, self.t, elapsed_ms))

    def go(self, src: str, dst: str, *, kept: int = 0, skipped: int = 0) -> Sessions:
        """`kept` sessions that play src then keep dst; `skipped` that skip dst at 0 ms."""
        for i in range(kept + skipped):
            self.sessions += 1
            sid = f"s{self.sessions}"
            self._add(sid, src, "play_start")
            self._add(sid, src, "play_10s")
            self._add(sid, dst, "play_start")
            if i < kept:
                self._add(sid, dst, "play_10s")
            else:
                self._add(sid, dst, "skip", 0)
        return self

    def graph(self, params: FoldParams = NO_DECAY) -> GravityGraph:
        gg = GravityGraph(params)
        assert gg.fold(self.events) == len(self.events)
        return gg


def ids(ranked: list[dict]) -> list[str]:
    return [r["track_id"] for r in ranked]


# The tests pin round numbers for the blend; the shipped defaults are chosen by measurement.
P = RankParams(rank_gravity_weight=0.5, rank_confidence_half_evidence=5.0)


def rank(cands, scores, history=None, *, graph=None, params=P, **kw):
    return rank_pool(
        CUR, cands, scores, history, graph=graph, now=T0 + 1e5, params=params, **kw
    )


# ---------------------------------------------------------------------------- no evidence


def test_empty_graph_gives_embedding_order_and_scores() -> None:
    scores = {B: 0.2, C: 0.9, D: -0.3, E: 0.5}
    for graph in (None, GravityGraph(NO_DECAY)):
        ranked = rank([B, C, D, E], scores, graph=graph)
        assert ids(ranked) == [C, E, B, D]
        assert [r["score"] for r in ranked] == [0.9, 0.5, 0.2, -0.3]
        assert all(r["gravity_score"] == 0.0 and r["confidence"] == 0.0 for r in ranked)


def test_unrelated_evidence_leaves_embedding_order() -> None:
    gg = Sessions().go(B, C, kept=20).go(D, B, skipped=20).graph()  # nothing from CUR
    scores = {B: 0.2, C: 0.9, D: 0.5}
    ranked = rank([B, C, D], scores, graph=gg)
    assert ids(ranked) == [C, D, B]
    assert [r["score"] for r in ranked] == [0.9, 0.5, 0.2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=30))
def test_property_no_evidence_is_exactly_embedding_order(values: list[float]) -> None:
    cands = [str(uuid.UUID(int=1000 + i)) for i in range(len(values))]
    scores = dict(zip(cands, values, strict=True))
    ranked = rank(cands, scores, graph=GravityGraph(NO_DECAY))
    assert ids(ranked) == sorted(cands, key=lambda c: (-scores[c], c))


# ---------------------------------------------------------------------------- evidence


def test_strong_positive_evidence_lifts_over_a_slightly_better_embedding() -> None:
    gg = Sessions().go(CUR, C, kept=50).graph()
    ranked = rank([B, C, D], {B: 0.80, C: 0.75, D: 0.70}, graph=gg)
    assert ids(ranked) == [C, B, D]
    top = ranked[0]
    assert top["evidence"] == {"pos": 50.0, "neg": 0.0, "n": 50, "seeds_hit": 0}
    assert top["confidence"] == pytest.approx(50 / 55)
    assert top["gravity_score"] == pytest.approx(50 / 55)
    assert top["score"] == pytest.approx(0.75 + 0.5 * 50 / 55)
    assert top["embedding_score"] == 0.75


def test_weak_evidence_does_not_overturn_a_big_embedding_gap() -> None:
    gg = Sessions().go(CUR, C, kept=1).graph()
    ranked = rank([B, C], {B: 0.80, C: 0.55}, graph=gg)
    assert ids(ranked) == [B, C]
    c = ranked[1]
    assert 0.0 < c["confidence"] < 0.2
    assert 0.55 < c["score"] < 0.66


def test_confidence_grows_with_evidence() -> None:
    conf = []
    for kept in (1, 5, 50, 500):
        gg = Sessions().go(CUR, C, kept=kept).graph()
        conf.append(rank([C], {C: 0.5}, graph=gg)[0]["confidence"])
    assert conf == sorted(conf) and len(set(conf)) == 4
    assert conf[0] < 0.2 and conf[-1] > 0.98
    assert conf[1] == pytest.approx(0.5)  # the half point is rank_confidence_half_evidence = 5


def test_heavily_skipped_transition_falls_below_weaker_candidates() -> None:
    gg = Sessions().go(CUR, B, kept=2, skipped=40).graph()
    ranked = rank([B, C, D], {B: 0.90, C: 0.70, D: 0.60}, graph=gg)
    assert ids(ranked) == [C, D, B]
    b = ranked[-1]
    assert b["gravity_score"] < -0.7
    assert b["evidence"]["neg"] == 40.0 and b["evidence"]["pos"] == 2.0


def test_neutral_evidence_changes_nothing() -> None:
    gg = Sessions().go(CUR, B, kept=10, skipped=10).graph()
    ranked = rank([B, C], {B: 0.60, C: 0.59}, graph=gg)
    assert ids(ranked) == [B, C]
    assert ranked[0]["score"] == 0.60 and ranked[0]["gravity_score"] == 0.0
    assert ranked[0]["confidence"] > 0.7
    # A stricter notion of neutral turns the same evidence into a push down.
    strict = dataclasses.replace(P, rank_neutral_acceptance=0.8)
    assert ids(rank([B, C], {B: 0.60, C: 0.59}, graph=gg, params=strict)) == [C, B]


def test_traversal_without_verdict_is_no_evidence() -> None:
    s = Sessions()
    for i in range(5):
        s._add(f"t{i}", CUR, "play_10s")
        s._add(f"t{i}", B, "play_start")
    gg = s.graph()
    ranked = rank([B, C], {B: 0.5, C: 0.6}, graph=gg)
    assert ids(ranked) == [C, B]
    assert ranked[1]["evidence"]["n"] == 5 and ranked[1]["score"] == 0.5


def test_gravity_weight_zero_is_pure_embedding_and_weight_bounds_the_lift() -> None:
    gg = Sessions().go(CUR, C, kept=500).graph()
    off = dataclasses.replace(P, rank_gravity_weight=0.0)
    assert ids(rank([B, C], {B: 0.8, C: 0.75}, graph=gg, params=off)) == [B, C]
    ranked = rank([C], {C: 0.0}, graph=gg)
    assert 0.49 < ranked[0]["score"] <= 0.5


def test_old_evidence_counts_less() -> None:
    gg = Sessions().go(CUR, C, kept=10).graph(FoldParams(half_life_days=30))
    fresh = rank_pool(CUR, [C], {C: 0.5}, graph=gg, now=T0 + 60)[0]
    old = rank_pool(CUR, [C], {C: 0.5}, graph=gg, now=T0 + 60 * 86400)[0]
    assert old["evidence"]["pos"] == pytest.approx(fresh["evidence"]["pos"] / 4, rel=1e-3)
    assert old["confidence"] < fresh["confidence"]
    assert old["score"] < fresh["score"]


# ---------------------------------------------------------------------------- pool rules


def test_history_and_current_track_are_never_returned() -> None:
    gg = Sessions().go(CUR, H1, kept=100).go(CUR, B, kept=3).graph()
    cands = [CUR, H1, B, C, H2]
    scores = {CUR: 1.0, H1: 0.99, B: 0.1, C: 0.2, H2: 0.98}
    ranked = rank(cands, scores, [H2, H1, CUR], graph=gg)
    assert set(ids(ranked)) == {B, C}
    assert rank([CUR, H1], scores, [H1], graph=gg) == []


def test_duplicates_removed() -> None:
    ranked = rank([B, C, B, D, C, B], {B: 0.3, C: 0.2, D: 0.1})
    assert ids(ranked) == [B, C, D]


def test_missing_embedding_pool_min_rule() -> None:
    scores = {B: 0.7, C: 0.2, D: float("nan"), F: True}
    ranked = rank([E, B, C, D, F], scores)
    # Known scores first among equals; the missing ones by track id.
    assert ids(ranked) == [B, C, D, E, F]
    assert [r["embedding_score"] for r in ranked] == [0.7, 0.2, 0.2, 0.2, 0.2]
    assert [r["embedding_known"] for r in ranked] == [True, True, False, False, False]
    # No known score at all: the fixed score fills in.
    ranked = rank([C, B], {})
    assert [r["embedding_score"] for r in ranked] == [0.0, 0.0] and ids(ranked) == [B, C]
    assert ids(rank([C, B], None)) == [B, C]


def test_missing_embedding_fixed_rule_and_inf() -> None:
    p = dataclasses.replace(P, rank_missing_embedding="fixed", rank_missing_embedding_score=0.5)
    ranked = rank([B, C, D], {B: 0.7, C: 0.2, D: float("inf")}, params=p)
    assert ids(ranked) == [B, D, C]
    assert ranked[1]["embedding_score"] == 0.5 and not ranked[1]["embedding_known"]


def test_missing_embedding_can_be_lifted_by_the_graph() -> None:
    gg = Sessions().go(CUR, D, kept=100).graph()
    ranked = rank([B, C, D], {B: 0.8, C: 0.75}, graph=gg)
    assert ids(ranked) == [D, B, C]


def test_numpy_like_and_int_scores_are_numbers() -> None:
    class Real(float):
        pass

    ranked = rank([B, C, D], {B: Real(0.3), C: 1, D: 10**400})
    assert ids(ranked) == [C, B, D]
    assert ranked[2]["embedding_known"] is False


def test_embedding_scores_out_of_range_are_clamped_but_keep_their_order() -> None:
    ranked = rank([B, C, D], {B: 1.5, C: 3.0, D: -7.0})
    assert ids(ranked) == [C, B, D]
    assert [r["score"] for r in ranked] == [1.0, 1.0, -1.0]


def test_embedding_floor_maps_zero_one_scores_onto_the_gravity_scale() -> None:
    p = dataclasses.replace(P, rank_embedding_floor=0.0)
    ranked = rank([B, C, D], {B: 0.5, C: 1.0, D: 0.25}, params=p)
    assert ids(ranked) == [C, B, D]
    assert [r["score"] for r in ranked] == [1.0, 0.0, -0.5]
    assert [r["embedding_score"] for r in ranked] == [1.0, 0.5, 0.25]


def test_ties_break_by_track_id_and_input_order_does_not_matter() -> None:
    gg = Sessions().go(CUR, C, kept=3).go(CUR, D, skipped=2).go(H1, E, kept=4).graph()
    cands = [str(uuid.UUID(int=100 + i)) for i in range(40)] + [B, C, D, E, F]
    rng = random.Random(7)
    scores = {c: rng.choice([0.1, 0.2, 0.3]) for c in cands}
    first = rank(cands, scores, [H1], graph=gg)
    for _ in range(5):
        shuffled = cands[:]
        rng.shuffle(shuffled)
        assert rank(shuffled, scores, [H1], graph=gg) == first
    tied = [r for r in first if r["score"] == 0.3 and r["gravity_score"] == 0.0]
    assert len(tied) > 2 and ids(tied) == sorted(ids(tied))


def test_limit() -> None:
    scores = {B: 0.5, C: 0.4, D: 0.3, E: 0.2}
    assert ids(rank([E, D, C, B], scores, limit=2)) == [B, C]
    assert ids(rank([E, D, C, B], scores, limit=10)) == [B, C, D, E]
    assert rank([E, D, C, B], scores, limit=0) == []


def test_results_are_finite_and_json_serialisable() -> None:
    gg = Sessions().go(CUR, B, kept=3, skipped=1).go(H1, B, kept=2).graph()
    ranked = rank([B, C, D], {B: 0.1, C: float("nan")}, [H1], graph=gg)
    text = json.dumps(ranked, allow_nan=False)
    assert json.loads(text) == ranked
    assert set(ranked[0]) >= {
        "track_id",
        "score",
        "embedding_score",
        "gravity_score",
        "confidence",
        "evidence",
    }
    for r in ranked:
        for key in ("score", "embedding_score", "gravity_score", "confidence"):
            assert math.isfinite(r[key])
        assert -1.0 <= r["gravity_score"] <= 1.0 and 0.0 <= r["confidence"] < 1.0


def test_huge_decay_factor_stays_finite() -> None:
    gg = Sessions().go(CUR, B, kept=3).graph(FoldParams(half_life_days=1e-9))
    ranked = rank_pool(CUR, [B], {B: 0.1}, graph=gg, now=0.0)
    json.dumps(ranked, allow_nan=False)
    assert ranked[0]["confidence"] == 1.0


# ---------------------------------------------------------------------------- multi-seed


def agreement_graph() -> GravityGraph:
    # C: three history tracks mildly agree; D: only the most recent one, more strongly.
    s = Sessions()
    s.go(H3, C, kept=1).go(H2, C, kept=1).go(H1, C, kept=1)
    s.go(H3, D, kept=3)
    return s.graph()


def test_multi_hit_booster_favours_what_several_history_tracks_agree_on() -> None:
    gg = agreement_graph()
    history = [H1, H2, H3]  # H3 is the most recent
    scores = {C: 0.5, D: 0.5, B: 0.55}
    boosted = rank([B, C, D], scores, history, graph=gg)
    assert ids(boosted)[0] == C
    assert boosted[0]["evidence"]["seeds_hit"] == 3
    plain = rank(
        [B, C, D],
        scores,
        history,
        graph=gg,
        params=dataclasses.replace(P, rank_multi_hit_boost=False),
    )
    assert ids(plain)[:2] == [D, C]
    by_id = {r["track_id"]: r for r in plain}
    assert by_id[C]["gravity_score"] < by_id[D]["gravity_score"]


def test_history_seeds_can_be_turned_off_and_are_discounted_by_recency() -> None:
    gg = Sessions().go(H1, C, kept=10).graph()
    scores = {B: 0.5, C: 0.5}
    off = dataclasses.replace(P, rank_history_seeds=0)
    assert rank([B, C], scores, [H1], graph=gg, params=off)[1]["gravity_score"] == 0.0
    recent = rank([B, C], scores, [H2, H1], graph=gg)
    older = rank([B, C], scores, [H1, H2], graph=gg)
    assert ids(recent)[0] == C and ids(older)[0] == C
    assert recent[0]["gravity_score"] > older[0]["gravity_score"] > 0.0
    # Only the most recent seed: H1 as the second most recent is out of reach.
    one = dataclasses.replace(P, rank_history_seeds=1)
    assert rank([B, C], scores, [H1, H2], graph=gg, params=one)[1]["gravity_score"] == 0.0


def test_current_edge_outweighs_an_equal_history_edge() -> None:
    gg = Sessions().go(CUR, C, kept=5).go(H1, D, kept=5).graph()
    ranked = rank([C, D], {C: 0.5, D: 0.5}, [H1], graph=gg)
    assert ids(ranked) == [C, D]
    assert ranked[1]["gravity_score"] == pytest.approx(0.5 * ranked[0]["gravity_score"])


def test_history_skips_push_down() -> None:
    gg = Sessions().go(H1, C, skipped=20).graph()
    ranked = rank([B, C], {B: 0.5, C: 0.6}, [H1], graph=gg)
    assert ids(ranked) == [B, C]
    assert ranked[-1]["gravity_score"] < 0.0 and ranked[-1]["evidence"]["seeds_hit"] == 1


# ---------------------------------------------------------------------------- params


def test_params_defaults_validate_and_names_are_unique() -> None:
    p = RankParams()
    assert p.rank_gravity_weight == 2.0 and p.rank_history_seeds == 5
    names = [f.name for f in dataclasses.fields(RankParams)]
    assert all(n.startswith("rank_") for n in names)
    taken = {f.name for f in dataclasses.fields(FoldParams)} | {
        "host",
        "port",
        "cors_origins",
        "admin_token",
        "max_event_bytes",
        "max_batch_bytes",
        "max_batch_events",
        "max_neighbors_limit",
        "max_rank_pool",
        "shutdown_timeout_s",
        "db",
        "snapshot_dir",
        "synchronous",
        "max_session_id_len",
        "max_event_id_len",
        "max_context_len",
        "max_future_s",
        "commit_max_events",
        "fold_batch_events",
        "fold_interval_ms",
        "log_level",
        "log_format",
    }
    assert not taken & set(names)
    assert dataclasses.replace(P, rank_history_seeds=3.0).rank_history_seeds == 3
    assert dataclasses.replace(P, rank_gravity_weight=1).rank_gravity_weight == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rank_gravity_weight", -0.1),
        ("rank_gravity_weight", float("nan")),
        ("rank_confidence_half_evidence", 0.0),
        ("rank_neutral_acceptance", 1.0),
        ("rank_neutral_acceptance", 0.0),
        ("rank_history_seeds", -1),
        ("rank_history_seeds", 2.5),
        ("rank_history_weight", 1.5),
        ("rank_history_decay", -0.1),
        ("rank_multi_hit_boost", 1),
        ("rank_embedding_floor", 1.0),
        ("rank_embedding_floor", -2.0),
        ("rank_missing_embedding", "zero"),
        ("rank_missing_embedding_score", float("inf")),
        ("rank_gravity_weight", True),
    ],
)
def test_params_out_of_range(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        RankParams(**{field: value})


# ---------------------------------------------------------------------------- validator


def body(**kw):
    out = {
        "current_track_id": CUR,
        "candidate_track_ids": [B, C],
        "embeddings_scores": {B: 0.5, C: 0.25},
        "session_history": [H1],
    }
    out.update(kw)
    return {k: v for k, v in out.items() if v is not ...}


def test_validator_accepts_and_canonicalises() -> None:
    upper = B.upper()
    req = validate_rank_request(
        body(candidate_track_ids=[upper, C], embeddings_scores={upper: 1, C: 0.25}, limit=3),
        max_pool=1000,
    )
    assert req.current_track_id == CUR
    assert req.candidate_track_ids == [B, C]
    assert req.embeddings_scores == {B: 1.0, C: 0.25}
    assert req.session_history == [H1]
    assert req.limit == 3
    ranked = rank_pool(**req._asdict(), graph=None)
    assert ids(ranked) == [B, C]
    req = validate_rank_request(body(session_history=..., limit=None), max_pool=1000)
    assert req.session_history == [] and req.limit is None


@pytest.mark.parametrize(
    ("obj", "code", "field"),
    [
        ([], "not_an_object", None),
        (body(current_track_id=...), "missing_field", "current_track_id"),
        (body(current_track_id="nope"), "invalid_current_track_id", "current_track_id"),
        (body(current_track_id=5), "invalid_current_track_id", "current_track_id"),
        (body(candidate_track_ids=...), "missing_field", "candidate_track_ids"),
        (body(candidate_track_ids=B), "invalid_candidate_track_ids", "candidate_track_ids"),
        (body(candidate_track_ids=[]), "empty_pool", "candidate_track_ids"),
        (body(candidate_track_ids=[B] * 4), "pool_too_large", "candidate_track_ids"),
        (body(candidate_track_ids=[B, "x"]), "invalid_candidate_track_id", "candidate_track_ids"),
        (body(candidate_track_ids=[B, None]), "invalid_candidate_track_id", "candidate_track_ids"),
        (body(embeddings_scores=...), "missing_field", "embeddings_scores"),
        (body(embeddings_scores=[0.5]), "invalid_embeddings_scores", "embeddings_scores"),
        (body(embeddings_scores={"b": 0.5}), "invalid_embeddings_scores", "embeddings_scores"),
        (body(embeddings_scores={B: float("nan")}), "invalid_embedding_score", "embeddings_scores"),
        (body(embeddings_scores={B: float("inf")}), "invalid_embedding_score", "embeddings_scores"),
        (body(embeddings_scores={B: True}), "invalid_embedding_score", "embeddings_scores"),
        (body(embeddings_scores={B: "0.5"}), "invalid_embedding_score", "embeddings_scores"),
        (body(embeddings_scores={B: 10**400}), "invalid_embedding_score", "embeddings_scores"),
        (body(session_history=H1), "invalid_session_history", "session_history"),
        (body(session_history=[H1, 3]), "invalid_session_history", "session_history"),
        (body(session_history=[H1] * 31), "history_too_long", "session_history"),
        (body(limit=0), "invalid_limit", "limit"),
        (body(limit=-2), "invalid_limit", "limit"),
        (body(limit=True), "invalid_limit", "limit"),
        (body(limit="3"), "invalid_limit", "limit"),
        (body(limit=2.5), "invalid_limit", "limit"),
    ],
)
def test_validator_error_codes(obj: object, code: str, field: str | None) -> None:
    with pytest.raises(EventError) as info:
        validate_rank_request(obj, max_pool=3)
    assert info.value.code == code
    assert info.value.field == field
    assert info.value.to_dict()["message"]
