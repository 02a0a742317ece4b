"""Routes: a playable path from one track to another along warp lanes (docs/galaxies.md).

The best route is the one whose hops' ``normalized_score`` multiply to the most, i.e. the
shortest path under the cost ``-log(score)`` (a lane scored 1.0 is free, a weak one is dear),
with at most ``max_len`` hops, no track twice and no blocked track.

The search is bounded so that it answers in milliseconds on any graph: from each track it
follows only its ``fanout`` strongest lanes, and it stops after ``visit_budget`` expansions
(then it answers "no route" even if one exists further away). Under a hop limit a plain
Dijkstra over tracks is not exact (a cheap route with many hops can hide a dearer short one),
so labels are (track, hops): a label is expanded only if it reaches its track in fewer hops
than every cheaper label did before it. Costs are non-negative, so the first label popped at
the destination is the best route within the bounds.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# A track's out-lanes, best first: (track id, normalized score in (0, 1]).
LanesOf = Callable[[str], Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class Route:
    path: tuple[str, ...]  # from .. to, every consecutive pair a lane
    scores: tuple[float, ...]  # each hop's normalized score

    @property
    def hops(self) -> int:
        return len(self.path) - 1

    @property
    def score(self) -> float:
        return math.prod(self.scores)


@dataclass(frozen=True)
class RouteBounds:
    max_len: int = 12
    fanout: int = 16
    visit_budget: int = 20_000


def best_route(
    lanes_of: LanesOf,
    src: str,
    dst: str,
    bounds: RouteBounds = RouteBounds(),
    blocked: Container[str] = frozenset(),
) -> Route | None:
    """The best route within `bounds`, or None (see the module docstring)."""
    if src in blocked or dst in blocked or bounds.max_len < 1:
        return None
    if src == dst:
        return Route((src,), ())
    # A label: (cost, hops, tie-break counter, track, parent label or None, the hop's score).
    # Labels pop in (cost, hops) order, so a label that comes back to a track on its own path
    # has more hops and no less cost than the one that passed there first, and is pruned like
    # any other dominated label: no path is ever walked to look for repeats.
    heap: list[tuple] = [(0.0, 0, 0, src, None, 1.0)]
    fewest_hops: dict[str, int] = {}
    counter = 0
    visits = 0
    last = bounds.max_len - 1
    while heap and visits < bounds.visit_budget:
        label = heapq.heappop(heap)
        cost, hops, _, track, _, _ = label
        if track == dst:
            return _route(label)
        seen = fewest_hops.get(track)
        if seen is not None and seen <= hops:
            continue  # a cheaper label already got here in as few hops
        fewest_hops[track] = hops
        visits += 1
        if hops > last:
            continue
        step = hops + 1
        for nxt, score in lanes_of(track)[: bounds.fanout]:
            if score <= 0.0 or nxt in blocked:
                continue
            if hops == last and nxt != dst:
                continue  # the last hop must arrive
            have = fewest_hops.get(nxt)
            if have is not None and have <= step:
                continue  # settled already, cheaper and in as few hops
            counter += 1
            dear = cost - math.log(min(score, 1.0))
            heapq.heappush(heap, (dear, step, counter, nxt, label, score))
    return None


def _route(label: tuple) -> Route:
    path: list[str] = []
    scores: list[float] = []
    while label is not None:
        path.append(label[3])
        if label[4] is not None:
            scores.append(label[5])
        label = label[4]
    return Route(tuple(reversed(path)), tuple(reversed(scores)))


# A lane of score 1.0 costs -log(1) = 0; the epsilon keeps it an edge for scipy and makes the
# fewer-hop route win a tie.
_EPS = 1e-9


class RouteGraph:
    """The lanes as compiled arrays, for routes in vectorised time.

    Built off the event loop from the lanes as of one moment (the galaxies' computation), then
    asked in a thread. The search is Bellman-Ford by layers: after h rounds every track holds
    its cheapest cost from the start in at most h hops, so `max_len` rounds answer exactly the
    best route within the hop limit, with blocked tracks masked out. Each round is a few numpy
    passes over the arcs (sorted by target, so the minimum per target is one `reduceat`),
    instead of one Python step per label. A cycle costs at least 2 x _EPS, so the cheapest walk
    is a path: no track twice.
    """

    def __init__(self, ids: list[str], src: Any, dst: Any, costs: Any) -> None:
        import numpy as np

        self.ids = ids
        self.index = {t: i for i, t in enumerate(ids)}
        order = np.lexsort((src, dst))  # arcs by target: a target's arcs are one run
        self.src, self.dst, self.costs = src[order], dst[order], costs[order]
        self.starts = np.flatnonzero(np.r_[True, self.dst[1:] != self.dst[:-1]])
        self.targets = self.dst[self.starts]

    @staticmethod
    def arrays(lanes: Iterable[tuple[str, Sequence[tuple[str, float]]]], fanout: int) -> dict:
        """Plain arrays of the lanes (each track's `fanout` strongest), cheap to pickle back
        from a worker process; `RouteGraph.from_arrays` compiles them."""
        import numpy as np

        items = sorted((src, out[:fanout]) for src, out in lanes)
        ids = sorted({src for src, _ in items} | {d for _, out in items for d, _ in out})
        index = {t: i for i, t in enumerate(ids)}
        src: list[int] = []
        dst: list[int] = []
        costs: list[float] = []
        for t, out in items:
            for d, score in out:
                if score > 0.0 and d != t:
                    src.append(index[t])
                    dst.append(index[d])
                    costs.append(_EPS - math.log(min(score, 1.0)))
        return {
            "ids": ids,
            "src": np.asarray(src, dtype=np.int32),
            "dst": np.asarray(dst, dtype=np.int32),
            "costs": np.asarray(costs, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> RouteGraph:
        return cls(arrays["ids"], arrays["src"], arrays["dst"], arrays["costs"])

    def best(
        self, src: str, dst: str, max_len: int, blocked: Collection[str] = frozenset()
    ) -> Route | None:
        """The best route of at most `max_len` hops avoiding `blocked`, or None."""
        import numpy as np

        a, b = self.index.get(src), self.index.get(dst)
        if a is None or b is None or src in blocked or dst in blocked or max_len < 1:
            return None
        if a == b:
            return Route((src,), ())
        n = len(self.ids)
        dist = np.full(n, np.inf)
        dist[a] = 0.0
        banned = [self.index[t] for t in blocked if t in self.index] if blocked else []
        preds: list[Any] = []  # per round: the arc index that improved each target, or -1
        for _ in range(max_len):
            vals = dist[self.src] + self.costs
            best_in = np.minimum.reduceat(vals, self.starts)
            current = dist[self.targets]
            better = best_in < current
            if not better.any():
                break
            # the first arc of each improved target's run whose value is the run's minimum
            hit = vals == np.repeat(best_in, np.diff(np.r_[self.starts, len(vals)]))
            first = np.maximum.accumulate(np.where(hit, np.arange(len(vals)), -1))
            arc_of = np.full(n, -1, dtype=np.int64)
            ends = np.r_[self.starts[1:], len(vals)] - 1
            improved = self.targets[better]
            # the last hit at or before a run's end is inside the run (every run has one)
            arc_of[improved] = first[ends[better]]
            dist[improved] = best_in[better]
            if banned:
                dist[banned] = np.inf
                arc_of[banned] = -1
            preds.append(arc_of)
        if not math.isfinite(dist[b]):
            return None
        path = [b]
        arcs: list[int] = []
        for arc_of in reversed(preds):
            arc = int(arc_of[path[-1]])
            if arc >= 0:
                arcs.append(arc)
                path.append(int(self.src[arc]))
        if path[-1] != a:
            return None
        path.reverse()
        scores = [math.exp(_EPS - float(self.costs[arc])) for arc in reversed(arcs)]
        return Route(tuple(self.ids[i] for i in path), tuple(scores))
