"""The fold on hand-written event sequences, plus determinism and round-trip properties."""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravityd.core.events import FoldEvent
from gravityd.core.graph import FoldParams, GravityGraph, graph_signature

T0 = 1_700_000_000.0
DAY = 86400.0
A, B, C, D, E = (str(uuid.UUID(int=i + 1)) for i in range(5))
# The tests pin the SR rule's 1/d discount; the shipped default is chosen by the eval.
NO_DECAY = FoldParams(half_life_days=0, distance_discount_power=1.0)


class Log:
    """Builds FoldEvents with increasing ids and, unless given, increasing timestamps."""

    def __init__(self, start: float = T0) -> None:
        self.events: list[FoldEvent] = []
        self.t = start

    def add(
        self,
        track: str,
        kind: str,
        *,
        session: str = "s1",
        elapsed_ms: int | None = None,
        ts: float | None = None,
        dt: float = 1.0,
    ) -> Log:
        if ts is None:
            ts = self.t + dt
        self.t = ts
        self.events.append(FoldEvent(len(self.events) + 1, session, track, kind, ts, elapsed_ms))
        return self

    def kept(self, track: str, session: str = "s1") -> Log:
        self.add(track, "play_start", session=session)
        return self.add(track, "play_10s", session=session)

    def skipped(self, track: str, elapsed_ms: int, session: str = "s1") -> Log:
        self.add(track, "play_start", session=session)
        return self.add(track, "skip", session=session, elapsed_ms=elapsed_ms)


def folded(log: Log, params: FoldParams = NO_DECAY) -> GravityGraph:
    gg = GravityGraph(params)
    assert gg.fold(log.events) == len(log.events)
    return gg


def w(gg: GravityGraph, src: str, dst: str, now: float | None = None) -> float | None:
    e = gg.edge(src, dst, now=T0 if now is None else now)
    return None if e is None else e["w"]


# ---------------------------------------------------------------------------- signals


def test_play_10s_accepts_and_play_start_only_counts() -> None:
    gg = folded(Log().kept(A).kept(B).add(C, "play_start"))
    assert gg.edge(A, B, now=T0) == {"w": 1.0, "pos": 1.0, "neg": 0.0, "acc": 1.0, "n": 1}
    assert gg.edge(B, C, now=T0) == {"w": 0.0, "pos": 0.0, "neg": 0.0, "acc": 0.0, "n": 1}
    assert gg.edge(B, A, now=T0) is None


def test_like_adds_on_top_of_play_10s() -> None:
    gg = folded(Log().kept(A).kept(B).add(B, "like"))
    assert w(gg, A, B) == 3.0


def test_radio_next_carries_no_weight_but_starts_the_transition() -> None:
    gg = folded(Log().kept(A).add(B, "radio_next"))
    assert gg.edge(A, B, now=T0) == {"w": 0.0, "pos": 0.0, "neg": 0.0, "acc": 0.0, "n": 1}
    gg = folded(Log().kept(A).add(B, "radio_next").kept(B))
    assert gg.edge(A, B, now=T0) == {"w": 1.0, "pos": 1.0, "neg": 0.0, "acc": 1.0, "n": 1}


def test_weights_come_from_params() -> None:
    p = FoldParams(half_life_days=0, weight_play_start=0.25, weight_play_10s=3.0, weight_like=5.0)
    gg = folded(Log().kept(A).kept(B).add(B, "like"), p)
    assert w(gg, A, B) == 8.25


def test_skip_grading_earlier_costs_more_and_late_skip_costs_nothing() -> None:
    penalties = []
    for elapsed in (0, 6000, 15000, 29000, 30000, 200000):
        gg = folded(Log().kept(A).skipped(B, elapsed))
        penalties.append(-w(gg, A, B))
    assert penalties[0] == 1.0
    assert penalties[2] == pytest.approx(0.5)
    assert penalties[0] > penalties[1] > penalties[2] > penalties[3] > 0.0
    assert penalties[4] == penalties[5] == 0.0
    gg = folded(Log().kept(A).skipped(B, 0))
    assert gg.edge(A, B, now=T0)["neg"] == 1.0


def test_skip_without_elapsed_uses_default() -> None:
    gg = folded(Log().kept(A).add(B, "play_start").add(B, "skip"))
    assert w(gg, A, B) == pytest.approx(-0.5)


