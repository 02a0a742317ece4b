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
from collections.abc import Iterable, Iterator, Mapping
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
# A track's fan: its strongest one-hop out-lanes (ids, stored weights), and the top weight.
Fan = tuple[tuple[str, ...], array, float]
_NO_IDS: tuple[str, ...] = ()
_NO_WEIGHTS = array("d")  # shared by every empty list of kept weights: never written to

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
        fan: Fan,
        deps: tuple[str, ...],
    ) -> None:
        self.t0, self.out, self.inn, self.both, self.fan, self.deps = t0, out, inn, both, fan, deps

    def side(self, direction: str) -> Side:
        return self.out if direction == "out" else self.inn if direction == "in" else self.both


def _best_first(items: list[tuple[float, str, int]], keep: int) -> list[tuple[float, str, int]]:
    """The `keep` smallest (-w, id, dir) or (w, id, dir): a sort when short, a heap when long."""
    if len(items) <= 4 * keep:
        items.sort()
        return items[:keep]
    return heapq.nsmallest(keep, items)


def _one_hop(
    track: str, succ: Adj, pred: Adj, back: float, keep: int
) -> tuple[dict[str, float], dict[str, float], list, list, list, list]:
    """A track's one-hop lanes in every direction, from one pass over its out- and in-edges.

    Returns (out, out_rejected, in, in_rejected, both, both_rejected): out and out_rejected as
    {id: w}, complete (the two-hop term adds to every one-hop lane); the others as (-w, id, dir)
    best first (ties by id), rejected edges as (w, id, dir) most rejected first, `keep` of each.
    Stored weights; out-lanes count `back` times the reverse edge's positive evidence.
    """
    out_adj, in_adj = succ[track], pred[track]
    out: dict[str, float] = {}
    out_no: dict[str, float] = {}
    both: dict[str, tuple[float, int]] = {}
    both_no: dict[str, tuple[float, int]] = {}
    back_of = in_adj if back > 0.0 else _EMPTY
    for v, e in out_adj.items():
        w = e["pos"] - e["neg"]
        if w > 0.0:
            both[v] = (w, 0)
            if back_of:
                r = back_of.get(v)
                if r is not None:
                    w += back * r["pos"]
            out[v] = w
        elif e["neg"] > 0.0:
            both_no[v] = (w, 0)
            out_no[v] = w
    inn: dict[str, float] = {}
    in_no: dict[str, float] = {}
    for v, e in in_adj.items():
        pos = e["pos"]
        w = pos - e["neg"]
        if w > 0.0:
            inn[v] = w
            have = both.get(v)
            if have is None or w > have[0]:
                both[v] = (w, _IN)
        elif e["neg"] > 0.0:
            in_no[v] = w
            have = both_no.get(v)
            if have is None or w < have[0]:
                both_no[v] = (w, _IN)
        if back_of and pos > 0.0 and v not in out_adj:
            out[v] = back * pos  # b->a was kept, a->b never tried: a lane of a's in-edges alone
    if len(both) > keep:  # only the lanes at or above the keep-th weight become tuples
        floor = heapq.nlargest(keep, [w for w, _ in both.values()])[-1]
        both_best = sorted([(-w, t, d) for t, (w, d) in both.items() if w >= floor])[:keep]
    else:
        both_best = sorted([(-w, t, d) for t, (w, d) in both.items()])
    return (
        out,
        out_no,
        _top(inn, keep, _IN),
        _best_first([(w, t, _IN) for t, w in in_no.items()], keep),
        both_best,
        _best_first([(w, t, d) for t, (w, d) in both_no.items() if t not in both], keep),
    )


