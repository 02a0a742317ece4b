"""The kept lanes in-process: what a refresh costs, what the collector costs, what memory costs.

Folds the replicas benchmark's graph (600k generated events over 3,200 tracks, locality 0.9),
then prints, each beside what it is measured against:
- computing every track's lanes (start-up) and one track's refresh, mean over all tracks;
- a read from kept lanes against a computation from the graph (what a read cost before);
- a full garbage collection over the loaded graph, before and after gc.freeze();
- bytes per edge of the graph and sessions, and of the kept lanes (tracemalloc);
- the refresh's steady state under shuffle and Zipf-hot writes (bench/loads.py's shapes): the
  CPU it takes to bring every lane up to date after each 250 ms of writes at 20k events/s
  (5,000 events folded in slices of 100), and how many computations that is. The lag bound
  (250 ms at a share of 0.5) holds when that CPU is under 125 ms.

    python -m bench.lanes            # full size (about a minute)
    python -m bench.lanes --smoke    # small graph: checks it runs
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from bench.common import gen_events
from bench.loads import zipf_weights
from gravityd.core.events import FoldEvent
from gravityd.core.graph import GravityGraph
from gravityd.core.lanes import LaneIndex


def write_events(load: str, tracks: list[str], n: int, first_id: int, t: float, seed: int) -> list:
    """`n` events shaped like bench/loads.py's bodies: sessions of 10 kept plays over uniform
    (shuffle) or Zipf-popular (hot) tracks."""
    rng = random.Random(seed)
    weights = zipf_weights(len(tracks)) if load == "hot" else None
    out: list[FoldEvent] = []
    s = 0
    while len(out) < n:
        sid = f"{load}-{seed}-{s}"
        s += 1
        for track in rng.choices(tracks, weights, k=10):
            for kind in ("play_start", "play_10s"):
                out.append(FoldEvent(first_id + len(out), sid, track, kind, t, None))
            t += 0.0001
    return out


def steady_state(gg: GravityGraph, index: LaneIndex, load: str, windows: int) -> None:
    tracks = sorted(gg.tracks())
    gg.take_touched()
    cpu, computations, touched_n = [], [], []
    for w in range(windows):
        events = write_events(load, tracks, 5000, gg.cursor + 1, gg.clock, seed=w)
        touched: set[str] = set()
        for i in range(0, len(events), 100):
            reflected = gg.cursor
            gg.fold(events[i : i + 100])
            got = gg.take_touched()
            touched |= got
            index.mark(got, reflected)
        before = index.refreshed
        started = time.process_time()
        while index.refresh_next():
            pass
        cpu.append(time.process_time() - started)
        computations.append(index.refreshed - before)
        touched_n.append(len(touched))
    print(
        f"{load} writes, per 250 ms of writes: {min(touched_n):,}-{max(touched_n):,} tracks"
        f" touched, {min(computations):,}-{max(computations):,} computations,"
        f" refresh CPU {min(cpu) * 1000:,.0f}-{max(cpu) * 1000:,.0f} ms (ceiling for the"
        " bound: 125 ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--tracks", type=int, default=3200)
    ap.add_argument("--windows", type=int, default=4, help="250 ms windows of writes per load")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.tracks, args.windows = 20_000, 400, 1
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
        while index.refresh_next():  # its fan, then its record (the graph did not change)
            pass
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
    for load in ("shuffle", "hot"):
        steady_state(gg, index, load, args.windows)


if __name__ == "__main__":
    main()