def test_skip_only_hits_immediate_predecessor() -> None:
    gg = folded(Log().kept(A).kept(B).skipped(C, 6000))
    assert w(gg, B, C) < 0
    assert w(gg, A, C) in (None, 0.0)


def test_duplicate_verdicts_count_once() -> None:
    log = Log().kept(A).kept(B).add(B, "play_10s").add(B, "play_start").add(B, "like")
    log.add(B, "like").add(B, "skip", elapsed_ms=0).add(B, "skip", elapsed_ms=0)
    gg = folded(log)
    assert gg.edge(A, B, now=T0) == {"w": 2.0, "pos": 3.0, "neg": 1.0, "acc": 3.0, "n": 1}


def test_no_self_loops() -> None:
    log = Log().kept(A).kept(A).add(A, "like").kept(B).skipped(A, 0).kept(A)
    gg = folded(log)
    assert gg.edge(A, A, now=T0) is None
    assert all(src != dst for src, dst, *_ in gg.to_edge_list())


def test_a_track_repeated_in_the_window_is_credited_once_at_nearest_distance() -> None:
    gg = folded(Log().kept(A).kept(B).kept(A).kept(C))
    assert w(gg, A, C) == 1.0  # distance 1, not 1 + 1/3
    assert w(gg, B, C) == 0.5


# ---------------------------------------------------------------------------- credit


def test_multi_step_credit_with_one_over_d_discount() -> None:
    gg = folded(Log().kept(A).kept(B).kept(C).kept(D))
    assert w(gg, C, D) == 1.0
    assert w(gg, B, D) == 0.5
    assert w(gg, A, D) == pytest.approx(1 / 3)
    assert gg.edge(A, D, now=T0)["n"] == 0  # credited, never traversed


def test_credit_window_and_power_are_configurable() -> None:
    gg = folded(Log().kept(A).kept(B).kept(C), FoldParams(half_life_days=0, credit_window=1))
    assert gg.edge(A, C, now=T0) is None
    flat = FoldParams(half_life_days=0, distance_discount_power=0.0)
    gg = folded(Log().kept(A).kept(B).kept(C), flat)
    assert w(gg, A, C) == 1.0
    sq = FoldParams(half_life_days=0, distance_discount_power=2.0)
    assert w(folded(Log().kept(A).kept(B).kept(C), sq), A, C) == 0.25


def test_window_limits_how_far_back_credit_goes() -> None:
    tracks = [str(uuid.UUID(int=100 + i)) for i in range(5)]
    log = Log()
    for t in tracks:
        log.kept(t)
    gg = folded(log, FoldParams(half_life_days=0, credit_window=3, distance_discount_power=1.0))
    assert w(gg, tracks[1], tracks[4]) == pytest.approx(1 / 3)
    assert gg.edge(tracks[1], tracks[4], now=T0)["acc"] == 0.0  # multi-step credit, no verdict
    assert gg.edge(tracks[3], tracks[4], now=T0)["acc"] == 1.0  # the direct transition
    assert gg.edge(tracks[0], tracks[4], now=T0) is None


def test_skip_through_credits_the_real_transition() -> None:
    gg = folded(Log().kept(A).skipped(B, 2000).kept(C))
    assert w(gg, A, B) == pytest.approx(-(1 - 2 / 30))
    assert gg.edge(A, C, now=T0) == {"w": 1.0, "pos": 1.0, "neg": 0.0, "acc": 1.0, "n": 1}
    assert gg.edge(B, C, now=T0) is None


def test_a_later_skip_is_a_real_step() -> None:
    gg = folded(Log().kept(A).skipped(B, 8000).kept(C))
    assert w(gg, B, C) == 1.0
    assert w(gg, A, C) == 0.5


def test_skip_through_disabled_with_zero() -> None:
    gg = folded(
        Log().kept(A).skipped(B, 2000).kept(C),
        FoldParams(half_life_days=0, distance_discount_power=1.0, skip_through_ms=0),
    )
    assert w(gg, B, C) == 1.0
    assert w(gg, A, C) == 0.5


# ---------------------------------------------------------------------------- sessions


