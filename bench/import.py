"""Bulk import benchmark: `gravityd import --db` beside raw executemany, in the same run.

- import: `python -m gravityd import FILE --db NEW.db` as a user runs it (process start, the
  hashing pass, validation of every line, the writes), wall clock.
- raw: the very rows that import stores (the same ids, the same columns), already built in
  memory, written with executemany into a fresh log of the same schema and sync mode, in
  transactions of the same size: what SQLite alone costs, no parsing, no validation.

    python -m bench.import          # 300,000 events (about a minute)
    python -m bench.import --smoke  # 5,000 events: checks the figures are printed

Prints both rates and their ratio (target >= 0.8) and checks that the imported log holds
every event exactly once.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from bench.common import tempdir
from gravityd.commands.importer import parse_piece, plan
from gravityd.core.events import ValidationLimits
from gravityd.log.sqlite import INSERT_EVENT
from gravityd.log.sqlite_schema import connect_sync

REPO = Path(__file__).resolve().parent.parent
TYPES = ("play_start", "play_10s", "play_10s", "skip", "like", "radio_next")


def write_file(path: Path, n: int, seed: int = 7) -> None:
    """Listening history as a warehouse would export it: a third with their own event_id."""
    rng = random.Random(seed)
    tracks = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(5000)]
    t0 = 1_780_000_000
    with open(path, "wb") as f:
        for i in range(n):
            kind = TYPES[i % len(TYPES)]
            ev: dict = {
                "session_id": f"s{i // 20}",
                "track_id": tracks[rng.randrange(len(tracks))],
                "event_type": kind,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i)),
                "context": "radio" if kind == "radio_next" else "direct",
            }
            if kind == "skip":
                ev["meta"] = {"elapsed_ms": rng.randrange(60_000)}
            if i % 3 == 0:
                ev["event_id"] = f"wh-{i}"
            f.write(orjson.dumps(ev) + b"\n")


def raw_rows(path: Path) -> tuple[list[tuple], int]:
    """The rows import stores, built here untimed; and the rows per import transaction."""
    p = plan(str(path), "ndjson")
    rows: list[tuple] = []
    now = time.time()
    for piece in p.pieces:
        rows.extend(parse_piece(p, piece, ValidationLimits(), now, 0).rows)
    return rows, max(1, len(rows) // max(1, len(p.pieces)))


def raw_executemany(
    db: Path, rows: list[tuple], chunk: int, synchronous: str
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the raw writes."""
    conn = connect_sync(db, synchronous)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), chunk):
        conn.execute("BEGIN")
        conn.executemany(INSERT_EVENT, rows[i : i + chunk])
        conn.execute("COMMIT")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    conn.close()
    return seconds, cpu


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_import(path: Path, db: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the import and its workers)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "gravityd",
            "import",
            str(path),
            "--db",
            str(db),
            "--snapshot-dir",
            str(db.parent / "snapshots"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "GRAVITYD_CONFIG": str(REPO / "config" / "gravityd.toml")},
    )
    seconds = time.perf_counter() - started
    if res.returncode != 0:
        raise SystemExit(f"import failed ({res.returncode}): {res.stderr[-2000:]}")
    return seconds, _children_cpu() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each; the best counts")
    ap.add_argument("--smoke", action="store_true", help="5,000 events, one round")
    args = ap.parse_args()
    n, rounds = (5000, 1) if args.smoke else (args.events, args.rounds)
    with tempdir() as tmp:
        work = Path(tmp)
        path = work / "history.ndjson"
        write_file(path, n)
        rows, chunk = raw_rows(path)
        synchronous = "FULL"  # config/gravityd.toml's default, which the import uses
        best_raw = best_imp = (float("inf"), float("inf"))
        for r in range(rounds):  # interleaved, so a noisy neighbour hits both alike
            best_raw = min(best_raw, raw_executemany(work / f"raw{r}.db", rows, chunk, synchronous))
            db = work / f"imp{r}" / "events.db"
            best_imp = min(best_imp, run_import(path, db))
            conn = connect_sync(db)
            (count, distinct) = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events"
            ).fetchone()
            conn.close()
            if count != n or distinct != n:
                print(f"CORRECTNESS: FAILED ({count} rows, {distinct} distinct of {n})")
                return 1
        again, _ = run_import(path, work / "imp0" / "events.db")  # a rerun adds nothing
        conn = connect_sync(work / "imp0" / "events.db")
        (count,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        conn.close()
        if count != n:
            print(f"CORRECTNESS: FAILED (rerun left {count} rows of {n})")
            return 1
    imp_rate, raw_rate = n / best_imp[0], n / best_raw[0]
    print(f"events: {n} NDJSON lines, {len(rows) // max(1, chunk)} transactions of ~{chunk}")
    print(f"gravityd import --db: {imp_rate:,.0f} events/s (wall clock, process start included)")
    print(f"raw executemany:      {raw_rate:,.0f} events/s (prebuilt rows, same schema and sync)")
    print(f"ratio import/raw: {imp_rate / raw_rate:.2f} (target >= 0.8)")
    print(
        f"CPU per event: import {best_imp[1] / n * 1e6:.1f} us (all its processes),"
        f" raw {best_raw[1] / n * 1e6:.1f} us"
    )
    print(f"rerun of the same file: {n / again:,.0f} lines/s, nothing added")
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    print("CORRECTNESS: OK (every event stored once; the rerun added nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
