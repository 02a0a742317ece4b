"""Helpers the benchmarks share: start servers as child processes, drive wrk, read figures."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ports import free_port
from gravityd.core.events import FoldEvent
from gravityd.log.event_ids import new_event_id
from gravityd.log.sqlite import INSERT_EVENT
from gravityd.log.sqlite_schema import connect_sync

REPO = Path(__file__).resolve().parent.parent


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


@contextmanager
def gravityd(
    workdir: Path, *extra: str, env: dict[str, str] | None = None, ready_path: str = "/readyz"
) -> Iterator[str]:
    """A real `gravityd serve` with its files under workdir; yields its base URL."""
    with serve(
        workdir / "bench.db", workdir / "snapshots", *extra, env=env, ready_path=ready_path
    ) as daemon:
        yield daemon.url


@contextmanager
def bare_server(answer_file: Path | None = None) -> Iterator[str]:
    """The bare aiohttp ceiling; its GET neighbors serialises the JSON in answer_file."""
    port = free_port()
    extra = [str(answer_file)] if answer_file is not None else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_server", str(port), *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/tracks/x/gravity_neighbors")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def tempdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="gravityd-bench-")


def wrk(
    url: str, *, duration: int, connections: int, threads: int = 1, script: str | None = None
) -> dict[str, float]:
    """Run wrk; return requests/s and latency percentiles in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write((script or "") + _LATENCY_LUA)
        lua = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{duration}s",
                "-s",
                lua,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(lua)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    figures = {"rps": rps}
    for key in ("p50", "p99", "non2xx"):
        m = re.search(rf"^{key} ([\d.]+)$", out, re.M)
        if m:
            figures[key] = float(m.group(1))
    return figures


_LATENCY_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("p50 %.3f\\n", latency:percentile(50) / 1000))
  io.write(string.format("p99 %.3f\\n", latency:percentile(99) / 1000))
  io.write(string.format("non2xx %d\\n", summary.errors.status))