def test_session_timeout_no_edge_across_the_gap() -> None:
    log = Log().kept(A)
    log.add(B, "play_start", dt=1801).add(B, "play_10s")
    gg = folded(log)
    assert gg.edge(A, B, now=T0) is None
    log = Log().kept(A)
    log.add(B, "play_start", dt=1799).add(B, "play_10s")
    assert w(folded(log), A, B) == 1.0


def test_sessions_are_independent() -> None:
    log = Log().kept(A, session="x").kept(B, session="y").kept(C, session="x")
    gg = folded(log)
    assert w(gg, A, C) == 1.0
    assert gg.edge(A, B, now=T0) is None and gg.edge(B, C, now=T0) is None


def test_late_event_time_is_clamped_to_the_session() -> None:
    # C's events carry a timestamp before the session's latest (a client with a wrong clock):
    # applied in log order, at the session's latest time, so the session does not split and the
    # contribution is not back-dated.
    params = FoldParams(half_life_days=1.0)
    log = Log().kept(A).kept(B)
    latest = log.t
    log.add(C, "play_start", ts=latest - 5 * DAY).add(C, "play_10s", ts=latest - 5 * DAY)
    gg = folded(log, params)
    assert gg.edge(B, C, now=latest)["w"] == pytest.approx(1.0, rel=1e-12)
    assert gg.sessions["s1"][0] == latest
    # An on-time event after the late one continues the same session.
    log.add(D, "play_start", ts=latest + 1).add(D, "play_10s", ts=latest + 2)
    gg = folded(log, params)
    assert gg.edge(C, D, now=latest + 2)["w"] == pytest.approx(1.0, rel=1e-12)


def test_late_verdict_on_the_previous_track_applies_to_its_incoming_edges() -> None:
    log = Log().kept(A).add(B, "play_start").add(C, "play_start").add(B, "play_10s")
    gg = folded(log)
    assert w(gg, A, B) == 1.0
    assert gg.edge(C, B, now=T0) is None  # not a new transition C->B
    assert gg.sessions["s1"][1][-1] == C  # C stays the current track
    assert gg.edge(B, C, now=T0)["n"] == 1


def test_verdict_without_play_start_starts_the_track() -> None:
    gg = folded(Log().add(A, "play_10s").add(B, "play_10s"))
    assert gg.edge(A, B, now=T0) == {"w": 1.0, "pos": 1.0, "neg": 0.0, "acc": 1.0, "n": 1}


def test_replayed_events_are_ignored() -> None:
    log = Log().kept(A).kept(B)
    gg = folded(log)
    assert gg.fold(log.events) == 0
    assert gg.cursor == len(log.events)
    assert w(gg, A, B) == 1.0


def test_unknown_event_type_moves_the_cursor_only() -> None:
    log = Log().kept(A)
    log.add(B, "pause")
    gg = folded(log)
    assert gg.cursor == 3
    assert gg.sessions["s1"][1] == [A]


# ---------------------------------------------------------------------------- decay


def test_weight_halves_after_one_half_life() -> None:
    gg = folded(Log().kept(A).kept(B), FoldParams(half_life_days=30))
    t = gg.clock
    w0 = w(gg, A, B, now=t)
    assert w0 == pytest.approx(1.0, abs=1e-12)
    assert abs(w(gg, A, B, now=t + 30 * DAY) - w0 / 2) < 1e-9
    assert abs(w(gg, A, B, now=t + 90 * DAY) - w0 / 8) < 1e-9
    assert gg.decay_factor(gg.t0 + 30 * DAY) == pytest.approx(0.5, rel=1e-15)


def test_older_evidence_counts_less() -> None:
    log = Log().kept(A).kept(B)  # at T0
    log.kept(A, session="s2")
    log.add(B, "play_start", session="s2", ts=T0 + 30 * DAY).add(B, "play_10s", session="s2")
    # s2 is silent for 30 days between A and B: a new session, so only s1's A->B counts.
    gg = folded(log, FoldParams(half_life_days=30))
    assert w(gg, A, B, now=T0 + 30 * DAY) == pytest.approx(0.5, rel=1e-5)
    log2 = Log().kept(A).kept(B)
    log2.add(A, "play_start", session="s3", ts=T0 + 30 * DAY).add(A, "play_10s", session="s3")
    log2.add(B, "play_start", session="s3").add(B, "play_10s", session="s3")
    gg = folded(log2, FoldParams(half_life_days=30))
    assert w(gg, A, B, now=T0 + 30 * DAY) == pytest.approx(1.5, rel=1e-6)


