"""`python -m bench.soak`: the arguments, the daemon, the run, the check and the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import serve, tempdir

from . import __doc__ as DOC
from .check import check_log
from .load import Soak
from .probes import child_stderr_to, read_daemon_log
from .report import report


def main() -> None:
    ap = argparse.ArgumentParser(description=DOC, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--smoke", action="store_true", help="~20 s, small catalogue (CI)")
    ap.add_argument("--tracks", type=int, default=2000, help="catalogue size (bounds the graph)")
    ap.add_argument("--batch-rps", type=float, default=16.0, help="POST /events per second")
    ap.add_argument("--batch-workers", type=int, default=4)
    ap.add_argument("--batch-slots", type=int, default=400, help="open sessions per batch worker")
    ap.add_argument("--event-rps", type=float, default=200.0, help="POST /event per second")
    ap.add_argument("--event-workers", type=int, default=8)
    ap.add_argument("--event-slots", type=int, default=20, help="open sessions per event worker")
    ap.add_argument("--neighbors-rps", type=float, default=400.0)
    ap.add_argument("--rank-rps", type=float, default=25.0)
    ap.add_argument("--pool-min", type=int, default=200, help="fewest /rank candidates")
    ap.add_argument("--pool-max", type=int, default=500, help="most /rank candidates")
    ap.add_argument("--inflight", type=int, default=64, help="open-loop requests in flight, max")
    ap.add_argument("--snapshot-interval", type=float, default=60.0, help="daemon's, seconds")
    ap.add_argument("--admin-snapshot-every", type=float, default=150.0, help="seconds")
    ap.add_argument("--metrics-every", type=float, default=5.0, help="seconds")
    ap.add_argument("--sample-every", type=float, default=10.0, help="RSS etc., seconds")
    ap.add_argument("--session-timeout", type=float, default=120.0, help="daemon's, seconds")
    ap.add_argument("--maintenance-parts", type=int, default=16, help="daemon's sweep slices")
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    args = ap.parse_args()
    if args.smoke:
        args.minutes = 20 / 60
        args.tracks = 400
        args.snapshot_interval = 5.0
        args.admin_snapshot_every = 7.0
        args.metrics_every = 2.0
        args.sample_every = 2.0
        args.session_timeout = 10.0
        args.maintenance_parts = 4
    seconds = args.minutes * 60
    window = 60.0 if seconds >= 300 else max(5.0, seconds / 4)
    env = {
        "GRAVITYD_LOG_LEVEL": "INFO",
        "GRAVITYD_LOG_FORMAT": "json",
        "GRAVITYD_SNAPSHOT_INTERVAL_S": str(args.snapshot_interval),
        "GRAVITYD_SESSION_TIMEOUT_S": str(args.session_timeout),
        "GRAVITYD_MAINTENANCE_PARTS": str(args.maintenance_parts),
        "GRAVITYD_SYNCHRONOUS": args.synchronous,
    }
    try:
        import uvloop

        runner: Callable[[Awaitable[Any]], Any] = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner, loop_name = asyncio.run, "asyncio"

    started = time.perf_counter()
    with tempdir() as d:
        work = Path(d)
        db = work / "bench.db"
        daemon_log = work / "daemon.log"
        shutdown: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            with child_stderr_to(daemon_log):
                daemon = stack.enter_context(serve(db, work / "snapshots", env=env))
            soak = Soak(args, daemon.url, daemon.proc.pid)
            soak.proc = daemon.proc
            print(
                f"gravityd pid {daemon.proc.pid} ready in {daemon.ready_s:.2f} s at {daemon.url};"
                f" load for {seconds:.0f} s (client on {loop_name})",
                flush=True,
            )
            end = runner(soak.run(seconds))
            # Leaving the stack: SIGTERM, graceful shutdown (drain, fold, snapshot), wait.
            t = time.perf_counter()
            try:
                stack.close()
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait(30)
                shutdown["killed"] = True
            shutdown["seconds"] = time.perf_counter() - t
            shutdown["returncode"] = daemon.proc.returncode
        entries, alerts = read_daemon_log(daemon_log)
        check = check_log(db, soak.ledger) if db.exists() else {}
        db_mb = sum(p.stat().st_size for p in work.glob("bench.db*")) / 1e6
    report(soak, args, end, shutdown, entries, alerts, check, db_mb, window, started)


if __name__ == "__main__":
    main()
