"""The session index: its bounds, its votes against hand-computed values, its determinism across
batches, and its trip through a real snapshot file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gravityd.core.events import FoldEvent
from gravityd.core.graph import FoldParams
from gravityd.core.ranking import RankParams, rank_pool
from gravityd.core.session_index import SessionIndex, SessionQuery, session_scores
from gravityd.snapshots.files import load_newest, write_snapshot
from gravityd.snapshots.state import State, fold_rows


def kept(sessions: list[tuple[str, list[str]]], start: float = 1000.0, gap: float = 60.0):
    """Each session's tracks as play_start + play_10s events, ids increasing."""
    out: list[FoldEvent] = []
    t = start
    eid = 1
    for sid, tracks in sessions:
        for track in tracks:
            out.append(FoldEvent(eid, sid, track, "play_start", t, None))
            out.append(FoldEvent(eid + 1, sid, track, "play_10s", t + 10.0, None))
            eid += 2
            t += gap
    return out


def test_bounds_hold() -> None:
    idx = SessionIndex(per_track=2, length=3, sessions=4, timeout_s=1800.0)
    idx.fold(kept([("long", ["t1", "t2", "t3", "t4", "t5"])]))
    # a session longer than `length` goes on as a new indexed session
    assert [r[2] for r in idx.stored.values()] == [["t1", "t2", "t3"], ["t4", "t5"]]
    idx.fold(kept([(f"s{i}", ["hot", f"u{i}"]) for i in range(6)], start=10_000.0))
    assert len(idx) == 4  # the oldest forgotten first
    assert min(idx.stored) == idx.next_serial - 4
    assert all(len(r[2]) <= 3 for r in idx.stored.values())
    assert all(len(q) <= 2 for q in idx.by_track.values())
    assert list(idx.by_track["hot"]) == [6, 7]
    # the document frequencies are exactly those of the stored sessions
    df: dict[str, int] = {}
    for r in idx.stored.values():
        for t in r[2]:
            df[t] = df.get(t, 0) + 1
    assert idx.df == df
    assert set(idx.by_track) <= set(df)
    assert set(idx.open.values()) <= set(idx.stored)


def test_skips_and_repeats_are_not_indexed() -> None:
    idx = SessionIndex(per_track=5, length=10, sessions=10, timeout_s=100.0)
    events = [
        FoldEvent(1, "s", "a", "play_10s", 0.0, None),
        FoldEvent(2, "s", "b", "skip", 5.0, 2000),
        FoldEvent(3, "s", "a", "like", 6.0, None),  # a repeat: once per session
        FoldEvent(4, "s", "c", "play_10s", 500.0, None),  # silent past the timeout: new session
    ]
    assert idx.fold(events) == 2
    assert [r[2] for r in idx.stored.values()] == [["a"], ["c"]]


def test_votes_match_hand_computed_values() -> None:
    idx = SessionIndex(per_track=10, length=20, sessions=100)
    idx.fold(kept([("s0", ["a", "b", "c"]), ("s1", ["b", "d"]), ("s2", ["x", "y"])]))
    pool = dict.fromkeys(["c", "d", "y"])
    q = SessionQuery(
        sample=10, neighbours=10, position_decay=1.0, recency=0.0, item_decay=1.0, idf=0.0
    )
    got = session_scores(idx, ["a", "b"], pool, q)
    e1 = math.exp(-1.0)
    # s0 shares a (1 step back: e^-1) and b (1); |s0| = 3; c is 1 step after b in s0
    sim0 = (1.0 + e1) / math.sqrt(3.0)
    # s1 shares b; |s1| = 2; d is 1 step after b
    sim1 = 1.0 / math.sqrt(2.0)
    assert got == pytest.approx({"c": sim0 * e1, "d": sim1 * e1}, rel=1e-12)
    # recency: s0 is 2 sessions older than the newest (s2), s1 one
    q_rec = SessionQuery(
        sample=10, neighbours=10, position_decay=1.0, recency=1.0, item_decay=1.0, idf=0.0
    )
    got = session_scores(idx, ["a", "b"], pool, q_rec)
    assert got == pytest.approx({"c": sim0 * e1 * math.exp(-2.0), "d": sim1 * e1 * e1})
    # idf: 3 sessions, c and d in one each
    q_idf = SessionQuery(
        sample=10, neighbours=10, position_decay=1.0, recency=0.0, item_decay=1.0, idf=1.0
    )
    got = session_scores(idx, ["a", "b"], pool, q_idf)
    boost = 1.0 + math.log(3.0)
    assert got == pytest.approx({"c": sim0 * e1 * boost, "d": sim1 * e1 * boost})
    # only the single most similar neighbour votes; a sample of 1 looks at the newest only
    one = SessionQuery(sample=10, neighbours=1, position_decay=1.0, item_decay=1.0, idf=0.0)
    assert session_scores(idx, ["a", "b"], pool, one) == pytest.approx({"c": sim0 * e1})
    newest = SessionQuery(sample=1, neighbours=10, position_decay=1.0, item_decay=1.0, idf=0.0)
    assert session_scores(idx, ["a", "b"], pool, newest) == pytest.approx({"d": sim1 * e1})


