"""The kept lanes in-process: what a refresh costs, what the collector costs, what memory costs.

Folds the replicas benchmark's graph (600k generated events over 3,200 tracks, locality 0.9),
then prints, each beside what it is measured against:
- computing every track's lanes (start-up) and one track's refresh, mean over all tracks;
- a read from kept lanes against a computation from the graph (what a read cost before);
- a full garbage collection over the loaded graph, before and after gc.freeze();
- bytes per edge of the graph and sessions, and of the kept lanes (tracemalloc).

    python -m bench.lanes            # full size (about a minute)
    python -m bench.lanes --smoke    # small graph: checks it runs
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from bench.common import gen_events
from gravityd.core.graph import GravityGraph
from gravityd.core.lanes import LaneIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--tracks", type=int, default=3200)
    args = ap.parse_args()
    if args.smoke:
        args.events, args.tracks = 20_000, 400
    events = gen_events(args.events, args.tracks, fanout=100, locality=0.9)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    gg = GravityGraph()
    gg.fold(events)
    del events
    graph_bytes = tracemalloc.get_traced_memory()[0] - base
    edges = gg.edge_count
    print(f"graph: {gg.node_count:,} tracks, {edges:,} edges, {gg.session_count:,} sessions")
    index = LaneIndex(gg)
    index.mark_all(gg.cursor)
    before = tracemalloc.get_traced_memory()[0]
    index.refresh_all()
    lanes_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    index = LaneIndex(gg)  # timed again without tracemalloc's cost
    index.mark_all(gg.cursor)
    started = time.perf_counter()
    index.refresh_all()
    took = time.perf_counter() - started
    print(
        f"all lanes computed: {took:.2f} s, {took / max(1, gg.node_count) * 1e6:,.0f} us per"
        f" track ({index.refreshed:,} computations for {gg.node_count:,} tracks)"
    )
    tracks = gg.tracks()
    started = time.perf_counter()
    for t in tracks:
        index.mark([t], gg.cursor)
        index.refresh_next()
    one = (time.perf_counter() - started) / len(tracks)
    print(
        f"one track refreshed: {one * 1e6:,.0f} us mean"
        f" (a pass over every track: {one * len(tracks):.2f} s)"
    )
    started = time.perf_counter()
    for t in tracks:
        index.neighbors(t, limit=10)
    kept = (time.perf_counter() - started) / len(tracks)
    started = time.perf_counter()
    for t in tracks:
        gg.neighbors(t, limit=10)
    fresh = (time.perf_counter() - started) / len(tracks)
    print(f"read, limit 10: kept {kept * 1e6:,.1f} us against computed {fresh * 1e6:,.0f} us")
    started = time.perf_counter()
    gc.collect()
    unfrozen = time.perf_counter() - started
    gc.freeze()
    started = time.perf_counter()
    gc.collect()
    frozen = time.perf_counter() - started
    gc.unfreeze()
    print(f"full collection: {unfrozen * 1000:,.1f} ms, after gc.freeze() {frozen * 1000:,.3f} ms")
    print(
        f"memory (tracemalloc): graph and sessions {graph_bytes / edges:,.0f} bytes/edge,"
        f" kept lanes {lanes_bytes / edges:,.0f} bytes/edge"
    )


if __name__ == "__main__":
    main()
