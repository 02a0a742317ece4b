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
import itertools
import math
from collections.abc import Callable, Container, Iterable, Sequence
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
    """The lanes as a compiled sparse graph, for routes in C time.

    Built off the event loop from the lanes as of one moment (the galaxies' computation), then
    asked in a thread: scipy's Dijkstra over ~10k tracks x 16 lanes takes milliseconds where
    the label search above, in Python, can take a second. It knows no hop limit and no
    takedowns, so `best` answers None when its route is too long or crosses a blocked track,
    and the caller falls back to `best_route`: the unconstrained best route, when it fits, is
    also the best within the bounds (costs are non-negative).
    """

    def __init__(self, ids: list[str], indptr: Any, indices: Any, costs: Any) -> None:
        from scipy.sparse import csr_matrix

        self.ids = ids
        self.index = {t: i for i, t in enumerate(ids)}
        n = len(ids)
        self.matrix = csr_matrix((costs, indices, indptr), shape=(n, n))

    @staticmethod
    def arrays(lanes: Iterable[tuple[str, Sequence[tuple[str, float]]]], fanout: int) -> dict:
        """Plain arrays of the lanes (each track's `fanout` strongest), cheap to pickle back
        from a worker process; `RouteGraph.from_arrays` compiles them."""
        import numpy as np

        items = sorted((src, out[:fanout]) for src, out in lanes)
        ids = sorted({src for src, _ in items} | {d for _, out in items for d, _ in out})
        index = {t: i for i, t in enumerate(ids)}
        rows = dict(items)
        indptr = [0]
        indices: list[int] = []
        costs: list[float] = []
        for t in ids:
            for d, score in rows.get(t, ()):
                if score > 0.0 and d != t:
                    indices.append(index[d])
                    costs.append(_EPS - math.log(min(score, 1.0)))
            indptr.append(len(indices))
        return {
            "ids": ids,
            "indptr": np.asarray(indptr, dtype=np.int64),
            "indices": np.asarray(indices, dtype=np.int32),
            "costs": np.asarray(costs, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> RouteGraph:
        return cls(arrays["ids"], arrays["indptr"], arrays["indices"], arrays["costs"])

    def best(
        self, src: str, dst: str, max_len: int, blocked: Container[str] = frozenset()
    ) -> Route | None:
        """The unconstrained best route if it fits `max_len` and avoids `blocked`, else None."""
        from scipy.sparse.csgraph import dijkstra

        a, b = self.index.get(src), self.index.get(dst)
        if a is None or b is None or src == dst:
            return None
        dist, pred = dijkstra(self.matrix, indices=a, return_predecessors=True)
        if not math.isfinite(dist[b]):
            return None
        path = [b]
        while path[-1] != a:
            path.append(int(pred[path[-1]]))
            if len(path) > max_len + 1:
                return None
        path.reverse()
        ids = [self.ids[i] for i in path]
        if any(t in blocked for t in ids):
            return None
        m = self.matrix
        scores = []
        for x, y in itertools.pairwise(path):
            row = slice(m.indptr[x], m.indptr[x + 1])
            cost = float(m.data[row][m.indices[row] == y].min())
            scores.append(math.exp(_EPS - cost))
        return Route(tuple(ids), tuple(scores))