end
"""


def post_script(body: bytes, content_type: str = "application/json") -> str:
    text = body.decode().replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'wrk.method = "POST"\nwrk.body = "{text}"\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
    )


# --------------------------------------------------------------------------- generated logs
# Added for bench/fold.py and bench/restart.py: a realistic listening log, written straight
# into a SQLite file, a daemon started on any db/snapshot folder with its start-up time, RSS.


def track_ids(n: int) -> list[str]:
    """n distinct canonical UUID strings (interned): the catalogue of a generated log."""
    return [
        sys.intern(str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15 % (1 << 128)))) for i in range(n)
    ]


def gen_events(
    n: int,
    tracks: int = 100_000,
    *,
    seed: int = 1,
    first_id: int = 1,
    t_end: float | None = None,
    concurrent: int = 2000,
    locality: float = 0.7,
    fanout: int = 16,
    session_prefix: str = "sess",
) -> list[FoldEvent]:
    """About n FoldEvents of interleaved radio sessions, in log order.

    A session plays 5-40 tracks; each track gives radio_next (60 %), play_start, then play_10s
    (72 %, then like 8 %) or a skip graded by elapsed_ms (exponential, mean 8 s: many early
    skips, some pass-throughs). The next track is, with probability `locality`, one of the
    current track's `fanout` "neighbours" (half near it in id order, half popular), else a draw
    with Zipf-like popularity; so transitions repeat and the graph saturates like a real one.
    Timestamps grow by the same step per event and end at t_end (default: now).
    """
    rng = random.Random(seed)
    ids = track_ids(tracks)
    cum = list(itertools.accumulate(1.0 / (r + 20) for r in range(tracks)))
    popular = rng.choices(range(tracks), cum_weights=cum, k=tracks * fanout // 2)
    near = [
        (i + rng.randint(-300, 300)) % tracks for i in range(tracks) for _ in range(fanout // 2)
    ]
    half = fanout // 2
    neigh = [
        near[i * half : (i + 1) * half] + popular[i * half : (i + 1) * half] for i in range(tracks)
    ]
    pool = rng.choices(range(tracks), cum_weights=cum, k=1 << 16)
    dt = 200.0 / (concurrent * 3.2)  # ~200 s between two tracks of one session
    t = (time.time() if t_end is None else t_end) - n * dt
    out: list[FoldEvent] = []
    append = out.append
    rand = rng.random
    randrange = rng.randrange
    expo = rng.expovariate
    next_session = 0
    # a slot: [session id, tracks left, current track index]
    slots: list[list[Any]] = []
    for _ in range(concurrent):
        slots.append([f"{session_prefix}-{next_session:09d}", rng.randint(5, 40), -1])
        next_session += 1
    eid = first_id
    end = first_id + n
    while eid < end:
        slot = slots[randrange(concurrent)]
        sid, left, cur = slot
        if cur >= 0 and rand() < locality:
            cur = neigh[cur][randrange(fanout)]
        else:
            cur = pool[randrange(65536)]
        tid = ids[cur]
        if rand() < 0.6:
            append(FoldEvent(eid, sid, tid, "radio_next", t, None))
            eid += 1
        append(FoldEvent(eid, sid, tid, "play_start", t, None))
        eid += 1
        if rand() < 0.72:
            append(FoldEvent(eid, sid, tid, "play_10s", t, None))
            eid += 1
            if rand() < 0.08:
                append(FoldEvent(eid, sid, tid, "like", t, None))
                eid += 1
        else:
            append(FoldEvent(eid, sid, tid, "skip", t, min(120_000, int(expo(1 / 8000)))))
            eid += 1
        t += dt * 3.2
        if left <= 1:
            slot[0] = f"{session_prefix}-{next_session:09d}"
            slot[1] = rng.randint(5, 40)
            slot[2] = -1
            next_session += 1
        else:
            slot[1] = left - 1
            slot[2] = cur
    return out


def write_log(db: Path | str, events: list[FoldEvent], chunk: int = 100_000) -> float:
    """Append events (ids included) to a SQLite log with the project's schema; return seconds.

    Straight executemany in big transactions, synchronous=OFF: a benchmark fixture, not ingest.
    """
    started = time.perf_counter()
    conn = connect_sync(db, "OFF")
    try:
        for i in range(0, len(events), chunk):
            rows = [
                (
                    e.id,
                    new_event_id(),
                    e.session_id,
                    e.track_id,
                    e.event_type,
                    None,
                    e.ts,
                    e.ts,
                    "radio",
                    None if e.elapsed_ms is None else f'{{"elapsed_ms":{e.elapsed_ms}}}',
                    e.elapsed_ms,
                )
                for e in events[i : i + chunk]
            ]
            conn.execute("BEGIN")
            conn.executemany(INSERT_EVENT, rows)
            conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one), from /proc."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Daemon:
    url: str
    proc: subprocess.Popen
    ready_s: float  # from Popen to the first 200 of the ready path


@contextmanager
def serve(
    db: Path | str,
    snapshot_dir: Path | str,
    *extra: str,
    env: dict[str, str] | None = None,
    ready_path: str = "/readyz",
    timeout: float = 600.0,
    poll: float = 0.02,
) -> Iterator[Daemon]:
    """`gravityd serve` on any db and snapshot folder; measures process start to ready."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gravityd",
            "serve",
            "--port",
            str(port),
            "--db",
            str(db),
            "--snapshot-dir",
            str(snapshot_dir),
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "GRAVITYD_LOG_LEVEL": "WARNING", **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gravityd exited with {proc.returncode} before ready")
            try:
                with urllib.request.urlopen(url + ready_path, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url + ready_path)
            time.sleep(poll)
        yield Daemon(url, proc, time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait(120)


def http_post_json(url: str, timeout: float = 600.0) -> dict[str, Any]:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def http_get_json(url: str, timeout: float = 30.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # /readyz answers 503 with the same body
        return json.loads(exc.read())


def get_script(paths: list[str]) -> str:
    """wrk Lua that GETs the given paths in turn."""
    items = ",".join(f'"{p}"' for p in paths)
    return (
        f"local paths = {{{items}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n'
    )


def post_rotating_script(bodies: list[bytes], marker: str = "@@") -> str:
    """wrk Lua that POSTs JSON bodies in turn, replacing `marker` by a per-request counter
    (so session ids in the bodies are fresh on every request)."""
    parts = []
    for body in bodies:
        pieces = body.decode().split(marker)
        if any("]==]" in p for p in pieces):
            raise ValueError("body contains the Lua long-bracket terminator")
        parts.append("{" + ",".join(f"[==[{p}]==]" for p in pieces) + "}")
    return (
        "local bodies = {" + ",\n".join(parts) + "}\n"
        "local i, n = 0, 0\n"
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n  n = n + 1\n"
        "  return wrk.format(nil, '/events', nil, table.concat(bodies[i], tostring(n)))\n"
        "end\n"
    )


# --------------------------------------------------------------------------- POST bodies in turn
# Added for bench/rank.py.


def post_bodies_script(bodies: list[bytes], path: str) -> str:
    """wrk Lua that POSTs the given JSON bodies to `path` in turn, unchanged. Each request is
    formatted once (on first use) and reused, so wrk itself costs little per large body."""
    parts = []
    for body in bodies:
        text = body.decode()
        if "]==]" in text:
            raise ValueError("body contains the Lua long-bracket terminator")
        parts.append(f"[==[{text}]==]")
    return (
        "local bodies = {" + ",\n".join(parts) + "}\n"
        "local reqs = {}\nlocal i = 0\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        "  local r = reqs[i]\n"
        "  if r == nil then\n"
        f'    r = wrk.format("POST", "{path}", headers, bodies[i])\n'
        "    reqs[i] = r\n"
        "  end\n"
        "  return r\n"
        "end\n"
    )
