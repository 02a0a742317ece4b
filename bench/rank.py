"""Ranking benchmark: p50/p99 latency of ranking a 500-candidate pool on a ~1M-edge graph,
in-process and over HTTP, beside the bare HTTP round trip of the same body in the same run.

1. Generate a log whose fold gives ~1M edges (default 2.5M events over 8000 tracks, as
   bench/restart.py), fold it in-process and write the snapshot.
2. Request pools (default 100 distinct ones, used in turn): a 10-track session (a walk along the
   graph's lanes; the current track is the walk's end), and 500 candidates: up to 120 lanes of
   the current track, 60 lanes of the newest history tracks, 3 tracks of the history (the
   function must drop them), 5 duplicates, the rest random tracks of the catalogue. 95 % of the
   candidates have an embedding score (uniform in [-0.2, 0.95], like cosine similarities).
3. In-process, each call timed alone (perf_counter_ns), sequential:
   (a) gravityd.gravity.rank_candidates(..., graph=<load_snapshot of that file>), the radio's
       form with a graph it holds (the bench gc.freeze()s it after loading, as the daemon and
       gravity.SnapshotGraph do with theirs);
   (a') the same with graph=None: the newest snapshot of GRAVITYD_SNAPSHOT_DIR (first call, the
       load, timed apart);
   and, to show where the time goes: gravityd.core.ranking.rank_pool (the core alone) and
   gravity.rank_candidates with params= given.
4. Over HTTP: a real `gravityd serve` loaded from that snapshot; wrk POSTs /rank rotating over
   the same bodies, 1 connection (sequential, the radio's case: latency) and 8 connections
   (throughput); the bare aiohttp POST handler of bench/bare_server.py (orjson.loads of the same
   bodies, tiny answer) is the ceiling. The first bodies are also checked: POST /rank gives the
   same order as the in-process function.

   The session index is folded beside the graph (its bytes traced with tracemalloc and printed
   per edge) and travels in the snapshot; every in-process form and the daemon rank with it.

    python -m bench.rank          # full run (about 2 minutes)
    python -m bench.rank --pool 100   # the radio's pool of 100 (issue 20's figure)
    python -m bench.rank --smoke  # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    bare_server,
    gen_events,
    http_get_json,
    post_bodies_script,
    serve,
    tempdir,
    wrk,
)
from gravityd import gravity
from gravityd.core import ranking
from gravityd.core.graph import GravityGraph
from gravityd.core.session_index import SessionIndex
from gravityd.snapshots.files import list_snapshots, load_snapshot, write_snapshot
from gravityd.snapshots.state import train_model

IN_PROCESS_P99_MS = 2.0
HTTP_P99_MS = 5.0


def make_pools(
    gg: GravityGraph, count: int, size: int, history_len: int, seed: int
) -> list[dict[str, Any]]:
    """`count` POST /rank bodies (see the module docstring for their make-up)."""
    rng = random.Random(seed)
    catalogue = gg.tracks()
    with_lanes = [u for u in catalogue if gg.out_edges(u)]
    bodies = []
    while len(bodies) < count:
        # A session: a walk along lanes, no track twice; the walk's end is the current track.
        walk = [rng.choice(with_lanes)]
        while len(walk) < history_len + 1:
            nxt = [v for v in gg.out_edges(walk[-1]) or () if v not in walk]
            walk.append(rng.choice(nxt) if nxt else rng.choice(catalogue))
        current, history = walk[-1], walk[:-1]
        pool: dict[str, None] = {}
        lanes = list(gg.out_edges(current) or ())
        pool.update(dict.fromkeys(rng.sample(lanes, min(120, len(lanes)))))
        for h in history[-5:]:
            hl = list(gg.out_edges(h) or ())
            pool.update(dict.fromkeys(rng.sample(hl, min(12, len(hl)))))
        pool.update(dict.fromkeys(rng.sample(history, 3)))
        pool.pop(current, None)
        while len(pool) < size - 5:
            pool[rng.choice(catalogue)] = None
        candidates = list(pool)
        rng.shuffle(candidates)
        candidates += rng.sample(candidates, 5)  # duplicates: the function removes them
        scores = {c: round(rng.uniform(-0.2, 0.95), 6) for c in candidates if rng.random() < 0.95}
        bodies.append(
            {
                "current_track_id": current,
                "candidate_track_ids": candidates,
                "embeddings_scores": scores,
                "session_history": history,
            }
        )
    return bodies


def percentiles(ns: list[int]) -> dict[str, float]:
    ns = sorted(ns)
    n = len(ns)
    return {
        "p50": ns[n // 2] / 1e6,
        "p99": ns[min(n - 1, int(n * 0.99))] / 1e6,
        "max": ns[-1] / 1e6,
        "mean": sum(ns) / n / 1e6,
    }


def time_calls(fn: Any, bodies: list[dict[str, Any]], calls: int, warmup: int) -> dict[str, float]:
    """Call fn(body) `calls` times rotating over the bodies, each timed alone; ms figures."""
    clock = time.perf_counter_ns
    for i in range(warmup):
        fn(bodies[i % len(bodies)])
    out = []
    for i in range(calls):
        b = bodies[i % len(bodies)]
        t = clock()
        fn(b)
        out.append(clock() - t)
    return percentiles(out)


def verdict(p99: float, target: float) -> str:
    return f"(target p99 < {target:g} ms: {'MET' if p99 < target else 'MISSED'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=2_500_000)
    ap.add_argument("--tracks", type=int, default=8000)
    ap.add_argument("--pool", type=int, default=500, help="candidates per request")
    ap.add_argument("--history", type=int, default=10, help="session_history length")
    ap.add_argument("--bodies", type=int, default=100, help="distinct requests, used in turn")
    ap.add_argument("--calls", type=int, default=5000, help="in-process calls per form")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections (throughput)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for CI (< 30 s)")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.tracks, args.bodies, args.calls, args.duration = (
            60_000,
            2000,
            10,
            300,
            2,
        )
    started = time.perf_counter()

    with tempdir() as d:
        work = Path(d)
        snaps = work / "snapshots"
        t = time.perf_counter()
        events = gen_events(args.events, args.tracks, seed=11)
        gg = GravityGraph()
        for i in range(0, len(events), 50_000):
            gg.fold(events[i : i + 50_000])
        fold_s = time.perf_counter() - t
        t = time.perf_counter()
        model = train_model(gg)  # the learned prior, as a daemon's background training has it
        model_s = time.perf_counter() - t
        # the session index beside it, its bytes traced (what it adds to the graph's memory)
        tracemalloc.start()
        index = SessionIndex.for_fold(gg.params)
        for i in range(0, len(events), 50_000):
            index.fold(events[i : i + 50_000])
        index_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del events
        pools = make_pools(gg, args.bodies, args.pool, args.history, seed=5)
        # A snapshot of no log: `gravityd restore` adopts it for the daemon's new log below, as
        # an operator would (a plain start skips a snapshot past its log's end).
        staged = write_snapshot(
            gg, work / "staging", extra=itertools.chain(index.records(), model.records())
        )
        restored = subprocess.run(
            [sys.executable, "-m", "gravityd", "restore", str(staged), "--db",
             str(work / "bench.db"), "--snapshot-dir", str(snaps)],
            capture_output=True, text=True, check=False,
        )
        if restored.returncode != 0:
            raise SystemExit(f"gravityd restore failed: {restored.stderr.strip()}")
        path = list_snapshots(snaps)[0].path  # the newest: the one just restored
        edges, nodes = gg.edge_count, gg.node_count
        del gg
        gc.collect()
        known = sum(len(b["embeddings_scores"]) for b in pools) / sum(
            len(b["candidate_track_ids"]) for b in pools
        )
        wire = [orjson.dumps(b) for b in pools]
        print(
            f"graph: {edges:,} edges, {nodes:,} nodes from {args.events:,} events over"
            f" {args.tracks:,} tracks (generated + folded in {fold_s:.1f} s),"
            f" snapshot {path.stat().st_size / 1e6:.1f} MB"
        )
        print(
            f"session index: {len(index):,} sessions, {len(index.by_track):,} tracks,"
            f" {index_bytes / 1e6:.1f} MB traced = {index_bytes / edges:.0f} bytes per edge"
            f" (per_track {index.per_track}, length {index.length})"
        )
        print(
            f"transition model: {len(model):,} tracks, {model.edges:,} edges, trained in"
            f" {model_s:.1f} s,"
            f" {model.nbytes() / 1e6:.1f} MB of vectors = {model.nbytes() / edges:.1f} bytes per"
            f" edge (dims {model.params.dims})"
        )
        print(
            f"pools: {len(pools)} requests of {len(pools[0]['candidate_track_ids'])} candidate ids"
            f" (5 duplicates, 3 history tracks), {known:.0%} with an embedding score,"
            f" {args.history}-track history; body {sum(map(len, wire)) / len(wire) / 1e3:.1f} kB"
        )

        # ---- in-process
        t = time.perf_counter()
        _, loaded = load_snapshot(path)
        load_s = time.perf_counter() - t
        gc.freeze()
        os.environ["GRAVITYD_SNAPSHOT_DIR"] = str(snaps)
        gravity._sources.clear()
        params = ranking.RankParams()

        def pooled(fn: Any, **kw: Any) -> Any:
            """fn applied to one request body, positional arguments as the radio passes them."""
            return lambda b: fn(
                b["current_track_id"],
                b["candidate_track_ids"],
                b["embeddings_scores"],
                b["session_history"],
                **kw,
            )

        with_graph = pooled(gravity.rank_candidates, graph=loaded, sessions=index, model=model)
        from_folder = pooled(gravity.rank_candidates)
        with_params = pooled(
            gravity.rank_candidates, graph=loaded, params=params, sessions=index, model=model
        )
        core = pooled(ranking.rank_pool, graph=loaded, params=params, sessions=index, model=model)

        t = time.perf_counter()
        from_folder(pools[0])
        first_s = time.perf_counter() - t
        gc.freeze()
        warm = min(200, args.calls)
        inproc = time_calls(with_graph, pools, args.calls, warm)
        folder = time_calls(from_folder, pools, args.calls, warm)
        given = time_calls(with_params, pools, args.calls, warm)
        bare_core = time_calls(core, pools, args.calls, warm)
        answers = [with_graph(b) for b in pools[:5]]
        moved = sum(1 for b in pools for r in with_graph(b) if r["gravity_score"] != 0.0) / len(
            pools
        )

        print(
            f"in-process      gravity.rank_candidates(graph=loaded)  p50 {inproc['p50']:.3f} ms"
            f"  p99 {inproc['p99']:.3f} ms  max {inproc['max']:.2f} ms"
            f"  {verdict(inproc['p99'], IN_PROCESS_P99_MS)}"
        )
        print(
            f"                gravity.rank_candidates(graph=None)    p50 {folder['p50']:.3f} ms"
            f"  p99 {folder['p99']:.3f} ms  max {folder['max']:.2f} ms"
            f"  {verdict(folder['p99'], IN_PROCESS_P99_MS)}"
            f"  (first call loads the snapshot: {first_s:.2f} s; load_snapshot {load_s:.2f} s)"
        )
        print(
            f"  where it goes gravity(graph=loaded, params=given)    p50 {given['p50']:.3f} ms"
            f"  p99 {given['p99']:.3f} ms  | ranking.rank_pool core  p50"
            f" {bare_core['p50']:.3f} ms  p99 {bare_core['p99']:.3f} ms"
            f"  ({args.calls:,} sequential calls per form; ~{moved:.0f} candidates per pool moved"
            f" by the graph)"
        )
        # ---- over HTTP
        rank_lua = post_bodies_script(wire, "/rank")
        env = {
            "GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "false",
            "GRAVITYD_SNAPSHOT_INTERVAL_S": "86400",
        }
        with serve(work / "bench.db", snaps, env=env) as daemon:
            status = http_get_json(daemon.url + "/readyz")
            if status["edges"] != edges:
                raise SystemExit(
                    f"gravityd serve holds {status['edges']:,} edges, not the snapshot's"
                    f" {edges:,}: it did not load {path.name} (package changed mid-run?)"
                )
            same = 0
            resp_bytes = 0
            for b, mine in zip(wire, answers, strict=False):
                req = urllib.request.Request(
                    daemon.url + "/rank",
                    data=b,
                    method="POST",
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=30) as r:
                    raw = r.read()
                resp_bytes = len(raw)
                theirs = json.loads(raw)["ranked"]
                same += [x["track_id"] for x in theirs] == [x["track_id"] for x in mine]
            seq = wrk(daemon.url, duration=args.duration, connections=1, script=rank_lua)
            par = wrk(
                daemon.url, duration=args.duration, connections=args.connections, script=rank_lua
            )
        bare_lua = post_bodies_script(wire, "/event")
        with bare_server() as url:
            bseq = wrk(url, duration=args.duration, connections=1, script=bare_lua)
            bpar = wrk(url, duration=args.duration, connections=args.connections, script=bare_lua)

    print(
        f"HTTP POST /rank 1 connection: {seq['rps']:>7,.0f} req/s  p50 {seq['p50']:.2f} ms"
        f"  p99 {seq['p99']:.2f} ms  non-2xx {seq.get('non2xx', 0):.0f}"
        f"  | bare aiohttp POST, same bodies: {bseq['rps']:>7,.0f} req/s  p50 {bseq['p50']:.2f} ms"
        f"  p99 {bseq['p99']:.2f} ms  | ratio {seq['rps'] / bseq['rps']:.2f}"
        f"  {verdict(seq['p99'], HTTP_P99_MS)}"
    )
    print(
        f"HTTP POST /rank {args.connections} connections: {par['rps']:>7,.0f} req/s"
        f"  p50 {par['p50']:.2f} ms  p99 {par['p99']:.2f} ms  non-2xx {par.get('non2xx', 0):.0f}"
        f"  | bare aiohttp POST: {bpar['rps']:>7,.0f} req/s  p50 {bpar['p50']:.2f} ms"
        f"  p99 {bpar['p99']:.2f} ms  | ratio {par['rps'] / bpar['rps']:.2f}"
    )
    print(
        f"POST /rank answers {resp_bytes / 1e3:.0f} kB ({len(answers[-1])} ranked, no limit;"
        f" the bare handler answers a few bytes); same order as in-process on"
        f" {same}/{len(answers)} bodies; wrk -t1 -d{args.duration}s;"
        f" total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
