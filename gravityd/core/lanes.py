"""Warp lanes kept ready: every track's best lanes, computed off the request path.

A read must cost O(limit) whatever the write load (docs/reads.md). So the lanes a read serves are
computed ahead: per track and direction, the K strongest lanes (K = the API's largest limit), their
top weight and the most rejected edges, in stored (forward-scaled) weights. Forward decay scales
every stored weight by one factor, so a track's order only changes when the fold touches one of
its edges, or, through the two-hop term, one of its strongest neighbours' edges.

The fold does not recompute anything: it only names the tracks it touched (`GravityGraph`'s
touched set), which `LaneIndex.mark` files as dirty with the log position their lanes still
reflect. `LaneIndex.refresh_for` recomputes dirty tracks oldest first within a time budget; a
track touched a thousand times before its turn is recomputed once. When a track's strongest
one-hop lanes change, the tracks whose two-hop term used them become dirty too, with the same
position. `LaneIndex.cursor` is the log position every kept lane reflects: the oldest dirty
position, or the graph's cursor when nothing is dirty; `lag_seconds` is how long the oldest dirty
touch has waited. Once nothing is dirty, every kept answer equals `fresh_neighbors` on the graph.

Pure: no I/O, no asyncio. Reads never compute: a track the index has not computed yet answers [].
"""

from __future__ import annotations

import heapq
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gravityd.core.graph import GravityGraph

__all__ = [
    "DIRECTIONS",
    "READING",
    "LaneIndex",
    "Side",
    "TrackLanes",
    "compute_track",
    "fresh_neighbors",
    "read_rebuilds",
]

DIRECTIONS = ("out", "in", "both")
_IN = 1  # a lane's direction code in a "both" list (0: out)
_NO_EDGE = {"pos": 0.0, "neg": 0.0, "acc": 0.0, "n": 0}
_EMPTY: dict[str, Any] = {}

Adj = Mapping[str, Mapping[str, Mapping[str, Any]]]

# Set while a request is answered: a lanes computation that sees it is a rebuild on the read
# path, which the design forbids; /metrics shows the count (gravityd_lanes_read_rebuilds).
READING: ContextVar[bool] = ContextVar("gravityd_reading", default=False)
_ON_READ = [0]


def read_rebuilds() -> int:
    """Lanes computations made while a request was being answered, in this process."""
    return _ON_READ[0]


class Side:
    """One direction's kept lanes: ids best first with their stored weights, the top weight,
    the most rejected edges; `dirs` (direction "both" only) marks in-lanes with 1."""

    __slots__ = ("dirs", "ids", "rej_dirs", "rej_ids", "rej_weights", "top", "weights")

    def __init__(
        self,
        ids: tuple[str, ...],
        weights: array,
        top: float,
        rej_ids: tuple[str, ...],
        rej_weights: array,
        dirs: bytes | None = None,
        rej_dirs: bytes | None = None,
    ) -> None:
        self.ids, self.weights, self.top = ids, weights, top
        self.rej_ids, self.rej_weights = rej_ids, rej_weights
        self.dirs, self.rej_dirs = dirs, rej_dirs


class TrackLanes:
    """Everything a read of one track needs, replaced whole on refresh (readers never see half).

    ``t0`` is the forward-decay landmark its weights are scaled to; ``fan`` the track's strongest
    one-hop out-lanes (ids, weights, top) that other tracks' two-hop term reads; ``deps`` the
    tracks whose ``fan`` this track's two-hop term read.
    """

    __slots__ = ("both", "deps", "fan", "inn", "out", "t0")

    def __init__(
        self,
        t0: float,
        out: Side,
        inn: Side,
        both: Side,
        fan: tuple[tuple[str, ...], tuple[float, ...], float],
        deps: tuple[str, ...],
    ) -> None:
        self.t0, self.out, self.inn, self.both, self.fan, self.deps = t0, out, inn, both, fan, deps

    def side(self, direction: str) -> Side:
        return self.out if direction == "out" else self.inn if direction == "in" else self.both