def test_rebase_preserves_decayed_weights() -> None:
    params = FoldParams(half_life_days=1.0, rebase_exponent=2.0, epsilon=0.0)
    log = Log().kept(A).kept(B)
    for day in range(1, 8):  # a new session every day: several rebases
        log.add(C, "play_start", session=f"d{day}", ts=T0 + day * DAY)
        log.add(D, "play_start", session=f"d{day}").add(D, "play_10s", session=f"d{day}")
    gg = folded(log, params)
    assert gg.t0 > T0 + 2 * DAY  # it did rebase
    now = T0 + 10 * DAY
    assert w(gg, A, B, now=now) == pytest.approx(2.0 ** -((now - (T0 + 4)) / DAY), rel=1e-9)
    expected = sum(2.0 ** -((now - (T0 + day * DAY + 2)) / DAY) for day in range(1, 8))
    assert w(gg, C, D, now=now) == pytest.approx(expected, rel=1e-9)


def test_no_decay_when_half_life_is_zero() -> None:
    gg = folded(Log().kept(A).kept(B))
    assert w(gg, A, B, now=T0 + 1e9) == 1.0


# ---------------------------------------------------------------------------- pruning


def test_maintenance_drops_faint_edges_and_idle_sessions() -> None:
    params = FoldParams(
        half_life_days=1.0,
        epsilon=0.1,
        maintenance_every=1000,
        session_timeout_s=60,
        maintenance_parts=1,
    )
    log = Log().kept(A).kept(B)  # A->B = 1.0 at T0
    # Filler in another session, 5 days later, up to id 1000 where maintenance runs.
    log.add(C, "play_start", session="late", ts=T0 + 5 * DAY)
    while len(log.events) < 999:
        log.add(C, "play_10s", session="late")
    log.kept(D, session="late")  # ids 1000, 1001
    gg = GravityGraph(params)
    gg.fold(log.events[:999])
    assert gg.edge(A, B, now=T0) is not None and "s1" in gg.sessions
    gg.fold(log.events[999:])
    assert gg.edge(A, B, now=T0) is None  # 1/32 < 0.1 at the maintenance time
    assert A not in gg.g and B not in gg.g  # no edges left: nodes go too
    assert "s1" not in gg.sessions and "late" in gg.sessions
    assert gg.edge(C, D, now=gg.clock)["w"] == pytest.approx(1.0)
    assert gg.edge_count == 1 and gg.node_count == 2


def test_sweep_covers_everything_after_parts_steps() -> None:
    params = FoldParams(half_life_days=1.0, epsilon=0.1, maintenance_every=10, maintenance_parts=4)
    log = Log()
    tracks = [str(uuid.UUID(int=300 + i)) for i in range(20)]
    for i in range(10):
        log.kept(tracks[2 * i], session=f"a{i}").kept(tracks[2 * i + 1], session=f"a{i}")
    log.add(C, "play_start", session="late", ts=T0 + 10 * DAY)
    gg = GravityGraph(params)
    gg.fold(log.events)
    assert gg.edge_count == 10
    for _ in range(4 * 10 - 1):
        log.add(C, "play_10s", session="late")
    gg.fold(log.events)
    assert gg.edge_count < 10  # some slices swept already
    log.add(C, "play_10s", session="late")
    gg.fold(log.events)
    assert gg.edge_count == 0 and gg.node_count == 0  # four steps: every slice swept
    assert list(gg.sessions) == ["late"]


def test_out_edges_bounded_by_2k_keeping_the_strongest() -> None:
    params = FoldParams(half_life_days=0, max_edges_per_track=2, credit_window=1)
    src = A
    targets = [str(uuid.UUID(int=200 + i)) for i in range(6)]
    log = Log()
    for i, t in enumerate(targets):
        s = f"s{i}"
        log.kept(src, session=s).kept(t, session=s)
        for _ in range(i):  # later targets get liked more: stronger
            log.kept(src, session=f"{s}r{_}").add(t, "play_start", session=f"{s}r{_}")
            log.add(t, "like", session=f"{s}r{_}")
    gg = folded(log, params)
    out = sorted(gg.g.successors(src))
    assert len(out) <= 4
    assert targets[5] in out and targets[4] in out  # the two strongest survive
    assert targets[0] not in out
    gg.maintain_all()
    assert sorted(gg.g.successors(src)) == sorted(targets[4:])
    assert gg.edge_count == 2