def _side(best: list[tuple[float, str, int]], worst: list, keep: int, both: bool) -> Side:
    head = best[:keep]
    rej = worst[:keep]
    return Side(
        tuple([t for _, t, _ in head]) if head else _NO_IDS,
        array("d", [-w for w, _, _ in head]) if head else _NO_WEIGHTS,
        -best[0][0] if best else 0.0,
        tuple([t for _, t, _ in rej]) if rej else _NO_IDS,
        array("d", [w for w, _, _ in rej]) if rej else _NO_WEIGHTS,
        bytes([d for _, _, d in head]) if both else None,
        bytes([d for _, _, d in rej]) if both else None,
    )


def compute_track(
    gg: GravityGraph,
    track: str,
    fans: Mapping[str, Fan] | None,
    keep: int,
) -> TrackLanes:
    """A track's lanes from the graph as it is now. The two-hop term reads each successor's
    strongest lanes from `fans` (what the index keeps); None computes them from the graph too,
    which is the fresh computation every kept answer must equal once refreshed."""
    if READING.get():
        _ON_READ[0] += 1
    p = gg.params
    succ, pred = gg.adjacency()
    out, out_no, inn, inn_no, both, both_no = _one_hop(
        track, succ, pred, p.lanes_backward_credit, keep
    )
    worst = sorted([(w, t, 0) for t, w in out_no.items()])
    fan = _fan(out, p.lanes_two_hop_fanout)
    deps: tuple[str, ...] = ()
    gamma = p.lanes_two_hop
    if gamma > 0.0 and out:
        deps = fan[0]
        out_best = _with_two_hop(track, dict(out), set(out_no), fan, fans, gg, gamma, keep)
    else:
        out_best = _top(out, keep)
    return TrackLanes(
        gg.t0,
        _side(out_best, worst, keep, False),
        _side(inn, inn_no, keep, False),
        _side(both, both_no, keep, True),
        fan,
        deps,
    )


def _fan_of(gg: GravityGraph, track: str, fan_n: int) -> Fan:
    """A track's fan from its own edges alone: what `compute_track` would keep as `fan`."""
    succ, pred = gg.adjacency()
    out, _ = _out_one_hop(succ[track], pred[track], gg.params.lanes_backward_credit)
    return _fan(out, fan_n)


def _fan(out: dict[str, float], fan_n: int) -> Fan:
    best = _top(out, fan_n)
    return (
        tuple([t for _, t, _ in best]),
        array("d", [-w for w, _, _ in best]),
        -best[0][0] if best else 0.0,
    )


def _out_one_hop(
    out_adj: Mapping[str, Mapping[str, Any]], in_adj: Mapping[str, Mapping[str, Any]], back: float
) -> tuple[dict[str, float], set[str]]:
    """A track's one-hop out-lanes (stored weights, backward credit included) and the ids of
    its rejected out-edges: the same arithmetic as `_one_hop`, without the in and both sides."""
    out: dict[str, float] = {}
    no: set[str] = set()
    back_of = in_adj if back > 0.0 else _EMPTY
    for v, e in out_adj.items():
        w = e["pos"] - e["neg"]
        if w > 0.0:
            if back_of:
                r = back_of.get(v)
                if r is not None:
                    w += back * r["pos"]
            out[v] = w
        elif e["neg"] > 0.0:
            no.add(v)
    if back_of:
        for v, e in in_adj.items():
            pos = e["pos"]
            if pos > 0.0 and v not in out_adj:
                out[v] = back * pos
    return out, no


def _with_two_hop(
    track: str,
    score: dict[str, float],
    no: set[str],
    fan: Fan,
    fans: Mapping[str, Fan] | None,
    gg: GravityGraph,
    gamma: float,
    keep: int,
) -> list[tuple[float, str, int]]:
    """Add the two-hop term to `score` (the one-hop out-lanes, changed in place) and return
    the `keep` best as (-w, id, 0). `fans` None reads each fan from the graph."""
    fan_n = gg.params.lanes_two_hop_fanout
    no.add(track)
    for w_ab, b in zip(fan[1], fan[0], strict=True):
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
        get = score.get
        if no.isdisjoint(ids_b):  # the usual case: no test per lane (0.0 + x is x exactly)
            for c, x in zip(ids_b, map(k.__mul__, ws_b), strict=True):
                score[c] = get(c, 0.0) + x
            continue
        for w_bc, c in zip(ws_b, ids_b, strict=True):
            if c in no:
                continue
            have = get(c)
            score[c] = k * w_bc if have is None else have + k * w_bc
    return _top(score, keep)


