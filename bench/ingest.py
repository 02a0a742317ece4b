"""Ingest benchmark: POST /event and POST /events, each beside its ceiling in the same run.

- POST /event req/s against a bare aiohttp handler that only parses the same JSON (wrk).
- POST /events events/s against raw SQLite executemany into the same schema and sync mode.

    python bench/ingest.py                 # full run (about a minute)
    python bench/ingest.py --duration 3    # quicker
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bare_server, gravityd, post_script, tempdir, wrk
from gravityd.log.sqlite import _INSERT, connect_sync, new_event_id

EVENT = {
    "session_id": "bench-session-1",
    "track_id": str(uuid.uuid4()),
    "event_type": "play_10s",
    "context": "radio",
    "meta": {"elapsed_ms": 10000},
}


def batch_body(n: int) -> bytes:
    return orjson.dumps(
        [
            {**EVENT, "session_id": f"s{i % 200}", "track_id": str(uuid.UUID(int=i))}
            for i in range(n)
        ]
    )


def raw_sqlite(workdir: Path, total: int, batch: int, synchronous: str) -> float:
    """The ceiling of /events: executemany + commit of the same rows, no HTTP, no validation."""
    conn = connect_sync(workdir / "raw.db", synchronous)
    now = time.time()
    rows = [
        (
            i,
            new_event_id(),
            f"s{i % 200}",
            str(uuid.UUID(int=i)),
            "play_10s",
            None,
            now,
            now,
            "radio",
            '{"elapsed_ms":10000}',
            10000,
        )
        for i in range(1, total + 1)
    ]
    started = time.perf_counter()
    for i in range(0, total, batch):
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows[i : i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000, help="events per POST /events")
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    args = ap.parse_args()
    env = {"GRAVITYD_SYNCHRONOUS": args.synchronous}

    single = post_script(orjson.dumps(EVENT))
    with bare_server() as url:
        bare = wrk(
            url + "/event", duration=args.duration, connections=args.connections, script=single
        )
    with tempdir() as d, gravityd(Path(d), env=env) as url:
        ours = wrk(
            url + "/event", duration=args.duration, connections=args.connections, script=single
        )
    print(
        f"POST /event     gravityd {ours['rps']:>9,.0f} req/s  p99 {ours['p99']:.2f} ms"
        f"  | bare aiohttp {bare['rps']:>9,.0f} req/s  p99 {bare['p99']:.2f} ms"
        f"  | ratio {ours['rps'] / bare['rps']:.2f}  (target >= 0.70)"
    )

    many = post_script(batch_body(args.batch))
    with tempdir() as d, gravityd(Path(d), env=env) as url:
        batch = wrk(url + "/events", duration=args.duration, connections=4, script=many)
    with tempdir() as d:
        raw = raw_sqlite(Path(d), max(200_000, args.batch * 50), args.batch, args.synchronous)
    events_s = batch["rps"] * args.batch
    print(
        f"POST /events    gravityd {events_s:>9,.0f} events/s ({args.batch}/request)"
        f"  | raw SQLite executemany {raw:>9,.0f} rows/s"
        f"  | ratio {events_s / raw:.2f}  (target >= 250,000 events/s)"
    )
    print(f"synchronous={args.synchronous}, wrk -t1 -c{args.connections} -d{args.duration}s")


if __name__ == "__main__":
    main()