def test_trim_ties_break_by_track_id() -> None:
    params = FoldParams(half_life_days=0, max_edges_per_track=1, credit_window=1)
    log = Log()
    for i, t in enumerate([E, D, C, B]):
        log.kept(A, session=f"s{i}").kept(t, session=f"s{i}")
    gg = folded(log, params)
    gg.maintain_all()
    assert list(gg.g.successors(A)) == [B]


# ---------------------------------------------------------------------------- neighbors


# One-hop lanes: each lane's weight is its own edge's net weight (the read-time terms off).
ONE_HOP = {"lanes_backward_credit": 0.0, "lanes_two_hop": 0.0}


def lanes_graph() -> GravityGraph:
    log = Log().kept(A).kept(B)  # A->B 1
    log.kept(A, session="2").kept(C, session="2").add(C, "like", session="2")  # A->C 3
    log.kept(A, session="3").skipped(D, 0, session="3")  # A->D -1: rejected
    log.kept(E, session="4").kept(A, session="4")  # E->A 1
    log.kept(B, session="5").kept(A, session="5").add(A, "like", session="5")  # B->A 3
    return folded(log, FoldParams(half_life_days=0, credit_window=1, **ONE_HOP))


def test_neighbors_order_scores_and_rejections() -> None:
    gg = lanes_graph()
    out = gg.neighbors(A, now=T0)
    assert [x["track_id"] for x in out] == [C, B]
    assert out[0]["normalized_score"] == 1.0
    assert out[1]["normalized_score"] == pytest.approx(1 / 3)
    assert out[0]["weight"] == 3.0 and out[0]["direction"] == "out"
    assert out[0]["evidence"] == {"pos": 3.0, "neg": 0.0, "acc": 3.0, "n": 1}
    assert all(0.0 <= x["normalized_score"] <= 1.0 for x in out)
    assert D not in {x["track_id"] for x in gg.neighbors(A, direction="both", limit=100)}


def test_neighbors_directions() -> None:
    gg = lanes_graph()
    inn = gg.neighbors(A, direction="in", now=T0)
    assert [(x["track_id"], x["direction"]) for x in inn] == [(B, "in"), (E, "in")]
    both = gg.neighbors(A, direction="both", now=T0)
    # B is both an out-lane (1) and an in-lane (3): the stronger is kept, once.
    assert [(x["track_id"], x["direction"], x["weight"]) for x in both] == [
        (B, "in", 3.0),
        (C, "out", 3.0),
        (E, "in", 1.0),
    ]
    assert [x["normalized_score"] for x in both] == [1.0, 1.0, pytest.approx(1 / 3)]
    with pytest.raises(ValueError):
        gg.neighbors(A, direction="sideways")


def test_neighbors_limit_min_score_unknown_and_ties() -> None:
    gg = lanes_graph()
    assert [x["track_id"] for x in gg.neighbors(A, limit=1, now=T0)] == [C]
    assert gg.neighbors(A, limit=0) == []
    assert [x["track_id"] for x in gg.neighbors(A, min_score=0.5, now=T0)] == [C]
    assert gg.neighbors(str(uuid.UUID(int=999))) == []
    assert gg.neighbors(D, now=T0) == []  # D only has incoming (rejected) edges
    log = Log()
    for i, t in enumerate([E, C, D, B]):
        log.kept(A, session=f"s{i}").kept(t, session=f"s{i}")
    tied = folded(log, FoldParams(half_life_days=0, credit_window=1, **ONE_HOP))
    assert [x["track_id"] for x in tied.neighbors(A, now=T0)] == sorted([B, C, D, E])


