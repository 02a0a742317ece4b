"""Restart benchmark: process start to /readyz from a snapshot plus a small log tail, beside a
full replay of the same log; snapshot write time, size and peak memory; GET neighbors latency
while the daemon writes a snapshot.

1. Generate a log whose fold gives ~1M edges (default 2.5M events over 8000 tracks: a catalogue
   small enough that tracks reach their K-edge bound, so the log is longer than the graph, as
   months of listening are) and write it straight into a SQLite file (connect_sync + _INSERT).
2. `python -m gravityd build` makes the snapshot at the log's end; then a tail (default 10k
   events) is appended after its cursor.
3. (a) `gravityd serve` with that snapshot: seconds from process start to /readyz 200;
   (b) the same start with an empty snapshot folder (full replay): the baseline.
4. In-process: load the snapshot, time write_snapshot, its size, and the peak memory it
   allocates (tracemalloc, a second write) and the RSS growth (first write).
5. On the daemon of (a): wrk GET neighbors idle; one POST /admin/snapshot alone (timed); then
   wrk GET neighbors for about as long as a snapshot takes while a second one is written.

    python -m bench.restart          # full run (about 3 minutes)
    python -m bench.restart --smoke  # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

from bench.common import (
    REPO,
    gen_events,
    get_script,
    http_get_json,
    http_post_json,
    rss_bytes,
    serve,
    tempdir,
    write_log,
    wrk,
)
from gravityd.snapshots.files import list_snapshots, load_snapshot, write_snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # 6M events over 8,000 tracks fold into about 1.07M edges: a log several events per edge
    # long, as a real one is (the ratio to a full replay grows with the log's length).
    ap.add_argument("--events", type=int, default=6_000_000)
    ap.add_argument("--tracks", type=int, default=8000)
    ap.add_argument("--tail", type=int, default=10_000, help="events appended after the snapshot")
    ap.add_argument("--duration", type=int, default=8, help="seconds of the idle wrk run")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections for GET")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for CI (< 20 s)")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.tracks, args.tail, args.duration = 60_000, 2000, 2000, 2
    env = {
        "GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "false",
        "GRAVITYD_SNAPSHOT_INTERVAL_S": "86400",
    }
    started = time.perf_counter()

    with tempdir() as d:
        work = Path(d)
        db, snaps, empty = work / "bench.db", work / "snapshots", work / "no-snapshots"
        t = time.perf_counter()
        events = gen_events(args.events + args.tail, args.tracks, seed=11)
        head, tail = events[: args.events], events[args.events :]
        del events
        gen_s = time.perf_counter() - t
        write_s = write_log(db, head)
        print(
            f"log: {len(head):,} events over {args.tracks:,} tracks + a tail of {len(tail):,}"
            f" (generated in {gen_s:.1f} s, written in {write_s:.1f} s)"
        )
        del head

        t = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "gravityd",
                "build",
                "--db",
                str(db),
                "--snapshot-dir",
                str(snaps),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        build_s = time.perf_counter() - t
        print(f"gravityd build  {build_s:.1f} s wall: {out}")
        write_log(db, tail)
        del tail

        # In-process: load the snapshot, then time and size a write, and its memory.
        snap = list_snapshots(snaps)[0].path
        t = time.perf_counter()
        _, gg = load_snapshot(snap)
        load_s = time.perf_counter() - t
        edges = gg.edge_count
        rng = random.Random(5)
        with_lanes = [u for u in gg.tracks() if gg.out_edges(u)]
        ids = rng.sample(with_lanes, min(1000, len(with_lanes)))
        del with_lanes
        gc.collect()
        rss0 = rss_bytes()
        t = time.perf_counter()
        path = write_snapshot(gg, work / "inproc")
        snap_write_s = time.perf_counter() - t
        rss_growth = rss_bytes() - rss0
        size = path.stat().st_size
        tracemalloc.start()
        write_snapshot(gg, work / "inproc")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"snapshot        {edges:,} edges, {gg.node_count:,} nodes, {gg.session_count:,}"
            f" sessions: write_snapshot {snap_write_s:.2f} s, {size / 1e6:.1f} MB"
            f" ({size / edges:.1f} B/edge); peak allocated during the write"
            f" {peak / 1e6:.1f} MB (tracemalloc), RSS growth {rss_growth / 1e6:.1f} MB;"
            f" load_snapshot {load_s:.2f} s"
        )
        del gg
        gc.collect()
        get_lua = get_script([f"/tracks/{t}/gravity_neighbors" for t in ids])

        with serve(db, snaps, env=env) as daemon:
            from_snap = daemon.ready_s
            status = http_get_json(daemon.url + "/readyz")
            rss = rss_bytes(daemon.proc.pid)
            idle = wrk(
                daemon.url, duration=args.duration, connections=args.connections, script=get_lua
            )
            t = time.perf_counter()
            first = http_post_json(daemon.url + "/admin/snapshot")
            first_s = time.perf_counter() - t
            second: dict = {}

            def fire() -> None:
                time.sleep(0.3)  # let wrk connect first
                t = time.perf_counter()
                second.update(http_post_json(daemon.url + "/admin/snapshot"))
                second["wall"] = time.perf_counter() - t

            shooter = threading.Thread(target=fire)
            shooter.start()
            during = wrk(
                daemon.url,
                duration=max(2, math.ceil(first_s)),
                connections=args.connections,
                script=get_lua,
            )
            shooter.join()
        print(
            f"ready from snapshot + {args.tail:,}-event tail: {from_snap:.2f} s"
            f" (daemon: {status['edges']:,} edges, cursor {status['cursor']:,},"
            f" RSS {rss / 1e6:.0f} MB)"
        )

        with serve(db, empty, env=env) as daemon:
            replay = daemon.ready_s
            replay_status = http_get_json(daemon.url + "/readyz")
    ratio = replay / from_snap
    print(
        f"ready by full replay of {replay_status['cursor']:,} events: {replay:.2f} s"
        f" ({replay_status['edges']:,} edges)  | ratio {ratio:.1f}x faster from the snapshot"
        f"  (targets: < 5 s at 1M edges: {'MET' if from_snap < 5 else 'MISSED'};"
        f" >= 10x: {'MET' if ratio >= 10 else 'MISSED'})"
    )
    print(
        f"POST /admin/snapshot: {first_s:.2f} s alone ({first['bytes'] / 1e6:.1f} MB, track_edges"
        f" refreshed too), {second['wall']:.2f} s under GET load"
    )
    print(
        f"GET neighbors   idle: {idle['rps']:>7,.0f} req/s  p50 {idle['p50']:.2f} ms"
        f"  p99 {idle['p99']:.2f} ms  | while a snapshot is written: {during['rps']:>7,.0f} req/s"
        f"  p50 {during['p50']:.2f} ms  p99 {during['p99']:.2f} ms"
        f"  (wrk -t1 -c{args.connections}, {max(2, math.ceil(first_s))} s covering the snapshot)"
    )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
