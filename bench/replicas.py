"""Replicas benchmark: one writer and replicas over one SQLite log, every figure beside its ceiling.

A generated log shaped like the yes_small graph (about 3,200 tracks with ~75 lanes each) is
written straight into a SQLite file; then, in one run:

(a) GET gravity_neighbors req/s of one replica process (wrk, rotating over tracks) against a
    bare aiohttp GET that serialises the same JSON answer per request;
(b) neighbors p99 on the replica at ~1k req/s (hey, rate-limited, several tracks) while the writer
    takes >= 15k events/s (hey POSTing 1,000-event batches), with the read-your-writes lag:
    a write to the writer, then a min_cursor read on the replica, timed end to end;
(c) POST /event of the writer role against a bare POST handler (wrk), and POST /events events/s
    against raw executemany into the same schema (bench/ingest.py's ceiling);
(d) neighbors req/s with --workers 1 and --workers 2 on one port;
and the replica's memory per edge (RSS loaded minus RSS of an empty replica, over edges).

    python -m bench.replicas          # full run (about 3 minutes)
    python -m bench.replicas --smoke  # a few seconds each, small graph: checks it runs
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import orjson

from bench.common import (
    bare_server,
    gen_events,
    get_script,
    http_get_json,
    post_script,
    rss_bytes,
    serve,
    tempdir,
    track_ids,
    write_log,
    wrk,
)
from bench.ingest import EVENT, batch_body, raw_sqlite
from bench.loads import LOADS, Paced, paced, paced_thread, write_bodies, zipf_weights

WRITE_RATE = 20  # 1,000-event batches per second: 20k events/s asked of the writer


def hey(
    url: str, *, seconds: float, workers: int, qps: float, body: Path | None = None
) -> list[float]:
    """Rate-limited load with hey; every request's latency in ms (hey's CSV)."""
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install hey")
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(qps), "-o", "csv"]
    if body is not None:
        cmd += ["-m", "POST", "-D", str(body), "-T", "application/json"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    lat = []
    for line in out.splitlines()[1:]:
        parts = line.split(",")
        if len(parts) > 6 and parts[6].strip() in ("200", "202"):
            lat.append(float(parts[0]) * 1000)
    return lat


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def busy_tracks(url: str, events: list, k: int) -> list[str]:
    """Tracks that have lanes (the map UI asks for those), most frequent first."""
    counts: dict[str, int] = {}
    for e in events:
        counts[e.track_id] = counts.get(e.track_id, 0) + 1
    ranked = sorted(counts, key=lambda t: -counts[t])
    out = []
    for t in ranked:
        if http_get_json(f"{url}/tracks/{t}/gravity_neighbors?limit=1"):
            out.append(t)
        if len(out) >= k:
            break
    return out


def rw_lag(writer: str, replica: str, stop: threading.Event, lags: list[float]) -> None:
    """Read your writes: POST one event, then time a min_cursor read of the replica from the
    202 on: the replica's fold lag for that event, plus one HTTP round trip."""
    i = 0
    while not stop.is_set():
        i += 1
        body = orjson.dumps({**EVENT, "session_id": f"lag-{i}"})
        req = urllib.request.Request(
            writer + "/event", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            pos = json.loads(r.read())["id"]
        started = time.perf_counter()
        with urllib.request.urlopen(f"{replica}/stats?min_cursor={pos}", timeout=10) as r:
            r.read()
        lags.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)


def rank_bodies(catalogue: list[str], count: int = 50) -> list[bytes]:
    """POST /rank bodies: 100 candidates, a history of 10."""
    import random

    rng = random.Random(11)
    return [
        orjson.dumps(
            {
                "current_track_id": rng.choice(catalogue),
                "candidate_track_ids": rng.sample(catalogue, min(100, len(catalogue))),
                "session_history": rng.sample(catalogue, 10),
                "embeddings_scores": {},
            }
        )
        for _ in range(count)
    ]