def _one_hop(
    track: str, succ: Adj, pred: Adj, direction: str, back: float
) -> tuple[list[tuple[float, str, int]], list[tuple[float, str, int]]]:
    """Every lane of a track in one direction as (-w, id, dir) sorted best first (ties by id),
    and its rejected edges as (w, id, dir), most rejected first. Stored weights."""
    lanes: dict[str, tuple[float, int]] = {}
    against: dict[str, tuple[float, int]] = {}
    sides: list[tuple[int, Mapping[str, Mapping[str, Any]]]] = []
    if direction != "in":
        sides.append((0, succ[track]))
    if direction != "out":
        sides.append((_IN, pred[track]))
    if direction != "out":
        back = 0.0
    back_of = pred[track] if back > 0.0 else _EMPTY
    for d, adj in sides:
        for v, e in adj.items():
            w = e["pos"] - e["neg"]
            if back_of and w > 0.0:
                r = back_of.get(v)
                if r is not None:
                    w += back * r["pos"]
            if w > 0.0:
                have = lanes.get(v)
                if have is None or w > have[0]:
                    lanes[v] = (w, d)
            elif e["neg"] > 0.0:
                have = against.get(v)
                if have is None or w < have[0]:
                    against[v] = (w, d)
    if back_of:  # lanes out of a's in-edges alone: b->a was kept, a->b never tried
        succ_a = succ[track]
        for v, r in back_of.items():
            if v not in succ_a and r["pos"] > 0.0:
                lanes[v] = (back * r["pos"], 0)
    best = sorted([(-w, t, d) for t, (w, d) in lanes.items()])
    worst = sorted([(w, t, d) for t, (w, d) in against.items() if t not in lanes])
    return best, worst


def _side(best: list[tuple[float, str, int]], worst: list, keep: int, both: bool) -> Side:
    head = best[:keep]
    rej = worst[:keep]
    return Side(
        tuple([t for _, t, _ in head]),
        array("d", [-w for w, _, _ in head]),
        -best[0][0] if best else 0.0,
        tuple([t for _, t, _ in rej]),
        array("d", [w for w, _, _ in rej]),
        bytes([d for _, _, d in head]) if both else None,
        bytes([d for _, _, d in rej]) if both else None,
    )


def compute_track(
    gg: GravityGraph,
    track: str,
    fans: Mapping[str, tuple[tuple[str, ...], tuple[float, ...], float]] | None,
    keep: int,
) -> TrackLanes:
    """A track's lanes from the graph as it is now. The two-hop term reads each successor's
    strongest lanes from `fans` (what the index keeps); None computes them from the graph too,
    which is the fresh computation every kept answer must equal once refreshed."""
    if READING.get():
        _ON_READ[0] += 1
    p = gg.params
    succ, pred = gg.adjacency()
    fan_n = p.lanes_two_hop_fanout
    best, worst = _one_hop(track, succ, pred, "out", p.lanes_backward_credit)
    fan = (
        tuple([t for _, t, _ in best[:fan_n]]),
        tuple([-w for w, _, _ in best[:fan_n]]),
        -best[0][0] if best else 0.0,
    )
    deps: tuple[str, ...] = ()
    gamma = p.lanes_two_hop
    if gamma > 0.0 and best:
        deps = fan[0]
        score: dict[str, float] = {t: -w for w, t, _ in best}
        no = {t for _, t, _ in worst}
        no.add(track)
        for w_ab, b in zip(fan[1], deps, strict=True):
            if fans is None:
                fb = _fan_of(gg, b, fan_n)
            else:
                fb = fans.get(b)
                if fb is None:
                    continue
            ids_b, ws_b, top_b = fb
            if not ids_b:
                continue
            k = gamma * w_ab / top_b
            for w_bc, c in zip(ws_b, ids_b, strict=True):
                if c in no:
                    continue
                have = score.get(c)
                score[c] = k * w_bc if have is None else have + k * w_bc
        merged = [(-w, t) for t, w in score.items()]
        merged = sorted(merged) if len(merged) <= 4 * keep else heapq.nsmallest(keep, merged)
        out_best = [(w, t, 0) for w, t in merged]
    else:
        out_best = best
    inn = _one_hop(track, succ, pred, "in", 0.0)
    both = _one_hop(track, succ, pred, "both", 0.0)
    return TrackLanes(
        gg.t0,
        _side(out_best, worst, keep, False),
        _side(*inn, keep, False),
        _side(*both, keep, True),
        fan,
        deps,
    )