def test_ranking_uses_the_votes() -> None:
    idx = SessionIndex(per_track=10, length=20, sessions=100)
    idx.fold(kept([(f"s{i}", ["a", "b", "c"]) for i in range(3)]))
    emb = {"c": 0.1, "z": 0.2}
    ranked = rank_pool("b", ["z", "c"], emb, ["a"], graph=None, sessions=idx)
    assert [r["track_id"] for r in ranked] == ["c", "z"]
    assert ranked[0]["score"] == pytest.approx(0.1 + RankParams().rank_session_weight)
    off = RankParams(rank_session_weight=0.0)
    ranked = rank_pool("b", ["z", "c"], emb, ["a"], graph=None, sessions=idx, params=off)
    assert [r["track_id"] for r in ranked] == ["z", "c"]


def test_batches_do_not_matter() -> None:
    events = kept([(f"s{i % 7}", [f"t{(i * 5 + j) % 11}" for j in range(4)]) for i in range(30)])
    whole = SessionIndex(per_track=3, length=5, sessions=9)
    whole.fold(events)
    pieces = SessionIndex(per_track=3, length=5, sessions=9)
    for i in range(0, len(events), 7):
        pieces.fold(events[i : i + 7])
    assert whole.signature() == pieces.signature()


def test_snapshot_round_trip(tmp_path: Path) -> None:
    params = FoldParams(session_index_per_track=4, session_index_length=3)
    state = State.empty(params, None)
    rows = kept([(f"s{i}", [f"t{(i + j) % 6}" for j in range(5)]) for i in range(8)])
    fold_rows(state, rows)
    fold_rows(state, rows)  # rows at or below the cursor change nothing
    assert len(state.sessions) == 16
    write_snapshot(state.graph, tmp_path, 3, state.blocks, state.extra_records(3))
    found = load_newest(tmp_path, params)
    assert found is not None
    loaded = State.from_found(found, None)
    assert loaded.sessions.signature() == state.sessions.signature()
    assert loaded.sessions.per_track == 4 and loaded.sessions.length == 3
    # folding on from the loaded index gives what folding on from the live one gives
    more = kept([("late", ["t1", "t2"])], start=99_999.0)
    more = [ev._replace(id=ev.id + 1000) for ev in more]
    fold_rows(state, more)
    fold_rows(loaded, more)
    assert loaded.sessions.signature() == state.sessions.signature()


def test_old_snapshot_without_the_index_loads(tmp_path: Path) -> None:
    state = State.empty(FoldParams(), None)
    fold_rows(state, kept([("s", ["a", "b"])]))
    write_snapshot(state.graph, tmp_path, 100, state.blocks, ())  # as before the index
    found = load_newest(tmp_path)
    assert found is not None
    loaded = State.from_found(found, None)
    assert len(loaded.sessions) == 0 and loaded.cursor == state.cursor