def test_neighbors_weight_is_decayed_and_score_is_not() -> None:
    gg = folded(
        Log().kept(A).kept(B).kept(C),
        FoldParams(half_life_days=10, distance_discount_power=1.0, **ONE_HOP),
    )
    now = gg.clock + 10 * DAY
    lanes = gg.neighbors(A, now=now)
    assert [x["track_id"] for x in lanes] == [B, C]
    assert lanes[0]["weight"] == pytest.approx(0.5, rel=1e-5)  # 1.0, halved
    assert lanes[1]["weight"] == pytest.approx(0.25, rel=1e-5)  # 0.5 credit at distance 2, halved
    assert lanes[0]["normalized_score"] == 1.0
    assert lanes[1]["normalized_score"] == pytest.approx(0.5, rel=1e-5)


def test_out_lanes_count_backward_evidence() -> None:
    """B->A kept makes A->B an out-lane of A at lanes_backward_credit, with no direct evidence;
    a direct skip of A->D is not undone by D->A kept; other directions stay one-hop."""
    log = Log().kept(B).kept(A)  # B->A 1
    log.kept(A, session="2").kept(C, session="2")  # A->C 1
    log.kept(D, session="3").kept(A, session="3")  # D->A 1
    log.kept(A, session="4").skipped(D, 0, session="4")  # A->D -1: rejected
    params = FoldParams(half_life_days=0, credit_window=1, lanes_two_hop=0.0)
    gg = folded(log, params)
    out = gg.neighbors(A, now=T0, rejected=True)
    assert [(x["track_id"], x.get("rejected", False)) for x in out] == [
        (C, False),
        (B, False),
        (D, True),
    ]
    assert out[1]["weight"] == pytest.approx(0.6)
    assert out[1]["normalized_score"] == pytest.approx(0.6)
    assert out[1]["evidence"] == {"pos": 0.0, "neg": 0.0, "acc": 0.0, "n": 0}
    assert [x["track_id"] for x in gg.neighbors(A, direction="in", now=T0)] == [B, D]
    off = folded(log, replace(params, lanes_backward_credit=0.0))
    assert [x["track_id"] for x in off.neighbors(A, now=T0)] == [C]


def test_out_lanes_count_two_hops() -> None:
    """A->B and B->C kept: C is a lane of A at lanes_two_hop * w(A->B) * w(B->C) / w_top(B),
    below A's own lanes; a track's two-hop lanes follow its successor's edges as they change,
    through the cache."""
    log = Log().kept(A).kept(B)  # A->B 1
    log.kept(B, session="2").kept(C, session="2")  # B->C 1
    log.kept(B, session="3").kept(E, session="3").add(E, "like", session="3")  # B->E 3
    params = FoldParams(half_life_days=0, credit_window=1, lanes_backward_credit=0.0)
    gg = folded(log, params)
    out = gg.neighbors(A, now=T0)
    assert [x["track_id"] for x in out] == [B, E, C]
    assert [x["weight"] for x in out] == pytest.approx([1.0, 0.15, 0.05])
    assert out[2]["evidence"]["n"] == 0
    # B->C is skipped four times: C drops out of B's lanes, so out of A's two-hop lanes too.
    more = Log()
    for i in range(4):
        more.kept(B, session=f"x{i}").skipped(C, 0, session=f"x{i}")
    gg.fold([e._replace(id=e.id + 1000) for e in more.events])
    assert [x["track_id"] for x in gg.neighbors(A, now=T0)] == [B, E]
    assert [x["track_id"] for x in gg.neighbors(A, direction="both", now=T0)] == [B]
    with pytest.raises(ValueError, match="lanes_two_hop_fanout"):
        FoldParams(lanes_two_hop_fanout=0)
    with pytest.raises(ValueError, match="lanes_two_hop"):
        FoldParams(lanes_two_hop=-0.1)


# ---------------------------------------------------------------------------- params


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="session_timeout_s"):
        FoldParams(session_timeout_s=0)
    with pytest.raises(ValueError, match="credit_window"):
        FoldParams(credit_window=0)
    with pytest.raises(ValueError, match="credit_window"):
        FoldParams(credit_window=2.5)
    with pytest.raises(ValueError, match="skip_penalty"):
        FoldParams(skip_penalty=-1)
    with pytest.raises(ValueError, match="epsilon"):
        FoldParams(epsilon=math.nan)
    with pytest.raises(ValueError, match="max_edges_per_track"):
        FoldParams(max_edges_per_track=True)
    p = FoldParams(session_timeout_s=60, credit_window=5.0)
    assert isinstance(p.session_timeout_s, float) and p.credit_window == 5


