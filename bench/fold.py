"""Fold benchmark: the fold beside raw networkx and a plain dict, memory per edge, and the
latency of GET neighbors while ingest and the daemon's fold run at full speed.

1. Generate a log (default 2M events over 100k tracks, realistic interleaved radio sessions) and
   fold it in-process with GravityGraph.fold in batches of 2000: events/s.
2. Ceilings in the same run: get_edge_data/add_edge weight updates on a networkx DiGraph with the
   same edges, and the same updates on a plain dict keyed by (src, dst).
3. Memory per edge: RSS growth during the fold / edges (graph + session state), beside the RSS
   growth of a plain networkx DiGraph of the same edges with one attribute.
4. The folded graph is written as a snapshot; a real `gravityd serve` loads it. wrk measures
   GET /tracks/{id}/gravity_neighbors (rotating over 1000 tracks that have lanes) idle, then
   while a second wrk POSTs /events batches (fresh session ids per request) as fast as the daemon
   takes them, so the daemon's fold runs flat out too; the bare aiohttp GET handler
   (bench/bare_server.py) is the ceiling.

    python -m bench.fold          # full run (about 2 minutes)
    python -m bench.fold --smoke  # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import gc
import random
import threading
import time
from pathlib import Path

import networkx as nx
import orjson

from bench.common import (
    bare_server,
    gen_events,
    get_script,
    http_get_json,
    post_rotating_script,
    rss_bytes,
    serve,
    tempdir,
    wrk,
)
from gravityd.core.events import FoldEvent
from gravityd.core.graph import GravityGraph
from gravityd.snapshots.files import write_snapshot

BATCH = 2000


class _CountingGraph(GravityGraph):
    """Counts credit calls and the steps each one reaches (an upper bound on edge updates)."""

    credits = 0
    reached = 0

    def _credit(self, steps: list[str], flags: list[int], j: int, v: float, t: float) -> None:
        self.credits += 1
        self.reached += min(j, len(self._disc))
        super()._credit(steps, flags, j, v, t)


def fold_rate(events: list[FoldEvent]) -> tuple[GravityGraph, float, int, list[float]]:
    """Fold in batches of BATCH; return the graph, events/s, RSS growth in bytes, and each
    batch's seconds (in the daemon a batch runs on the event loop: reads wait behind it)."""
    gc.collect()
    rss0 = rss_bytes()
    gg = GravityGraph()
    times = []
    clock = time.perf_counter
    started = clock()
    for i in range(0, len(events), BATCH):
        t = clock()
        gg.fold(events[i : i + BATCH])
        times.append(clock() - t)
    elapsed = clock() - started
    return gg, len(events) / elapsed, rss_bytes() - rss0, times


def updates_per_event(events: list[FoldEvent]) -> float:
    """Edge updates per event on a sample: one traversal per move plus the credited steps."""
    gg = _CountingGraph()
    for i in range(0, len(events), BATCH):
        gg.fold(events[i : i + BATCH])
    moves = sum(1 for e in events if e.event_type == "play_start")  # ~ one traversal each
    return (gg.reached + moves) / len(events)


def ceilings(gg: GravityGraph, updates: int, seed: int) -> tuple[float, float, int]:
    """networkx get_edge_data/add_edge updates/s and plain dict updates/s on the same edges,
    and the RSS growth of building the networkx DiGraph."""
    edges = [(u, v, w) for u, v, w, *_ in gg.to_edge_list()]
    rng = random.Random(seed)
    pairs = [edges[rng.randrange(len(edges))][:2] for _ in range(updates)]
    gc.collect()
    rss0 = rss_bytes()
    g = nx.DiGraph()
    g.add_weighted_edges_from(edges, weight="w")
    nx_rss = rss_bytes() - rss0
    started = time.perf_counter()
    for u, v in pairs:
        d = g.get_edge_data(u, v)
        g.add_edge(u, v, w=(d["w"] if d is not None else 0.0) + 1.0)
    nx_rate = updates / (time.perf_counter() - started)
    del g
    plain = {(u, v): w for u, v, w in edges}
    started = time.perf_counter()
    for k in pairs:
        plain[k] = plain.get(k, 0.0) + 1.0
    dict_rate = updates / (time.perf_counter() - started)
    return nx_rate, dict_rate, nx_rss


