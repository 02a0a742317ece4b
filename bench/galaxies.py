"""Galaxies and routes on big graphs: what one computation costs, and how fast a route answers.

    python -m bench.galaxies [--yes DIR] [--synthetic-edges N] [--routes N] [--smoke]

Two graphs: the Yes.com playlists of DIR folded by the real fold (the out-lanes that
`gravity_neighbors` serves, up to 100 per track), and a synthetic lanes graph of N edges
(clusters of 200 tracks, 20 lanes per track, one in ten leaving the cluster). For each it prints
the galaxies' wall time and peak Python memory (tracemalloc, a separate run so that tracing
does not inflate the time), how many galaxies, and route p50/p99 over random pairs with the
default bounds. Read latency while galaxies compute is a property of the daemon (the work runs
in another process): `python -m bench.replicas` measures it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from gravityd.core.galaxies import compute_galaxies
from gravityd.core.routes import RouteBounds, RouteGraph, best_route

Lanes = dict[str, list[tuple[str, float]]]


def yes_lanes(folder: Path, limit: int = 100) -> Lanes:
    """Fold the playlists with the default model and read every track's out-lanes."""
    from gravityd.core.graph import FoldParams
    from gravityd.lab.evaluate import load_yes, replay, track_uuid

    ds = load_yes(folder)
    uuids = [track_uuid(i) for i in range(ds.n_songs)]
    graph, _, _ = replay([songs for _, songs in ds.playlists], uuids, FoldParams())
    out: Lanes = {}
    for t in graph.tracks():
        lanes = graph.neighbors(t, limit=limit)
        if lanes:
            out[t] = [(lane["track_id"], lane["normalized_score"]) for lane in lanes]
    return out


def synthetic_lanes(edges: int, per_track: int = 20, cluster: int = 200, seed: int = 1) -> Lanes:
    rnd = random.Random(seed)
    n = max(edges // per_track, cluster)
    out: Lanes = {}
    for i in range(n):
        base = i - i % cluster
        picks: set[int] = set()
        while len(picks) < per_track:
            j = rnd.randrange(n) if rnd.random() < 0.1 else base + rnd.randrange(cluster)
            if j != i and j < n:
                picks.add(j)
        scored = sorted(((f"t{j}", rnd.random()) for j in picks), key=lambda x: -x[1])
        top = scored[0][1]
        out[f"t{i}"] = [(t, s / top) for t, s in scored]
    return out


def measure(name: str, lanes: Lanes, routes: int, seed: int) -> None:
    n_edges = sum(len(v) for v in lanes.values())
    items = sorted(lanes.items())
    t0 = time.perf_counter()
    gal = compute_galaxies(items, seed=seed)
    took = time.perf_counter() - t0
    tracemalloc.start()
    compute_galaxies(items, seed=seed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracks = sorted(lanes)
    bounds = RouteBounds()
    t0 = time.perf_counter()
    compiled = RouteGraph.from_arrays(RouteGraph.arrays(items, bounds.fanout))
    compile_s = time.perf_counter() - t0
    rnd = random.Random(seed)
    pairs = [(rnd.choice(tracks), rnd.choice(tracks)) for _ in range(routes)]
    searched: list[float] = []
    served: list[float] = []
    found = fast = 0
    for a, b in pairs:
        t1 = time.perf_counter()
        r = best_route(lambda t: lanes.get(t, ()), a, b, bounds)
        searched.append(time.perf_counter() - t1)
        found += r is not None
        t1 = time.perf_counter()  # what GET /route does: the compiled lanes, exact in max_len
        c = compiled.best(a, b, bounds.max_len)
        served.append(time.perf_counter() - t1)
        fast += c is not None
    print(
        f"{name}: {len(lanes):,} tracks, {n_edges:,} lanes | galaxies {gal.count:,} in "
        f"{took:.1f} s, peak {peak / 2**20:.0f} MiB ({peak / max(n_edges, 1):.0f} B/lane)\n"
        f"  route, label search alone: p50 {pct(searched, 50) * 1e3:.2f} ms, "
        f"p99 {pct(searched, 99) * 1e3:.2f} ms, found {found}/{routes}\n"
        f"  route as served (lanes compiled in {compile_s:.2f} s, once per galaxies): "
        f"p50 {pct(served, 50) * 1e3:.2f} ms, p99 {pct(served, 99) * 1e3:.2f} ms, "
        f"found {fast}/{routes}"
    )


def pct(xs: Sequence[float], q: float) -> float:
    if len(xs) < 2:
        return xs[0] if xs else 0.0
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--yes", type=Path, default=None, help="a Yes.com folder (train.txt ...)")
    ap.add_argument("--synthetic-edges", type=int, default=1_000_000)
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = ap.parse_args(argv)
    if args.smoke:
        args.synthetic_edges, args.routes = 20_000, 50
    if args.yes is not None:
        measure(f"yes {args.yes.name}", yes_lanes(args.yes), args.routes, args.seed)
    measure("synthetic", synthetic_lanes(args.synthetic_edges), args.routes, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
