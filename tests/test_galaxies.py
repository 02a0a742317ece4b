"""Galaxies and routes as pure functions: planted communities come back, routes are the best
playable path within their bounds (checked against brute force), and both are repeatable."""

from __future__ import annotations

import itertools
import math
import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravityd.core.galaxies import Galaxies, compute_galaxies
from gravityd.core.routes import RouteBounds, RouteGraph, best_route


def planted(groups: int, size: int, seed: int) -> dict[str, list[tuple[str, float]]]:
    """Groups of tracks with strong lanes inside and a few weak ones between."""
    rnd = random.Random(seed)
    lanes: dict[str, list[tuple[str, float]]] = {}
    for gi in range(groups):
        for i in range(size):
            t = f"g{gi}-t{i}"
            inside = [f"g{gi}-t{j}" for j in rnd.sample(range(size), 6) if j != i]
            out = [(d, rnd.uniform(0.6, 1.0)) for d in inside]
            other = rnd.randrange(groups - 1)
            other += other >= gi
            out.append((f"g{other}-t{rnd.randrange(size)}", rnd.uniform(0.01, 0.08)))
            out.sort(key=lambda x: -x[1])
            lanes[t] = out
    return lanes


def test_planted_communities_are_recovered() -> None:
    lanes = planted(groups=5, size=30, seed=1)
    gal = compute_galaxies(lanes.items(), seed=7)
    assert gal.count == 5
    for m in gal.members:
        assert len({t.split("-")[0] for t in m}) == 1, m
    assert sorted(len(m) for m in gal.members) == [30] * 5
    assert math.isclose(sum(gal.centrality.values()), 1.0, rel_tol=1e-6)
    assert set(gal.positions) == set(gal.galaxy_of) == set(lanes)


def test_galaxies_are_deterministic_and_ordered() -> None:
    lanes = planted(groups=4, size=25, seed=3)
    a = compute_galaxies(lanes.items(), seed=11, cursor=9, computed_at=5.0)
    shuffled = list(lanes.items())
    random.Random(0).shuffle(shuffled)
    b = compute_galaxies(shuffled, seed=11, cursor=9, computed_at=5.0)
    assert a == b
    sizes = [len(m) for m in a.members]
    assert sizes == sorted(sizes, reverse=True)
    for m in a.members:  # most central first
        cents = [a.centrality[t] for t in m]
        assert cents == sorted(cents, reverse=True)


def test_records_round_trip() -> None:
    gal = compute_galaxies(planted(3, 12, seed=5).items(), seed=2, cursor=42, computed_at=1.5)
    assert Galaxies.from_records(gal.to_records()) == gal


def test_empty_lanes_give_no_galaxies() -> None:
    assert compute_galaxies([]).count == 0


def chain_lanes(edges: dict[str, list[tuple[str, float]]]):
    return lambda t: edges.get(t, [])


def test_route_takes_the_best_product_not_the_fewest_hops() -> None:
    lanes = {
        "a": [("b", 1.0), ("z", 0.1)],
        "b": [("c", 1.0)],
        "c": [("z", 0.9)],
    }
    r = best_route(chain_lanes(lanes), "a", "z")
    assert r is not None and r.path == ("a", "b", "c", "z")
    assert math.isclose(r.score, 0.9) and r.hops == 3
    short = best_route(chain_lanes(lanes), "a", "z", RouteBounds(max_len=2))
    assert short is not None and short.path == ("a", "z") and math.isclose(short.score, 0.1)


def test_route_avoids_blocked_and_answers_none_without_a_path() -> None:
    lanes = {"a": [("b", 1.0), ("c", 0.5)], "b": [("d", 1.0)], "c": [("d", 1.0)]}
    compiled = RouteGraph.from_arrays(RouteGraph.arrays(lanes.items(), 16))
    fast = compiled.best("a", "d", 12, blocked={"b"})
    assert fast is not None and fast.path == ("a", "c", "d")
    assert compiled.best("a", "d", 12, blocked={"b", "c"}) is None
    assert compiled.best("d", "a", 12) is None and compiled.best("a", "d", 1) is None
    r = best_route(chain_lanes(lanes), "a", "d", blocked={"b"})
    assert r is not None and r.path == ("a", "c", "d")
    assert best_route(chain_lanes(lanes), "a", "d", blocked={"b", "c"}) is None
    assert best_route(chain_lanes(lanes), "d", "a") is None
    assert best_route(chain_lanes(lanes), "a", "d", blocked={"d"}) is None
    assert best_route(chain_lanes(lanes), "a", "d", RouteBounds(max_len=1)) is None