def _fan_of(
    gg: GravityGraph, track: str, fan_n: int
) -> tuple[tuple[str, ...], tuple[float, ...], float]:
    succ, pred = gg.adjacency()
    best, _ = _one_hop(track, succ, pred, "out", gg.params.lanes_backward_credit)
    return (
        tuple([t for _, t, _ in best[:fan_n]]),
        tuple([-w for w, _, _ in best[:fan_n]]),
        -best[0][0] if best else 0.0,
    )


def _lane(
    t: str, w: float, score: float, d: str, e: Mapping[str, Any] | None, f: float, fe: float
) -> dict[str, Any]:
    if e is None:  # a lane of two hops or backward credit only: no direct edge, no evidence
        e = _NO_EDGE
    return {
        "track_id": t,
        "weight": w * f,
        "normalized_score": score,
        "evidence": {
            "pos": e["pos"] * fe,
            "neg": e["neg"] * fe,
            "acc": e["acc"] * fe,
            "n": e["n"],
        },
        "direction": d,
    }


def serve(
    gg: GravityGraph,
    track: str,
    rec: TrackLanes,
    *,
    limit: int,
    direction: str,
    min_score: float,
    now: float | None,
    rejected: bool,
) -> list[dict[str, Any]]:
    """The answer from kept lanes: O(limit). Evidence is the direct edge's, as it is now."""
    side = rec.side(direction)
    f = gg.decay_factor_at(rec.t0, now)
    fe = gg.decay_factor(now) if rec.t0 != gg.t0 else f
    succ, pred = gg.adjacency()
    out_adj = succ.get(track, _EMPTY)
    in_adj = pred.get(track, _EMPTY)
    ids, ws, top, dirs = side.ids, side.weights, side.top, side.dirs
    inward = direction == "in"
    out: list[dict[str, Any]] = []
    for i in range(min(limit, len(ids))):
        w = ws[i]
        if w / top < min_score or w * f <= 0.0:  # past min_score, or decayed to nothing
            break
        t = ids[i]
        if inward or (dirs is not None and dirs[i] == _IN):
            out.append(_lane(t, w, min(1.0, w / top), "in", in_adj.get(t), f, fe))
        else:
            out.append(_lane(t, w, min(1.0, w / top), "out", out_adj.get(t), f, fe))
    if rejected:
        rdirs = side.rej_dirs
        for i in range(min(limit, len(side.rej_ids))):
            t = side.rej_ids[i]
            back = inward or (rdirs is not None and rdirs[i] == _IN)
            e = in_adj.get(t) if back else out_adj.get(t)
            lane = _lane(t, side.rej_weights[i], 0.0, "in" if back else "out", e, f, fe)
            lane["rejected"] = True
            out.append(lane)
    return out


def fresh_neighbors(
    gg: GravityGraph,
    track: str,
    *,
    limit: int,
    direction: str,
    min_score: float,
    now: float | None,
    rejected: bool,
    keep: int = 100,
) -> list[dict[str, Any]]:
    """The answer computed from the graph alone: what a kept answer equals once refreshed."""
    if direction not in DIRECTIONS:
        raise ValueError("direction: must be out, in or both")
    succ, _ = gg.adjacency()
    if limit <= 0 or track not in succ:
        return []
    rec = compute_track(gg, track, None, max(keep, limit))
    return serve(
        gg,
        track,
        rec,
        limit=limit,
        direction=direction,
        min_score=min_score,
        now=now,
        rejected=rejected,
    )


