"""Server CPU time per request through the HTTP layer, by kind of request.

CPU seconds the server process spent (from /proc) over a fixed number of requests (hey), so
the figure holds on a loaded, shared machine where req/s does not. With --against COMMIT the
same requests also go to that commit's code (git archive into a temporary folder), the runs
interleaved, to see what a change to the layer costs.

    python -m bench.http_cpu                        # this tree
    python -m bench.http_cpu --against 8e55ebf      # beside an older commit, 3 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

from bench.common import REPO, free_port, wait_http

TRACKS = [str(uuid.UUID(int=i)) for i in range(50)]
EVENT = json.dumps({"session_id": "b", "track_id": TRACKS[1], "event_type": "play_10s"})


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(tree: Path, folder: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gravityd", "serve", "--port", str(port),
         "--db", f"{folder}/e.db", "--snapshot-dir", f"{folder}/s"],
        cwd=tree,
        env={**os.environ, "GRAVITYD_LOG_LEVEL": "WARNING", "GRAVITYD_RATE_LIMIT_PER_S": "0"},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz")
    events = [
        {"session_id": f"s{i % 7}", "track_id": TRACKS[i % 50], "event_type": "play_10s"}
        for i in range(2000)
    ]
    json_type = {"Content-Type": "application/json"}
    post = urllib.request.Request(url + "/events", json.dumps(events).encode(), json_type)
    urllib.request.urlopen(post, timeout=30).close()
    fold = urllib.request.Request(url + "/admin/fold", data=b"")
    urllib.request.urlopen(fold, timeout=30).close()
    return proc, url


def cases(url: str, n: int) -> dict[str, tuple[int, list[str]]]:
    hey = ["hey", "-c", "16"]
    return {
        "GET neighbors": (n, [*hey, "-n", str(n), f"{url}/tracks/{TRACKS[3]}/gravity_neighbors"]),
        "GET /healthz": (n, [*hey, "-n", str(n), f"{url}/healthz"]),
        "GET /tracks/x (400)": (n, [*hey, "-n", str(n), f"{url}/tracks/x"]),
        "POST /event": (n // 4, [*hey, "-n", str(n // 4), "-m", "POST",
                                 "-T", "application/json", "-d", EVENT, f"{url}/event"]),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="a commit to measure beside this tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20_000)
    args = ap.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install hey")
    with tempfile.TemporaryDirectory(prefix="gravityd-bench-") as tmp:
        trees = {"this tree": REPO}
        if args.against:
            old = Path(tmp) / "against"
            old.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.against, "gravityd"],
                check=True, capture_output=True,
            ).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees = {args.against: old, **trees}
        results: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                with tempfile.TemporaryDirectory(dir=tmp) as folder:
                    proc, url = start(tree, folder)
                    try:
                        for case, (n, cmd) in cases(url, args.requests).items():
                            before = cpu_seconds(proc.pid)
                            subprocess.run(cmd, check=True, capture_output=True)
                            spent = (cpu_seconds(proc.pid) - before) / n * 1e6
                            results[name].setdefault(case, []).append(spent)
                    finally:
                        proc.terminate()
                        proc.wait(30)
    for case in cases("", args.requests):
        line = [f"{case:20s}"]
        for name, per in results.items():
            xs = sorted(per[case])
            line.append(f"{name}: median {xs[len(xs) // 2]:.0f} µs ({xs[0]:.0f}-{xs[-1]:.0f})")
        print("  ".join(line), "server CPU per request")


if __name__ == "__main__":
    main()