def brute_force(lanes: dict, src: str, dst: str, bounds: RouteBounds) -> float | None:
    g = nx.DiGraph()
    for a, out in lanes.items():
        for b, s in out[: bounds.fanout]:
            g.add_edge(a, b, s=s)
    if src not in g or dst not in g:
        return None
    best = None
    for p in nx.all_simple_paths(g, src, dst, cutoff=bounds.max_len):
        s = math.prod(g[a][b]["s"] for a, b in itertools.pairwise(p))
        best = s if best is None or s > best else best
    return best


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(3, 12),
    max_len=st.integers(1, 4),
    degree=st.integers(2, 4),
    fanout=st.integers(1, 4),
)
def test_route_matches_brute_force(
    seed: int, n: int, max_len: int, degree: int, fanout: int
) -> None:
    rnd = random.Random(seed)
    tracks = [f"t{i}" for i in range(n)]
    lanes = {}
    for t in tracks:
        picks = rnd.sample(tracks, min(degree, n))
        out = [(d, round(rnd.uniform(0.05, 1.0), 3)) for d in picks if d != t]
        out.sort(key=lambda x: (-x[1], x[0]))
        lanes[t] = out
    bounds = RouteBounds(max_len=max_len, fanout=fanout)
    r = best_route(chain_lanes(lanes), "t0", "t1", bounds)
    expected = brute_force(lanes, "t0", "t1", bounds)
    # The compiled graph answers the same best route, exactly within the hop limit.
    compiled = RouteGraph.from_arrays(RouteGraph.arrays(lanes.items(), fanout))
    fast = compiled.best("t0", "t1", max_len)
    assert (fast is None) == (expected is None)
    if fast is not None:
        assert math.isclose(fast.score, expected, rel_tol=1e-6)
        assert fast.path[0] == "t0" and fast.path[-1] == "t1"
        assert fast.hops <= max_len and len(set(fast.path)) == len(fast.path)
        for (a, b), sc in zip(itertools.pairwise(fast.path), fast.scores, strict=True):
            assert (b, sc) in [(d, pytest.approx(x)) for d, x in lanes[a][:fanout]]
    if expected is None:
        assert r is None
        return
    assert r is not None and math.isclose(r.score, expected, rel_tol=1e-9)
    assert r.path[0] == "t0" and r.path[-1] == "t1" and len(set(r.path)) == len(r.path)
    assert r.hops <= max_len
    for (a, b), s in zip(itertools.pairwise(r.path), r.scores, strict=True):
        assert (b, s) in lanes[a][:fanout]


def test_visit_budget_bounds_the_search() -> None:
    # A long chain: with a budget below its length the search gives up rather than walk it.
    lanes = {f"t{i}": [(f"t{i + 1}", 1.0)] for i in range(100)}
    found = best_route(chain_lanes(lanes), "t0", "t50", RouteBounds(max_len=60))
    assert found is not None and found.hops == 50
    bounds = RouteBounds(max_len=60, visit_budget=10)
    assert best_route(chain_lanes(lanes), "t0", "t50", bounds) is None


def test_a_cheap_long_way_does_not_hide_a_short_one_under_the_hop_limit() -> None:
    # a-p-q-x costs nothing but uses 3 hops; from x, d is 2 more: only a-x-e-d fits 4 hops.
    lanes = {
        "a": [("p", 1.0), ("x", 0.2)],
        "p": [("q", 1.0)],
        "q": [("x", 1.0)],
        "x": [("e", 1.0)],
        "e": [("d", 1.0)],
    }
    r = best_route(chain_lanes(lanes), "a", "d", RouteBounds(max_len=4))
    assert r is not None and r.path == ("a", "x", "e", "d") and math.isclose(r.score, 0.2)
    fast = RouteGraph.from_arrays(RouteGraph.arrays(lanes.items(), 16)).best("a", "d", 4)
    assert fast is not None and fast.path == r.path and math.isclose(fast.score, 0.2)


class FakeLanes:
    def __init__(self, lanes: dict[str, list[tuple[str, float]]]) -> None:
        self.lanes = lanes
        self.reads = 0

    def tracks(self) -> list[str]:
        return list(self.lanes)

    def lanes_of(self, track_id: str, limit: int) -> list[tuple[str, float]]:
        self.reads += 1
        return self.lanes[track_id][:limit]


@pytest.mark.process  # a worker process computes the galaxies
async def test_keeper_computes_in_a_worker_and_swaps_whole() -> None:
    from gravityd.core.galaxies import GalaxyParams
    from gravityd.daemon.galaxies import GalaxyKeeper

    lanes = planted(groups=3, size=20, seed=4)
    seen: list[tuple[float, int]] = []
    keeper = GalaxyKeeper(
        GalaxyParams(galaxies_seed=5),
        FakeLanes(lanes),
        on_computed=lambda s, n: seen.append((s, n)),
        clock=lambda: 123.0,
    )
    try:
        assert keeper.current.count == 0 and keeper.due(cursor=7)
        assert await keeper.refresh(cursor=7)
        gal = keeper.current
        expected = compute_galaxies(lanes.items(), seed=5, cursor=7, computed_at=123.0)
        assert gal == expected and gal.count == 3 and seen[0][1] == 3
        assert not await keeper.refresh(cursor=7)  # nothing new folded: nothing to do
        assert not keeper.due(cursor=8)  # the interval has not passed
        fresh = GalaxyKeeper(GalaxyParams(galaxies_seed=5), FakeLanes({}))
        fresh.adopt(gal.to_records())  # what a snapshot carries is served at once
        assert fresh.current == gal
    finally:
        keeper.close()


def test_galaxy_params_refuse_bad_values() -> None:
    from gravityd.core.galaxies import GalaxyParams

    for bad in (
        {"galaxies_resolution": 0},
        {"route_fanout": 0},
        {"galaxies_interval_s": -1},
        {"route_max_len": 0},
        {"galaxies_seed": 1.5},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GalaxyParams(**bad)