class LaneIndex:
    """Kept lanes for every track of one graph, the dirty set and the refresh that drains it."""

    def __init__(self, gg: GravityGraph, keep: int = 100) -> None:
        self.graph = gg
        self.keep = keep
        self.records: dict[str, TrackLanes] = {}
        self.fans: dict[str, tuple[tuple[str, ...], tuple[float, ...], float]] = {}
        # track -> the log position its kept lanes reflect; oldest first
        self._dirty: OrderedDict[str, int] = OrderedDict()
        # dirty tracks whose two-hop term read a fan that changed: they hold an old position,
        # so they go before the queue
        self._front: deque[str] = deque()
        # position -> [dirty tracks filed at it, monotonic time it was first filed]; ascending
        self._pending: OrderedDict[int, list[float]] = OrderedDict()
        self.refreshed = 0  # tracks recomputed, ever

    # ------------------------------------------------------------------ the fold's side

    def mark(self, tracks: Iterable[str], reflected: int, at: float | None = None) -> None:
        """File tracks whose edges changed after log position `reflected` as dirty."""
        dirty = self._dirty
        pending = self._pending
        slot = None
        for t in tracks:
            if t in dirty:
                continue  # already waiting since an older position: coalesced
            dirty[t] = reflected
            if slot is None:
                slot = pending.get(reflected)
                if slot is None:
                    slot = pending[reflected] = [0, time.monotonic() if at is None else at]
            slot[0] += 1

    def mark_all(self, reflected: int) -> None:
        """Every track (and every kept one the graph dropped) is dirty: a new graph, a rebase."""
        succ, _ = self.graph.adjacency()
        self.mark(list(succ), reflected)
        self.mark([t for t in self.records if t not in succ], reflected)

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    def waiting(self) -> list[str]:
        """The tracks whose kept lanes wait for a refresh."""
        return list(self._dirty)

    @property
    def cursor(self) -> int:
        """Every kept lane reflects the log at least through this position."""
        for position in self._pending:
            return position
        return self.graph.cursor

    def lag_seconds(self, now: float | None = None) -> float:
        """How long the oldest dirty touch has waited for its refresh (0 when none waits)."""
        for slot in self._pending.values():
            return max(0.0, (time.monotonic() if now is None else now) - slot[1])
        return 0.0

    # ------------------------------------------------------------------ refreshing

    def refresh_next(self) -> bool:
        """Recompute the oldest dirty track; False when nothing is dirty."""
        dirty = self._dirty
        if not dirty:
            return False
        front = self._front
        while front:
            track = front.popleft()
            reflected = dirty.pop(track, None)
            if reflected is not None:
                break
        else:
            track, reflected = dirty.popitem(last=False)
        self._refresh(track, reflected)
        slot = self._pending[reflected]
        slot[0] -= 1
        if slot[0] <= 0:
            del self._pending[reflected]
        return True

    def refresh_for(self, budget_s: float, clock: Any = time.perf_counter) -> int:
        """Recompute dirty tracks, oldest first, until `budget_s` has passed; how many."""
        deadline = clock() + budget_s
        n = 0
        while self.refresh_next():
            n += 1
            if clock() >= deadline:
                break
        return n

    def refresh_all(self) -> int:
        n = 0
        while self.refresh_next():
            n += 1
        return n

    def _refresh(self, track: str, reflected: int) -> None:
        gg = self.graph
        succ, pred = gg.adjacency()
        self.refreshed += 1
        if track in succ:
            rec = compute_track(gg, track, self.fans, self.keep)
            self.records[track] = rec
            fan = rec.fan
        else:
            self.records.pop(track, None)
            fan = None
        if self.fans.get(track) == fan:
            return
        if fan is None:
            del self.fans[track]
        else:
            self.fans[track] = fan
        # The tracks whose two-hop term read this track's fan: they can only be its neighbours.
        records = self.records
        dependents = [
            a
            for adj in (pred.get(track, _EMPTY), succ.get(track, _EMPTY))
            for a in adj
            if a != track and (rec_a := records.get(a)) is not None and track in rec_a.deps
        ]
        if dependents:
            self._mark_dependents(dependents, reflected)

    def _mark_dependents(self, tracks: list[str], reflected: int) -> None:
        dirty, pending = self._dirty, self._pending
        slot = pending[reflected]  # the refreshed track's own entry still holds it
        for a in tracks:
            have = dirty.get(a)
            if have is not None:
                if have <= reflected:
                    continue
                old = pending[have]
                old[0] -= 1
                if old[0] <= 0:
                    del pending[have]
            dirty[a] = reflected
            slot[0] += 1
            self._front.append(a)

    # ------------------------------------------------------------------ reading

    def get(self, track: str) -> TrackLanes | None:
        return self.records.get(track)

    def neighbors(
        self,
        track: str,
        *,
        limit: int = 10,
        direction: str = "out",
        min_score: float = 0.0,
        now: float | None = None,
        rejected: bool = False,
    ) -> list[dict[str, Any]]:
        """The kept answer: O(limit), never a computation ([] for a track not computed yet)."""
        if direction not in DIRECTIONS:
            raise ValueError("direction: must be out, in or both")
        rec = self.records.get(track)
        if rec is None or limit <= 0:
            return []
        return serve(
            self.graph,
            track,
            rec,
            limit=limit,
            direction=direction,
            min_score=min_score,
            now=now,
            rejected=rejected,
        )