def _top(score: dict[str, float], keep: int, d: int = 0) -> list[tuple[float, str, int]]:
    """The `keep` best of `score` as (-w, id, d), ties by id: past `keep`, only the lanes at or
    above the keep-th weight become tuples (ties at it included, so the order stays exact)."""
    if len(score) > keep:
        floor = heapq.nlargest(keep, score.values())[-1]
        return sorted([(-w, t, d) for t, w in score.items() if w >= floor])[:keep]
    return sorted([(-w, t, d) for t, w in score.items()])


def refresh_two_hop(
    gg: GravityGraph,
    track: str,
    rec: TrackLanes,
    fans: Mapping[str, Fan],
    keep: int,
) -> TrackLanes:
    """A track whose own edges did not change since `rec`, after a fan it read changed: only
    its out side is redone (the in and both sides, the rejected lanes and its own fan are
    its edges' alone). Equal to `compute_track`; a fraction of its cost for a popular track."""
    p = gg.params
    succ, pred = gg.adjacency()
    score, no = _out_one_hop(succ[track], pred[track], p.lanes_backward_credit)
    best = _with_two_hop(track, score, no, rec.fan, fans, gg, p.lanes_two_hop, keep)
    old = rec.out
    out = Side(
        tuple([t for _, t, _ in best]),
        array("d", [-w for w, _, _ in best]),
        -best[0][0] if best else 0.0,
        old.rej_ids,
        old.rej_weights,
    )
    return TrackLanes(rec.t0, out, rec.inn, rec.both, rec.fan, rec.deps)


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
        self.fans: dict[str, Fan] = {}
        # track -> the log position its kept lanes reflect
        self._dirty: dict[str, int] = {}
        # (position, track) of every dirty track, oldest first: a track a fan made dirty from
        # an older position is pushed again (the entry that no longer matches is skipped)
        self._order: list[tuple[int, str]] = []
        # position -> [dirty tracks filed at it, monotonic time it was first filed]; ascending
        self._pending: OrderedDict[int, list[float]] = OrderedDict()
        # dirty tracks whose own edges changed since their record: a full recomputation (the
        # others are dirty only through a fan their two-hop term read: `refresh_two_hop`)
        self._own: set[str] = set()
        # dirty tracks whose own edges changed since their fan was last set: their fans are set
        # before any record is computed, so a record is not computed again for a fan still to
        # come (refreshing records in order recomputed each track 3.5-10 times per pass)
        # (the value: the position its fan reflects, the cursor before the fold first touched
        # it since: a fan's dependents are dirty from there, not from an older position the
        # track's record waits at, or under writes every track is pulled back to the oldest
        # position and the lanes cursor never moves)
        self._unfanned: dict[str, int] = {}
        self._fan_queue: deque[str] = deque()  # the current round's fans still to set
        self._round_end = 0  # tracks dirty from a position before it belong to this round
        self.refreshed = 0  # tracks recomputed, ever

    # ------------------------------------------------------------------ the fold's side

    def mark(self, tracks: Iterable[str], reflected: int, at: float | None = None) -> None:
        """File tracks whose edges changed after log position `reflected` as dirty."""
        dirty = self._dirty
        pending = self._pending
        own = self._own
        unfanned = self._unfanned
        slot = None
        for t in tracks:
            own.add(t)
            if t not in unfanned:
                unfanned[t] = reflected
            if t in dirty:
                continue  # already waiting since an older position: coalesced
            dirty[t] = reflected
            heapq.heappush(self._order, (reflected, t))
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
        """One step of the current round: a fan of its queue, else the record of the oldest
        dirty track; False when nothing is dirty.

        A round starts when the oldest dirty track was touched after the previous round began:
        its queue is every track touched since its fan was last set. Taking fans by rounds, not
        all first, keeps records coming under writes that touch tracks as fast as fans are set
        (fans first always starved them: the lag grew with the run)."""
        dirty = self._dirty
        if not dirty:
            return False
        if self._fan_step():
            return True
        order = self._order
        while dirty.get(order[0][1]) != order[0][0]:
            heapq.heappop(order)  # refreshed since, or made dirty from an older position
        reflected, track = order[0]
        if reflected >= self._round_end and self._unfanned:
            self._fan_queue.extend(self._unfanned)
            self._round_end = self.graph.cursor
            if self._fan_step():
                return True
        heapq.heappop(order)
        del dirty[track]
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
        for done in self.refresh_all_steps(float("inf")):
            n += done
        return n

    def refresh_all_steps(self, budget_s: float, clock: Any = time.perf_counter) -> Iterator[int]:
        """Refresh everything dirty, yielding (how many so far) every `budget_s` of work.

        Fans first: every dirty track's strongest lanes are set before any record is computed,
        so no record is computed twice because a neighbour's fan was still to come (computing
        records in order recomputed each track once per such neighbour: 6.8 times over at load).
        """
        deadline = clock() + budget_s
        n = 0
        unfanned = self._unfanned
        self._round_end = self.graph.cursor
        while unfanned:
            track = next(iter(unfanned))
            self._refresh_fan(track, unfanned.pop(track))
            if clock() >= deadline:
                yield n
                deadline = clock() + budget_s
        while self.refresh_next():
            n += 1
            if clock() >= deadline:
                yield n
                deadline = clock() + budget_s
        yield n

    def _fan_step(self) -> bool:
        """Set the next fan of the round's queue (False when the queue is done)."""
        queue, unfanned = self._fan_queue, self._unfanned
        while queue:
            track = queue.popleft()
            if track in unfanned:  # not computed since it was queued
                self._refresh_fan(track, unfanned.pop(track))
                return True
        return False

    def _refresh_fan(self, track: str, reflected: int) -> None:
        gg = self.graph
        succ, _ = gg.adjacency()
        fan_n = gg.params.lanes_two_hop_fanout
        self._set_fan(track, _fan_of(gg, track, fan_n) if track in succ else None, reflected)

    def _refresh(self, track: str, reflected: int) -> None:
        gg = self.graph
        succ, _pred = gg.adjacency()
        self.refreshed += 1
        fan_at = self._unfanned.pop(track, reflected)
        own = track in self._own
        self._own.discard(track)
        if track in succ:
            old = self.records.get(track)
            if own or old is None or old.t0 != gg.t0:
                rec = compute_track(gg, track, self.fans, self.keep)
            else:
                rec = refresh_two_hop(gg, track, old, self.fans, self.keep)
            self.records[track] = rec
            fan = rec.fan
        else:
            self.records.pop(track, None)
            fan = None
        self._set_fan(track, fan, fan_at)

    def _set_fan(
        self,
        track: str,
        fan: Fan | None,
        reflected: int,
    ) -> None:
        """Keep a track's fan; when it changed, the tracks whose two-hop term read it are dirty
        from `reflected`, the position the old fan reflected (see `_mark_dependents`)."""
        if self.fans.get(track) == fan:
            return
        if fan is None:
            del self.fans[track]
        else:
            self.fans[track] = fan
        succ, pred = self.graph.adjacency()
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

    def _mark_dependents(self, tracks: list[str], fan_at: int) -> None:
        dirty, pending = self._dirty, self._pending
        # The newest pending position at or before the one the old fan reflected: conservative,
        # and there is one (the refreshed track's own entry, older or equal, still holds it).
        reflected = next(p for p in reversed(pending) if p <= fan_at)
        slot = pending[reflected]
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
            heapq.heappush(self._order, (reflected, a))

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