# ---------------------------------------------------------------------------- determinism


def random_log(seed: int, n: int = 400) -> list[FoldEvent]:
    import random

    rng = random.Random(seed)
    tracks = [str(uuid.UUID(int=1000 + i)) for i in range(12)]
    kinds = ["radio_next", "play_start", "play_10s", "skip", "like", "play_start", "play_10s"]
    t = T0
    events = []
    for i in range(1, n + 1):
        t += rng.choice([0.5, 3.0, 60.0, 900.0, 2000.0, 3 * DAY])
        ts = t - rng.choice([0.0, 0.0, 0.0, 100.0])  # some late timestamps
        kind = rng.choice(kinds)
        elapsed = rng.choice([None, 0, 1500, 4000, 12000, 40000]) if kind == "skip" else None
        events.append(FoldEvent(i, f"s{rng.randrange(4)}", rng.choice(tracks), kind, ts, elapsed))
    return events


SMALL = FoldParams(
    half_life_days=2.0,
    rebase_exponent=3.0,
    maintenance_every=7,
    maintenance_parts=3,
    max_edges_per_track=3,
    epsilon=0.05,
    credit_window=4,
    session_timeout_s=1800,
)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_batch_split_gives_the_same_graph(seed: int, cuts: list[int]) -> None:
    events = random_log(seed)
    whole = GravityGraph(SMALL)
    whole.fold(events)
    split = GravityGraph(SMALL)
    bounds = [0, *sorted(cuts), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        split.fold(events[lo:hi])
    assert graph_signature(split) == graph_signature(whole)
    assert whole.edge_count == len(whole.to_edge_list())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 200), min_size=20, max_size=80))
def test_cached_lanes_equal_a_fresh_read_after_every_fold(seed: int, cuts: list[int]) -> None:
    """The lanes cache is dropped for every track the fold touches: reads between folds (which
    fill it) answer exactly what a graph that never cached anything answers."""
    import msgpack

    events = random_log(seed, 200)
    live = GravityGraph(SMALL)
    tracks = sorted({e.track_id for e in events})
    bounds = [0, *sorted(cuts), len(events)]
    now = T0 + 400 * DAY
    for lo, hi in itertools.pairwise(bounds):
        live.fold(events[lo:hi])
        state = msgpack.unpackb(msgpack.packb(live.export_state()), strict_map_key=False)
        fresh = GravityGraph.from_state(state, SMALL)
        for t in tracks:
            for direction in ("out", "in", "both"):
                for limit, min_score in ((2, 0.0), (10, 0.5)):
                    args = {"limit": limit, "direction": direction, "min_score": min_score}
                    got = live.neighbors(t, now=now, rejected=True, **args)
                    assert got == fresh.neighbors(t, now=now, rejected=True, **args)


def test_random_log_exercises_rebase_and_pruning() -> None:
    gg = GravityGraph(SMALL)
    gg.fold(random_log(1))
    assert gg.t0 > T0  # rebased
    assert all(len(gg.out_edges(u) or ()) <= 6 for u in gg.tracks())
    assert gg.edge_count > 0


@pytest.mark.parametrize("cut", [0, 1, 57, 200, 399])
def test_state_round_trip_then_continue(cut: int) -> None:
    import msgpack

    events = random_log(7)
    ref = GravityGraph(SMALL)
    ref.fold(events)
    gg = GravityGraph(SMALL)
    gg.fold(events[:cut])
    state = msgpack.unpackb(msgpack.packb(gg.export_state()), strict_map_key=False)
    back = GravityGraph.from_state(state, SMALL)
    assert graph_signature(back) == graph_signature(gg)
    back.fold(events)  # includes already-folded events: skipped by the cursor
    assert graph_signature(back) == graph_signature(ref)


def test_from_state_rejects_bad_input() -> None:
    gg = folded(Log().kept(A).kept(B))
    state = gg.export_state()
    with pytest.raises(ValueError):
        GravityGraph.from_state({**state, "version": 99})
    bad = {**state, "edges": {**state["edges"], "pos": []}}
    with pytest.raises(ValueError):
        GravityGraph.from_state(bad)