def _writes(url: str, load: str, catalogue: list[str], seconds: int, out: list[Paced]) -> None:
    """1,000-event bodies at WRITE_RATE per second, paced (fresh session ids per request)."""
    out.append(
        paced(
            url, ["/events"], rate=WRITE_RATE, seconds=seconds, bodies=write_bodies(load, catalogue)
        )
    )


def three_loads(
    writer: str, replica: str, catalogue: list[str], seconds: int, rate: float
) -> list[tuple[str, str, str, str]]:
    """Reads at `rate` and /rank on the replica while the writer takes each write load; the
    bare handler at the same rate on the same loop is the ceiling."""
    rows = []
    paths = [f"/tracks/{t}/gravity_neighbors" for t in catalogue]
    with tempdir() as d:
        answer = Path(d) / "answer.json"
        answer.write_bytes(orjson.dumps(http_get_json(replica + paths[0])))
        with bare_server(answer) as bare_url:
            bare = paced(bare_url, paths, rate=rate, seconds=seconds)
    rows.append(
        (
            "(e) bare aiohttp, paced",
            f"p99 {bare.pct(99):.2f} ms, p50 {bare.pct(50):.2f} ms",
            f"{bare.rate:,.0f} of {rate:,.0f} req/s served",
            "the ceiling of the rows below",
        )
    )
    ranks = rank_bodies(catalogue)
    for load in LOADS:
        weights = zipf_weights(len(paths)) if load == "hot" else None
        reads: list[Paced] = []
        rank: list[Paced] = []
        written: list[Paced] = []
        before = http_get_json(writer + "/readyz")["last_id"]
        started = time.perf_counter()
        threads = [
            threading.Thread(target=_writes, args=(writer, load, catalogue, seconds, written)),
            paced_thread(reads, replica, paths, rate=rate, seconds=seconds, weights=weights),
            paced_thread(rank, replica, ["/rank"], rate=50, seconds=seconds, bodies=ranks),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
        ingest = (http_get_json(writer + "/readyz")["last_id"] - before) / took
        lag = http_get_json(replica + "/stats")
        r, k = reads[0], rank[0]
        rows.append(
            (
                f"    replica, {load} writes",
                f"p99 {r.pct(99):.2f} ms (p50 {r.pct(50):.2f}), {r.rate:,.0f} req/s served,"
                f" {r.errors} errors",
                f"writer took {ingest:,.0f} events/s; /rank p99 {k.pct(99):.2f} ms",
                f"lanes lag now {lag.get('lanes_lag_s', 0):.3f} s;"
                " target p99 < 5 ms, >= 900 req/s, >= 15k events/s, /rank p99 < 10 ms",
            )
        )
    return rows


def role_all(url: str, catalogue: list[str], seconds: int, rate: float) -> list[tuple]:
    """--role all under shuffle writes to itself and paced reads."""
    paths = [f"/tracks/{t}/gravity_neighbors" for t in catalogue]
    reads: list[Paced] = []
    written: list[Paced] = []
    before = http_get_json(url + "/readyz")["last_id"]
    started = time.perf_counter()
    threads = [
        threading.Thread(target=_writes, args=(url, "shuffle", catalogue, seconds, written)),
        paced_thread(reads, url, paths, rate=rate, seconds=seconds),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    ingest = (http_get_json(url + "/readyz")["last_id"] - before) / took
    r = reads[0]
    return [
        (
            "(g) --role all, shuffle writes",
            f"p99 {r.pct(99):.2f} ms (p50 {r.pct(50):.2f}), {r.rate:,.0f} req/s served",
            f"took {ingest:,.0f} events/s",
            "target p99 < 10 ms, >= 900 req/s, >= 9k events/s",
        )
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="small graph, short runs")
    ap.add_argument("--events", type=int, default=600_000, help="events in the generated log")
    ap.add_argument("--tracks", type=int, default=3200)
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--read-rate", type=float, default=1000.0, help="paced reads per second")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.tracks, args.duration, args.read_rate = 20_000, 400, 2, 200.0
    quiet = {"GRAVITYD_LOG_LEVEL": "WARNING", "GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "0"}
    rows: list[tuple[str, str, str, str]] = []

    with tempdir() as d:
        work = Path(d)
        db, snaps = work / "log.db", work / "snapshots"
        events = gen_events(args.events, args.tracks, fanout=100, locality=0.9)
        write_log(db, events)
        print(f"log: {len(events):,} events over {args.tracks:,} tracks written to {db}")
        with (
            serve(db, snaps, "--role", "writer", env=quiet) as writer,
            serve(db, snaps, "--role", "replica", env=quiet) as replica,
        ):
            st = http_get_json(replica.url + "/readyz")
            edges = st["edges"]
            print(
                f"replica ready in {replica.ready_s:.2f} s: {st['nodes']:,} tracks,"
                f" {edges:,} edges ({edges / max(1, st['nodes']):.0f} per track)"
            )
            tracks = busy_tracks(replica.url, events, 200)
            paths = [f"/tracks/{t}/gravity_neighbors" for t in tracks]
            sample = http_get_json(replica.url + paths[0])
            answer = work / "answer.json"
            answer.write_bytes(orjson.dumps(sample))

            # (a) one replica process against a bare handler serialising the same JSON
            ours = wrk(
                replica.url + paths[0],
                duration=args.duration,
                connections=args.connections,
                script=get_script(paths),
            )
            with bare_server(answer) as bare_url:
                bare = wrk(
                    bare_url + paths[0], duration=args.duration, connections=args.connections
                )
            rows.append(
                (
                    "(a) GET neighbors, one replica",
                    f"{ours['rps']:,.0f} req/s (p99 {ours['p99']:.2f} ms)",
                    f"bare aiohttp {bare['rps']:,.0f} req/s",
                    f"{ours['rps'] / bare['rps']:.2f} (target >= 0.5)",
                )
            )

            # (b) reads at ~1k req/s on the replica while the writer takes >= 15k events/s
            body = work / "batch.json"
            body.write_bytes(batch_body(1000))
            read_lat: list[list[float]] = [[] for _ in range(4)]
            write_lat: list[float] = []
            lags: list[float] = []
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=lambda i=i: read_lat[i].extend(
                        hey(
                            replica.url + paths[i],
                            seconds=args.duration,
                            workers=5,
                            qps=50,
                        )
                    )
                )
                for i in range(4)
            ]
            threads.append(
                threading.Thread(
                    target=lambda: write_lat.extend(
                        hey(
                            writer.url + "/events",
                            seconds=args.duration,
                            workers=2,
                            qps=8,
                            body=body,
                        )
                    )
                )
            )
            lagger = threading.Thread(target=rw_lag, args=(writer.url, replica.url, stop, lags))
            before = http_get_json(writer.url + "/readyz")["last_id"]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            lagger.start()
            for t in threads:
                t.join()
            stop.set()
            lagger.join()
            took = time.perf_counter() - t0
            after = http_get_json(writer.url + "/readyz")["last_id"]
            reads = [x for part in read_lat for x in part]
            ingest = (after - before) / took
            rows.append(
                (
                    "(b) neighbors p99 under ingest",
                    f"p99 {pct(reads, 99):.2f} ms, p50 {pct(reads, 50):.2f} ms"
                    f" at {len(reads) / took:,.0f} req/s",
                    f"writer took {ingest:,.0f} events/s",
                    "target p99 < 5 ms at ~1k req/s, >= 15k events/s",
                )
            )
            rows.append(
                (
                    "    read-your-writes lag",
                    f"p50 {pct(lags, 50):.1f} ms, p99 {pct(lags, 99):.1f} ms ({len(lags)} samples)",
                    "from the 202 to the replica's answer to GET /stats?min_cursor=id",
                    "target fold lag < 50 ms",
                )
            )
            rss_loaded = rss_bytes(replica.proc.pid)
            with urllib.request.urlopen(replica.url + "/metrics", timeout=10) as r:
                found = re.search(rb"^gravityd_graph_sessions (\S+)$", r.read(), re.M)
            open_sessions = int(float(found.group(1))) if found else 0
            catalogue = track_ids(args.tracks)
            rows.extend(
                three_loads(writer.url, replica.url, catalogue, args.duration, args.read_rate)
            )

        # memory per edge: the same replica process on an empty log
        empty = work / "empty"
        empty.mkdir()
        with serve(empty / "log.db", empty / "snaps", env=quiet) as bare_d:
            rss_empty = rss_bytes(bare_d.proc.pid)
        per_edge = (rss_loaded - rss_empty) / max(1, edges)
        rows.append(
            (
                "    replica memory",
                f"{per_edge:,.0f} bytes/edge (target <= 300)",
                f"RSS {rss_loaded / 2**20:,.0f} MiB loaded, {rss_empty / 2**20:,.0f} MiB empty",
                f"{edges:,} edges, {open_sessions:,} open sessions",
            )
        )

        # the first seconds of a fresh replica, from /readyz on
        with serve(db, snaps, "--role", "replica", env=quiet) as fresh:
            first = paced(
                fresh.url,
                [f"/tracks/{t}/gravity_neighbors" for t in catalogue],
                rate=args.read_rate,
                seconds=5,
            )
        rows.append(
            (
                "(f) first 5 s after /readyz",
                f"p99 {first.pct(99):.2f} ms, p50 {first.pct(50):.2f} ms",
                f"{first.rate:,.0f} of {args.read_rate:,.0f} req/s served",
                "target p99 < 5 ms",
            )
        )

        # --role all, taking shuffle writes and serving reads in one process
        with serve(db, snaps, "--role", "all", env=quiet) as both:
            rows.extend(role_all(both.url, catalogue, args.duration, args.read_rate))

        # (d) one port, one and two worker processes
        rates = {}
        for n in (1, 2):
            with serve(db, snaps, "--role", "replica", "--workers", str(n), env=quiet) as rep:
                time.sleep(0.5 if n > 1 else 0)  # the second worker joins the port when ready
                for _ in range(50):  # both workers listening: wait until two pids answer
                    pids = {http_get_json(rep.url + "/readyz")["pid"] for _ in range(10)}
                    if len(pids) >= n:
                        break
                    time.sleep(0.2)
                rates[n] = wrk(
                    rep.url + paths[0],
                    duration=args.duration,
                    connections=args.connections,
                    threads=2 if n > 1 else 1,
                    script=get_script(paths),
                )["rps"]
        rows.append(
            (
                "(d) GET neighbors, one port",
                f"1 worker {rates[1]:,.0f} req/s, 2 workers {rates[2]:,.0f} req/s",
                f"x{rates[2] / rates[1]:.2f}",
                "2 cores, shared with wrk",
            )
        )

    # (c) the writer role's ingest against its ceilings
    single = post_script(orjson.dumps(EVENT))
    with bare_server() as url:
        bare_post = wrk(url + "/event", duration=args.duration, connections=32, script=single)
    with tempdir() as d, serve(Path(d) / "w.db", Path(d) / "s", "--role", "writer", env=quiet) as w:
        ours_post = wrk(w.url + "/event", duration=args.duration, connections=32, script=single)
        many = wrk(
            w.url + "/events",
            duration=args.duration,
            connections=4,
            script=post_script(batch_body(1000)),
        )
    with tempdir() as d:
        raw = raw_sqlite(Path(d), 200_000, 1000, "FULL")
    rows.append(
        (
            "(c) POST /event, writer role",
            f"{ours_post['rps']:,.0f} req/s (p99 {ours_post['p99']:.2f} ms)",
            f"bare aiohttp {bare_post['rps']:,.0f} req/s",
            f"{ours_post['rps'] / bare_post['rps']:.2f} (target >= 0.7)",
        )
    )
    events_s = many["rps"] * 1000
    rows.append(
        (
            "    POST /events, writer role",
            f"{events_s:,.0f} events/s (1,000 per request)",
            f"raw executemany {raw:,.0f} rows/s",
            f"{events_s / raw:.2f} (target >= 0.8)",
        )
    )
    print()
    for r in rows:
        print(" | ".join(r))
    print(f"\nwrk -c{args.connections} -d{args.duration}s; hey -z{args.duration}s; {time.ctime()}")


if __name__ == "__main__":
    main()