def ingest_bodies(count: int, size: int, tracks: int) -> list[bytes]:
    """POST /events bodies from a generated log; '@@' in session ids is replaced per request."""
    events = gen_events(count * size, tracks, seed=7, session_prefix="live-@@")
    bodies = []
    for i in range(count):
        batch = []
        for e in events[i * size : (i + 1) * size]:
            obj: dict = {
                "session_id": e.session_id,
                "track_id": e.track_id,
                "event_type": e.event_type,
                "context": "radio",
            }
            if e.elapsed_ms is not None:
                obj["meta"] = {"elapsed_ms": e.elapsed_ms}
            batch.append(obj)
        bodies.append(orjson.dumps(batch))
    return bodies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk latency run")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections for GET")
    ap.add_argument("--ingest-connections", type=int, default=4)
    ap.add_argument("--ingest-batch", type=int, default=1000, help="events per POST /events")
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    ap.add_argument(
        "--fold-batch-events",
        type=int,
        default=None,
        help="the daemon's fold_batch_events (GRAVITYD_FOLD_BATCH_EVENTS; default: config's)",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for CI (< 20 s)")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.tracks, args.duration, args.ingest_batch = 40_000, 5_000, 2, 200
    updates = min(1_000_000, max(50_000, args.events // 2))

    started = time.perf_counter()
    events = gen_events(args.events, args.tracks, seed=1)
    gen_s = time.perf_counter() - started
    kinds = {k: 0 for k in ("radio_next", "play_start", "play_10s", "like", "skip")}
    for e in events:
        kinds[e.event_type] += 1
    sessions = len({e.session_id for e in events})
    print(
        f"log: {len(events):,} events, {args.tracks:,} tracks, {sessions:,} sessions"
        f" (generated in {gen_s:.1f} s): "
        + ", ".join(f"{k} {v / len(events):.0%}" for k, v in kinds.items())
    )

    per_event = updates_per_event(events[: min(len(events), 200_000)])
    gg, rate, fold_rss, batch_s = fold_rate(events)
    batch_s.sort()
    del events
    nx_rate, dict_rate, nx_rss = ceilings(gg, updates, seed=3)
    edges = gg.edge_count
    print(
        f"fold            {rate:>11,.0f} events/s (batches of {BATCH})"
        f"  | networkx get_edge_data/add_edge {nx_rate:>9,.0f} updates/s"
        f"  | plain dict {dict_rate:>10,.0f} updates/s"
    )
    print(
        f"                ratio fold/networkx {rate / nx_rate:.2f},"
        f" fold/dict {rate / dict_rate:.2f}"
        f"; ~{per_event:.1f} edge updates per event (upper bound) ="
        f" {rate * per_event:,.0f} edge updates/s (x{rate * per_event / nx_rate:.2f} networkx)"
        f"  (target >= 250,000 events/s: {'MET' if rate >= 250_000 else 'MISSED'})"
    )
    print(
        f"fold batch      {BATCH} events hold the thread p50"
        f" {batch_s[len(batch_s) // 2] * 1e3:.1f} ms, p99"
        f" {batch_s[int(len(batch_s) * 0.99)] * 1e3:.1f} ms, max {batch_s[-1] * 1e3:.1f} ms"
        " (in the daemon: the event loop)"
    )
    print(
        f"graph           {gg.node_count:,} nodes, {edges:,} edges, {gg.session_count:,} open"
        f" sessions; memory {fold_rss / edges:.0f} B/edge (RSS growth during the fold)"
        f"  | plain networkx DiGraph, 1 attribute: {nx_rss / edges:.0f} B/edge"
    )

    rng = random.Random(5)
    with_lanes = [u for u in gg.tracks() if gg.out_edges(u)]
    ids = rng.sample(with_lanes, min(1000, len(with_lanes)))
    paths = [f"/tracks/{t}/gravity_neighbors" for t in ids]
    get_lua = get_script(paths)
    bodies = ingest_bodies(20 if not args.smoke else 5, args.ingest_batch, args.tracks)
    post_lua = post_rotating_script(bodies)

    with tempdir() as d:
        work = Path(d)
        t = time.perf_counter()
        snap = write_snapshot(gg, work / "snapshots")
        snap_s = time.perf_counter() - t
        snap_mb = snap.stat().st_size / 1e6
        del gg, with_lanes
        gc.collect()

        with bare_server() as url:
            bare = wrk(url, duration=args.duration, connections=args.connections, script=get_lua)

        env = {"GRAVITYD_SYNCHRONOUS": args.synchronous, "GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "false"}
        if args.fold_batch_events:
            env["GRAVITYD_FOLD_BATCH_EVENTS"] = str(args.fold_batch_events)
        with serve(work / "bench.db", work / "snapshots", env=env) as daemon:
            idle = wrk(
                daemon.url, duration=args.duration, connections=args.connections, script=get_lua
            )
            ingest: dict = {}

            def run_ingest() -> None:
                ingest.update(
                    wrk(
                        daemon.url,
                        duration=args.duration + 3,
                        connections=args.ingest_connections,
                        script=post_lua,
                    )
                )

            loader = threading.Thread(target=run_ingest)
            loader.start()
            time.sleep(1.5)
            before = http_get_json(daemon.url + "/readyz")
            t = time.perf_counter()
            loaded = wrk(
                daemon.url, duration=args.duration, connections=args.connections, script=get_lua
            )
            after = http_get_json(daemon.url + "/readyz")
            window = time.perf_counter() - t
            loader.join()

    folded_s = (after["cursor"] - before["cursor"]) / window
    logged_s = (after["last_id"] - before["last_id"]) / window
    ingest_s = ingest.get("rps", 0.0) * args.ingest_batch
    print(
        f"snapshot        {snap_mb:.1f} MB written in {snap_s:.2f} s;"
        f" gravityd serve ready in {daemon.ready_s:.2f} s"
    )
    print(
        f"GET neighbors   idle: {idle['rps']:>8,.0f} req/s  p50 {idle['p50']:.2f} ms"
        f"  p99 {idle['p99']:.2f} ms"
        f"  | bare aiohttp GET {bare['rps']:>8,.0f} req/s  p50 {bare['p50']:.2f} ms"
        f"  p99 {bare['p99']:.2f} ms  | ratio {idle['rps'] / bare['rps']:.2f}"
    )
    print(
        f"GET neighbors   under load: {loaded['rps']:>8,.0f} req/s  p50 {loaded['p50']:.2f} ms"
        f"  p99 {loaded['p99']:.2f} ms  non-2xx {loaded.get('non2xx', 0):.0f}"
        f"  (target p99 < 5 ms: {'MET' if loaded['p99'] < 5 else 'MISSED'})"
    )
    print(
        f"load            POST /events {ingest_s:>9,.0f} events/s accepted by wrk"
        f" ({args.ingest_batch}/request, {args.ingest_connections} connections,"
        f" non-2xx {ingest.get('non2xx', 0):.0f}); during the GET run the log grew"
        f" {logged_s:,.0f} events/s and the daemon folded {folded_s:,.0f} events/s;"
        f" fold lag at the end {after['last_id'] - after['cursor']:,} events"
    )
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s for GET; synchronous={args.synchronous};"
        f" daemon fold_batch_events={args.fold_batch_events or 'default'};"
        f" total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
