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
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

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
