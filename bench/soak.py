"""Soak benchmark: one `gravityd serve` under a steady mixed load for minutes, watching what
drifts (memory, latency, fold lag) and checking at the end that the log holds every
acknowledged event exactly once.

The daemon is a child process (bench/common.py serve()) with a fixed catalogue of tracks, so the
graph stops growing after a while, periodic snapshots every --snapshot-interval seconds, and a
session timeout short enough (--session-timeout, with --maintenance-parts so the sweep passes
often) that the fold's open-session state reaches a steady size inside the run too. With the
daemon's own defaults (30 min timeout, a sweep pass every ~10M events) session state grows for
the first half hour of any run, which a 10-minute soak could not tell from a leak.

Load, all at once, from one asyncio client (aiohttp; uvloop when installed):
- POST /events: --batch-workers closed-loop workers pacing --batch-rps in total, 50-500 events
  per batch (a quarter of them as NDJSON), each worker driving its own interleaved radio
  sessions over the catalogue (radio_next, play_start, play_10s / graded skip, like; the next
  track is usually one of the current track's neighbours, else a popularity draw);
- POST /event: --event-workers closed-loop workers pacing --event-rps single events, same kind
  of sessions;
- every event carries a client event_id "<run prefix><n>"; a request that fails is retried once
  with the same body (the idempotent retry a real client makes), and one batch in 40 and one
  single event in 100 is delivered twice on purpose (both must come back as duplicates);
- GET /tracks/{id}/gravity_neighbors, open loop at --neighbors-rps (popular tracks, limit 10/20/50,
  one in ten direction=both, one in twenty an unknown track);
- POST /rank, open loop at --rank-rps, pools of 200-500 candidates with a 10-track history;
- GET /metrics every --metrics-every s, POST /admin/snapshot every --admin-snapshot-every s;
- every --sample-every s: the daemon's VmRSS (/proc/PID/status), threads, open fds and CPU, and
  GET /readyz (log last id, fold cursor, edges) with the fold's session count from /metrics.

Each request's latency is recorded (send to last body byte), per route, with its status. The
daemon's stderr goes to a file (log level INFO) so the "snapshot written" lines give every
snapshot's time and duration; requests that started during a snapshot are reported apart.

At the end: POST /admin/fold, stop the daemon (SIGTERM: graceful shutdown), open the SQLite
log and check every acknowledged event_id is there exactly once, no event we never sent (or
that was rejected) is there, and single events sit at the id their 202 gave. Events whose
request failed are counted apart (they may or may not be there). Exit status 1 when an event
was lost or duplicated, anything the log should not hold is there, or any 5xx (or the daemon
died); timings are reported, never asserted.

    python -m bench.soak          # 10 minutes
    python -m bench.soak --smoke  # ~20 s, small catalogue, CI-sized
    python -m bench.soak --minutes 30 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import itertools
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import serve, tempdir, track_ids

EVENTS = "POST /events"
EVENT = "POST /event"
NEIGHBORS = "GET neighbors"
RANK = "POST /rank"
METRICS = "GET /metrics"
READYZ = "GET /readyz"
SNAPSHOT = "POST /admin/snapshot"
FOLD = "POST /admin/fold"
EVENTS_RETRY = "POST /events retry"
EVENT_RETRY = "POST /event retry"
EVENTS_DUP = "POST /events dup"
EVENT_DUP = "POST /event dup"
ROUTES = (
    EVENTS,
    EVENT,
    NEIGHBORS,
    RANK,
    METRICS,
    READYZ,
    SNAPSHOT,
    FOLD,
    EVENTS_DUP,
    EVENT_DUP,
    EVENTS_RETRY,
    EVENT_RETRY,
)
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}

# Ledger states of a generated event.
UNSENT, UNKNOWN, ACKED, REJECTED = 0, 1, 2, 3


# --------------------------------------------------------------------------- the world


class World:
    """A fixed catalogue: popularity (Zipf-like) and per-track neighbours, as gen_events."""

    def __init__(self, tracks: int, seed: int, fanout: int = 16) -> None:
        rng = random.Random(seed)
        self.ids = track_ids(tracks)
        cum = list(itertools.accumulate(1.0 / (r + 20) for r in range(tracks)))
        self.pool = rng.choices(range(tracks), cum_weights=cum, k=1 << 15)
        spread = max(5, tracks // 60)
        half = fanout // 2
        self.neigh = [
            [(i + rng.randint(-spread, spread)) % tracks for _ in range(half)]
            + rng.choices(range(tracks), cum_weights=cum, k=half)
            for i in range(tracks)
        ]
        self.users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(500)]

    def popular(self, rng: random.Random) -> int:
        return self.pool[rng.randrange(len(self.pool))]


class Ledger:
    """Every event_id this run generated, by number n (the id is prefix + n), and its fate."""

    def __init__(self) -> None:
        self.prefix = f"soak-{uuid.uuid4().hex[:10]}-"
        self.state = bytearray()
        self.ids = array.array("q")  # the log id a single POST /event's 202 gave, else 0

    def new(self) -> int:
        self.state.append(UNSENT)
        self.ids.append(0)
        return len(self.state) - 1

    def mark(self, ns: range | list[int], state: int) -> None:
        for n in ns:
            if self.state[n] != ACKED:  # an ack is final; a later failed retry changes nothing
                self.state[n] = state


class Sessions:
    """Interleaved radio sessions over the world; events come out in each session's order."""

    def __init__(
        self, world: World, ledger: Ledger, rng: random.Random, slots: int, name: str
    ) -> None:
        self.world, self.ledger, self.rng, self.name = world, ledger, rng, name
        self.count = 0
        self.slots = [self._fresh() for _ in range(slots)]

    def _fresh(self) -> list[Any]:
        self.count += 1
        user = self.world.users[self.rng.randrange(len(self.world.users))]
        return [f"{self.name}-{self.count}", self.rng.randint(5, 40), -1, user]

    def step(self, out: list[tuple[int, dict[str, Any]]]) -> None:
        """One track of one session: 2-4 events appended to out as (n, event)."""
        rng, world = self.rng, self.world
        i = rng.randrange(len(self.slots))
        slot = self.slots[i]
        sid, left, cur, user = slot
        if cur >= 0 and rng.random() < 0.7:
            cur = world.neigh[cur][rng.randrange(len(world.neigh[cur]))]
        else:
            cur = world.popular(rng)
        tid = world.ids[cur]
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        kinds: list[tuple[str, int | None]] = []
        if rng.random() < 0.6:
            kinds.append(("radio_next", None))
        kinds.append(("play_start", None))
        if rng.random() < 0.72:
            kinds.append(("play_10s", None))
            if rng.random() < 0.08:
                kinds.append(("like", None))
        else:
            kinds.append(("skip", min(120_000, int(rng.expovariate(1 / 8000)))))
        for kind, elapsed in kinds:
            n = self.ledger.new()
            ev: dict[str, Any] = {
                "event_id": self.ledger.prefix + str(n),
                "session_id": sid,
                "track_id": tid,
                "event_type": kind,
                "user_id": user,
                "timestamp": ts,
                "context": "radio",
            }
            if elapsed is not None:
                ev["meta"] = {"elapsed_ms": elapsed}
            out.append((n, ev))
        if left <= 1:
            self.slots[i] = self._fresh()
        else:
            slot[1], slot[2] = left - 1, cur

    def take(self, k: int) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        while len(out) < k:
            self.step(out)
        return out


def rank_bodies(world: World, count: int, lo: int, hi: int, seed: int) -> list[bytes]:
    """POST /rank bodies: a 10-track walk as history, lanes of the current track and of the
    history, 3 history tracks, the rest popular or random tracks; 95 % with an embedding score."""
    rng = random.Random(seed)
    n_tracks = len(world.ids)
    hi = min(hi, n_tracks - 12)
    lo = min(lo, hi)
    bodies = []
    for _ in range(count):
        walk = [world.popular(rng)]
        while len(walk) < 11:
            nxt = [v for v in world.neigh[walk[-1]] if v not in walk]
            walk.append(rng.choice(nxt) if nxt else rng.randrange(n_tracks))
        current, history = walk[-1], walk[:-1]
        size = rng.randint(lo, hi)
        pool = dict.fromkeys(world.neigh[current])
        for h in history[-5:]:
            pool.update(dict.fromkeys(world.neigh[h]))
        pool.update(dict.fromkeys(rng.sample(history, 3)))
        while len(pool) < size:
            pool[world.popular(rng) if rng.random() < 0.5 else rng.randrange(n_tracks)] = None
        pool.pop(current, None)
        cands = [world.ids[c] for c in pool]
        rng.shuffle(cands)
        body = {
            "current_track_id": world.ids[current],
            "candidate_track_ids": cands,
            "embeddings_scores": {
                c: round(rng.uniform(-0.2, 0.95), 6) for c in cands if rng.random() < 0.95
            },
            "session_history": [world.ids[h] for h in history],
            "limit": 20,
        }
        bodies.append(orjson.dumps(body))
    return bodies


# --------------------------------------------------------------------------- small helpers


def pct(values: list[float] | array.array, q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def lat_summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    n = len(s)
    if not n:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "count": n,
        "p50": s[n // 2] * 1e3,
        "p99": s[min(n - 1, int(n * 0.99))] * 1e3,
        "max": s[-1] * 1e3,
    }


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


_LABELS = re.compile(r'(\w+)="([^"]*)"')


def server_requests(metrics: dict[str, float]) -> dict[str, Counter]:
    """gravityd_request_seconds_count by route: {route: Counter(status: count)}."""
    out: dict[str, Counter] = {}
    for key, value in metrics.items():
        if key.startswith("gravityd_request_seconds_count{"):
            labels = dict(_LABELS.findall(key))
            route = f"{labels.get('method')} {labels.get('route')}"
            out.setdefault(route, Counter())[labels.get("status", "?")] += int(value)
    return out


def server_quantiles(metrics: dict[str, float], qs: tuple[float, ...] = (0.5, 0.99)) -> dict:
    """Server-side latency by route from gravityd_request_seconds buckets (all statuses): the
    upper bound (ms) of the bucket holding each quantile; time spent inside the daemon only."""
    buckets: dict[str, Counter] = {}
    for key, value in metrics.items():
        if key.startswith("gravityd_request_seconds_bucket{"):
            labels = dict(_LABELS.findall(key))
            route = f"{labels.get('method')} {labels.get('route')}"
            le = labels.get("le", "+Inf")
            buckets.setdefault(route, Counter())[float(le)] += value
    out = {}
    for route, cum in buckets.items():
        bounds = sorted(cum)
        total = cum[bounds[-1]] if bounds else 0
        if not total:
            continue
        out[route] = {
            f"p{q * 100:g}": next(b for b in bounds if cum[b] >= q * total) * 1e3 for q in qs
        }
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (kB) and Threads of a process, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@contextlib.contextmanager
def child_stderr_to(path: Path) -> Iterator[None]:
    """While inside, fd 2 is the file: a child started here inherits it (its log goes there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def read_daemon_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The daemon's JSON log lines, and the lines at warning level or above (or not JSON)."""
    entries, alerts = [], []
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                alerts.append(line)
                continue
            if not isinstance(obj, dict):
                alerts.append(line)
                continue
            entries.append(obj)
            if obj.get("level") not in ("info", "debug"):
                alerts.append(line)
    return entries, alerts


def log_time(entry: dict[str, Any]) -> float:
    ts = str(entry.get("ts", ""))
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return math.nan


# --------------------------------------------------------------------------- the load


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, pid: int) -> None:
        self.args, self.url, self.pid = args, url, pid
        self.world = World(args.tracks, seed=args.seed)
        self.ledger = Ledger()
        self.rng = random.Random(args.seed + 1)
        self.rank_bodies = rank_bodies(self.world, 64, args.pool_min, args.pool_max, args.seed + 2)
        self.stopping = False
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self.lat: dict[str, list[float]] = {r: [] for r in ROUTES}
        self.start: dict[str, array.array] = {r: array.array("d") for r in ROUTES}
        self.status: dict[str, Counter] = {r: Counter() for r in ROUTES}
        self.behind: Counter = Counter()  # closed-loop slots missed / open-loop sends dropped
        self.samples: list[dict[str, Any]] = []
        self.snapshots_admin: list[dict[str, Any]] = []
        self.loop_lag: list[float] = []
        self.loop_lag_t = array.array("d")
        self.dup_checks = Counter()
        self.events_acked = Counter()
        self.daemon_died = False
        self.last_metrics: dict[str, float] = {}
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    # ---- one request
    async def call(
        self,
        route: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        client: str | None = None,
    ) -> tuple[int | str, bytes]:
        sess = self.sessions[client or route]
        raw = b""
        t = time.perf_counter()
        try:
            async with sess.request(method, self.url + path, data=body, headers=headers) as r:
                raw = await r.read()
                status: int | str = r.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            status = f"exc:{type(exc).__name__}"
        dt = time.perf_counter() - t
        self.lat[route].append(dt)
        self.start[route].append(t - self.t0)
        self.status[route][status] += 1
        return status, raw

    # ---- ingest
    async def post_batch(self, items: list[tuple[int, dict[str, Any]]], ndjson: bool) -> None:
        ns = [n for n, _ in items]
        evs = [e for _, e in items]
        if ndjson:
            body, headers = b"\n".join(orjson.dumps(e) for e in evs) + b"\n", NDJSON
        else:
            body, headers = orjson.dumps(evs), JSON
        self.ledger.mark(ns, UNKNOWN)
        for route in (EVENTS, EVENTS_RETRY):
            status, raw = await self.call(route, "POST", "/events", body, headers, client=EVENTS)
            if status == 202:
                ans = orjson.loads(raw)
                bad = {r["index"] for r in ans.get("rejected", ())}
                self.ledger.mark([n for i, n in enumerate(ns) if i in bad], REJECTED)
                good = [n for i, n in enumerate(ns) if i not in bad]
                self.ledger.mark(good, ACKED)
                self.events_acked[route] += len(good)
                if self.rng.random() < 1 / 40 and not bad:  # a duplicate delivery
                    s2, raw2 = await self.call(
                        EVENTS_DUP, "POST", "/events", body, headers, client=EVENTS
                    )
                    if s2 == 202:
                        a2 = orjson.loads(raw2)
                        ok = a2.get("duplicates") == len(ns) and a2.get("accepted") == len(ns)
                        self.dup_checks["batch_ok" if ok else "batch_wrong"] += 1
                return
            if self.stopping and route == EVENTS:
                return  # no retry once the run is over: the outcome stays unknown
            await asyncio.sleep(0.5)

    async def post_single(self, n: int, ev: dict[str, Any]) -> None:
        body = orjson.dumps(ev)
        self.ledger.mark([n], UNKNOWN)
        for route in (EVENT, EVENT_RETRY):
            status, raw = await self.call(route, "POST", "/event", body, JSON, client=EVENT)
            if status == 202:
                ans = orjson.loads(raw)
                self.ledger.mark([n], ACKED)
                self.ledger.ids[n] = int(ans.get("id", 0))
                self.events_acked[route] += 1
                if self.rng.random() < 1 / 100:
                    s2, raw2 = await self.call(
                        EVENT_DUP, "POST", "/event", body, JSON, client=EVENT
                    )
                    if s2 == 202:
                        a2 = orjson.loads(raw2)
                        ok = a2.get("duplicate") is True and a2.get("id") == ans.get("id")
                        self.dup_checks["single_ok" if ok else "single_wrong"] += 1
                return
            if self.stopping and route == EVENT:
                return
            await asyncio.sleep(0.5)

    async def paced(self, rate: float, route: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Closed loop at `rate` per second; a slot missed by more than a second is dropped."""
        interval = 1.0 / rate
        nxt = time.perf_counter() + random.random() * interval
        while not self.stopping:
            wait = nxt - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.5))
                continue
            await fn()
            nxt += interval
            late = time.perf_counter() - nxt
            if late > 1.0:
                self.behind[route] += int(late / interval)
                nxt = time.perf_counter()

    async def batch_worker(self, i: int) -> None:
        rng = random.Random(self.args.seed * 1000 + i)
        gen = Sessions(self.world, self.ledger, rng, self.args.batch_slots, f"b{i}")

        async def one() -> None:
            items = gen.take(rng.randint(50, 500))
            await self.post_batch(items, ndjson=rng.random() < 0.25)

        await self.paced(self.args.batch_rps / self.args.batch_workers, EVENTS, one)

    async def event_worker(self, i: int) -> None:
        rng = random.Random(self.args.seed * 2000 + i)
        gen = Sessions(self.world, self.ledger, rng, self.args.event_slots, f"e{i}")
        buf: list[tuple[int, dict[str, Any]]] = []

        async def one() -> None:
            if not buf:
                gen.step(buf)
                buf.reverse()
            n, ev = buf.pop()
            await self.post_single(n, ev)

        await self.paced(self.args.event_rps / self.args.event_workers, EVENT, one)

    # ---- reads (open loop)
    async def open_loop(
        self, rate: float, cap: int, route: str, make: Callable[[], Awaitable[Any]]
    ) -> None:
        interval = 1.0 / rate
        inflight: set[asyncio.Task] = set()
        nxt = time.perf_counter()
        while not self.stopping:
            now = time.perf_counter()
            if now - nxt > 1.0:
                self.behind[route] += int((now - nxt) / interval)
                nxt = now
            while nxt <= now:
                if len(inflight) < cap:
                    task = asyncio.create_task(make())
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                else:
                    self.behind[route] += 1
                nxt += interval
            await asyncio.sleep(max(0.002, nxt - time.perf_counter()))
        if inflight:
            await asyncio.wait(inflight, timeout=60)

    def neighbors_request(self) -> Awaitable[Any]:
        rng = self.rng
        r = rng.random()
        tid = str(uuid.uuid4()) if r < 0.05 else self.world.ids[self.world.popular(rng)]
        query = f"?limit={rng.choice((10, 10, 20, 50))}"
        if rng.random() < 0.1:
            query += "&direction=both"
        return self.call(NEIGHBORS, "GET", f"/tracks/{tid}/gravity_neighbors{query}")

    def rank_request(self) -> Awaitable[Any]:
        body = self.rank_bodies[self.rng.randrange(len(self.rank_bodies))]
        return self.call(RANK, "POST", "/rank", body, JSON)

    # ---- periodic
    async def every(self, period: float, fn: Callable[[], Awaitable[None]]) -> None:
        nxt = time.perf_counter() + period
        while not self.stopping:
            wait = nxt - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.5))
                continue
            await fn()
            nxt += period

    async def scrape(self) -> dict[str, float]:
        status, raw = await self.call(METRICS, "GET", "/metrics")
        if status == 200:
            self.last_metrics = parse_metrics(raw.decode())
        return self.last_metrics

    async def admin_snapshot(self) -> None:
        t = time.perf_counter() - self.t0
        status, raw = await self.call(SNAPSHOT, "POST", "/admin/snapshot")
        entry: dict[str, Any] = {"t": t, "status": status, "client_s": self.lat[SNAPSHOT][-1]}
        if status == 200:
            entry.update(orjson.loads(raw))
        self.snapshots_admin.append(entry)

    async def sample(self) -> None:
        t = time.perf_counter() - self.t0
        try:
            st = proc_status(self.pid)
            cpu = proc_cpu_s(self.pid)
        except OSError:
            self.daemon_died = True
            self.stopping = True
            return
        fds = open_fds(self.pid)
        status, raw = await self.call(READYZ, "GET", "/readyz")
        ready = orjson.loads(raw) if status in (200, 503) and raw else {}
        m = await self.scrape()
        me = os.times()
        s = {
            "t": round(t, 2),
            "rss_mb": st.get("VmRSS", 0) / 1024,
            "hwm_mb": st.get("VmHWM", 0) / 1024,
            "threads": st.get("Threads", 0),
            "fds": fds,
            "cpu_s": cpu,
            "client_cpu_s": me.user + me.system,
            "last_id": ready.get("last_id"),
            "cursor": ready.get("cursor"),
            "edges": ready.get("edges"),
            "nodes": ready.get("nodes"),
            "sessions": m.get("gravityd_graph_sessions"),
            "acked": sum(self.events_acked.values()),
            "load1": os.getloadavg()[0],
        }
        if s["last_id"] is not None and s["cursor"] is not None:
            s["lag"] = s["last_id"] - s["cursor"]
        self.samples.append(s)
        if self.pid_dead():
            self.daemon_died = True
            self.stopping = True

    def pid_dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    proc: subprocess.Popen | None = None

    async def loop_lag_monitor(self) -> None:
        while not self.stopping:
            t = time.perf_counter()
            await asyncio.sleep(0.05)
            self.loop_lag.append(time.perf_counter() - t - 0.05)
            self.loop_lag_t.append(t - self.t0)

    # ---- the run
    async def run(self, seconds: float) -> dict[str, Any]:
        a = self.args
        timeout = aiohttp.ClientTimeout(total=60)
        caps = {
            EVENTS: a.batch_workers,
            EVENT: a.event_workers,
            NEIGHBORS: a.inflight,
            RANK: a.inflight,
            METRICS: 2,
            READYZ: 2,
            SNAPSHOT: 1,
            FOLD: 1,
        }
        for route, cap in caps.items():
            self.sessions[route] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=cap + 2), timeout=timeout
            )
        try:
            await self.sample()
            self.t0 = time.perf_counter()
            self.wall0 = time.time()
            tasks = [asyncio.create_task(self.loop_lag_monitor())]
            tasks += [asyncio.create_task(self.batch_worker(i)) for i in range(a.batch_workers)]
            tasks += [asyncio.create_task(self.event_worker(i)) for i in range(a.event_workers)]
            tasks.append(
                asyncio.create_task(
                    self.open_loop(a.neighbors_rps, a.inflight, NEIGHBORS, self.neighbors_request)
                )
            )
            tasks.append(
                asyncio.create_task(self.open_loop(a.rank_rps, a.inflight, RANK, self.rank_request))
            )
            tasks.append(asyncio.create_task(self.every(a.sample_every, self.sample)))
            tasks.append(asyncio.create_task(self.every(a.metrics_every, self.scrape_only)))
            tasks.append(
                asyncio.create_task(self.every(a.admin_snapshot_every, self.admin_snapshot))
            )
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline and not self.stopping:
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.perf_counter())))
            self.stopping = True
            load_s = time.perf_counter() - self.t0
            _, pending = await asyncio.wait(tasks, timeout=90)
            for task in pending:
                task.cancel()
            drained_s = time.perf_counter() - self.t0 - load_s
            end: dict[str, Any] = {"load_s": load_s, "drain_s": drained_s}
            if self.daemon_died:
                return end
            self.stopping = False  # the final readings below are recorded like any request
            await self.sample()
            status, raw = await self.call(READYZ, "GET", "/readyz")
            before = orjson.loads(raw) if raw else {}
            end["before_fold"] = before
            status, raw = await self.call(FOLD, "POST", "/admin/fold")
            end["fold_status"] = status
            end["fold"] = orjson.loads(raw) if status == 200 else {}
            end["fold_client_s"] = self.lat[FOLD][-1]
            end["metrics"] = await self.scrape()
            self.stopping = True
            return end
        finally:
            for sess in self.sessions.values():
                await sess.close()

    async def scrape_only(self) -> None:
        await self.scrape()


# --------------------------------------------------------------------------- the check


def check_log(db: Path, ledger: Ledger) -> dict[str, Any]:
    """Every acknowledged event_id exactly once, nothing we never sent, ids as answered."""
    counts = bytearray(len(ledger.state))
    prefix = ledger.prefix
    plen = len(prefix)
    foreign = rows = id_mismatch = 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for row_id, event_id in conn.execute("SELECT id, event_id FROM events"):
            rows += 1
            if not event_id.startswith(prefix):
                foreign += 1
                continue
            try:
                n = int(event_id[plen:])
            except ValueError:
                foreign += 1
                continue
            if not 0 <= n < len(counts):
                foreign += 1
                continue
            if counts[n] < 255:
                counts[n] += 1
            want = ledger.ids[n]
            if want and want != row_id:
                id_mismatch += 1
    finally:
        conn.close()
    fate: Counter = Counter()
    for state, count in zip(ledger.state, counts, strict=True):
        fate[(state, min(count, 2))] += 1
    out = {
        "rows": rows,
        "generated": len(ledger.state),
        "acked": sum(v for (s, _), v in fate.items() if s == ACKED),
        "acked_present_once": fate[(ACKED, 1)],
        "lost": fate[(ACKED, 0)],
        "duplicated": sum(v for (_, c), v in fate.items() if c >= 2),
        "unknown_present": fate[(UNKNOWN, 1)] + fate[(UNKNOWN, 2)],
        "unknown_absent": fate[(UNKNOWN, 0)],
        "rejected_present": fate[(REJECTED, 1)] + fate[(REJECTED, 2)],
        "rejected_absent": fate[(REJECTED, 0)],
        "never_sent_present": fate[(UNSENT, 1)] + fate[(UNSENT, 2)],
        "never_sent": fate[(UNSENT, 0)],
        "foreign_rows": foreign,
        "single_id_mismatch": id_mismatch,
    }
    return out


# --------------------------------------------------------------------------- the report


def fmt_ms(x: float) -> str:
    return "-" if x != x else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def status_str(c: Counter) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))) or "-"


def slope_mb_per_h(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    if not var:
        return math.nan
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var * 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
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


def report(
    soak: Soak,
    args: argparse.Namespace,
    end: dict[str, Any],
    shutdown: dict[str, Any],
    entries: list[dict[str, Any]],
    alerts: list[str],
    check: dict[str, Any],
    db_mb: float,
    window: float,
    started: float,
) -> None:
    load_s = end["load_s"]
    out: dict[str, Any] = {"args": vars(args), "load_s": load_s}
    print()
    print(
        f"== gravityd soak: {load_s:.0f} s of load, catalogue {args.tracks:,} tracks,"
        f" snapshot interval {args.snapshot_interval:g} s, session timeout"
        f" {args.session_timeout:g} s, synchronous={args.synchronous} =="
    )
    # ---- routes
    print(
        f"{'route':<22}{'count':>9}{'req/s':>9}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}  status counts"
    )
    routes: dict[str, Any] = {}
    in_load = {}
    for r in ROUTES:
        lat = soak.lat[r]
        if not lat:
            continue
        s = lat_summary(lat)
        in_load[r] = sum(1 for t in soak.start[r] if t <= load_s)
        rps = in_load[r] / load_s
        ev = soak.events_acked.get(r, 0) / load_s if r in (EVENTS, EVENT) else math.nan
        if r in (EVENTS, EVENT):
            ev = (soak.events_acked.get(r, 0) + soak.events_acked.get(r + " retry", 0)) / load_s
        codes = {str(k): v for k, v in soak.status[r].items()}
        routes[r] = {**s, "rps": rps, "events_s": ev, "status": codes}
        evs = f"{ev:>10,.0f}" if ev == ev else f"{'':>10}"
        print(
            f"{r:<22}{s['count']:>9,}{rps:>9.1f}{evs}{fmt_ms(s['p50']):>9}{fmt_ms(s['p99']):>9}"
            f"{fmt_ms(s['max']):>9}  {status_str(soak.status[r])}"
        )
    out["routes"] = routes
    behind = dict(soak.behind)
    lag = lat_summary(soak.loop_lag)
    samples = soak.samples
    if len(samples) >= 2:
        a, b = samples[0], samples[-1]
        dt = b["t"] - a["t"] or 1
        cpu_d = (b["cpu_s"] - a["cpu_s"]) / dt
        cpu_c = (b["client_cpu_s"] - a["client_cpu_s"]) / dt
    else:
        cpu_d = cpu_c = math.nan
    print(
        f"client: loop lag p99 {fmt_ms(lag['p99'])} ms max {fmt_ms(lag['max'])} ms;"
        f" CPU daemon {cpu_d:.0%} client {cpu_c:.0%} of one core;"
        f" slots missed/dropped by the load generator {behind or 0}"
    )
    total_acked = sum(soak.events_acked.values())
    dc = soak.dup_checks
    print(
        f"events acknowledged {total_acked:,} ({total_acked / load_s:,.0f}/s);"
        f" duplicate deliveries answered right: batches {dc['batch_ok']}"
        f"/{dc['batch_ok'] + dc['batch_wrong']}, single"
        f" {dc['single_ok']}/{dc['single_ok'] + dc['single_wrong']}"
    )
    out["client"] = {
        "loop_lag_ms": lag,
        "cpu_daemon": cpu_d,
        "cpu_client": cpu_c,
        "behind": behind,
        "acked": total_acked,
        "dup_checks": dict(soak.dup_checks),
    }

    # ---- server-side view of statuses
    srv = server_requests(end.get("metrics") or soak.last_metrics)
    # The starter polls /readyz until it answers 200: a 503 before that is the wait, not a fault.
    srv_5xx = {
        r: {k: v for k, v in c.items() if k.startswith("5") and not (r == READYZ and k == "503")}
        for r, c in srv.items()
    }
    srv_5xx = {r: c for r, c in srv_5xx.items() if c}
    print(
        "server /metrics request counts: "
        + "; ".join(f"{r} {status_str(c)}" for r, c in sorted(srv.items()))
    )
    out["server_requests"] = {r: dict(c) for r, c in srv.items()}
    sq = server_quantiles(end.get("metrics") or soak.last_metrics)
    print(
        "server-side latency, from its histogram (p50 / p99 bucket bounds, ms): "
        + "; ".join(f"{r} {v['p50']:g} / {v['p99']:g}" for r, v in sorted(sq.items()))
    )
    out["server_latency_ms"] = sq

    # ---- timeline
    snaps_log = [e for e in entries if e.get("msg") == "snapshot written"]
    admin_paths = {s.get("path") for s in soak.snapshots_admin}
    snap_rows = []
    for e in snaps_log:
        t_end = log_time(e) - soak.wall0
        kind = (
            "admin"
            if e.get("path") in admin_paths
            else ("shutdown" if t_end > load_s + 1 else "periodic")
        )
        snap_rows.append(
            {
                "t_end": t_end,
                "seconds": float(e.get("seconds", math.nan)),
                "kind": kind,
                "bytes": e.get("bytes"),
                "edges": e.get("edges"),
                "cursor": e.get("cursor"),
            }
        )
    windows = [(r["t_end"] - r["seconds"] - 0.05, r["t_end"] + 0.05) for r in snap_rows]
    print()
    print(
        f"per {window:g} s window (p99 ms; req/s; ev/s from the samples; cli lag: the load"
        " generator's own worst event-loop stall, which inflates the latencies it measures):"
    )
    head = f"{'t s':>6}{'ev/s':>8}{'/events':>9}{'/event':>8}{'nbr/s':>7}{'nbrs':>7}{'nbr max':>8}"
    head += f"{'rank/s':>7}{'rank':>7}{'rankmax':>8}{'RSS MB':>8}{'edges':>9}{'snaps':>6}"
    head += f"{'cli lag':>8}"
    print(head)
    timeline = []
    nwin = max(1, round(load_s / window))
    for w in range(nwin):
        lo, hi = w * window, load_s if w == nwin - 1 else (w + 1) * window
        row: dict[str, Any] = {"t": hi}
        for r in (EVENTS, EVENT, NEIGHBORS, RANK):
            vals = [x for t, x in zip(soak.start[r], soak.lat[r], strict=True) if lo <= t < hi]
            row[r] = {"n": len(vals), "p99": pct(vals, 0.99) * 1e3, "max": max(vals or [0]) * 1e3}
        acked = [s for s in samples if lo <= s["t"] <= hi + 1]
        row["rss_mb"] = acked[-1]["rss_mb"] if acked else math.nan
        row["edges"] = acked[-1]["edges"] if acked else None
        row["snaps"] = sum(1 for s in snap_rows if lo <= s["t_end"] < hi)
        lags = [x for t, x in zip(soak.loop_lag_t, soak.loop_lag, strict=True) if lo <= t < hi]
        row["client_lag_max"] = max(lags or [0]) * 1e3
        ev_in = [s for s in samples if s["t"] <= hi + 0.5]
        ev_lo = [s for s in samples if s["t"] <= lo + 0.5]
        row["ev_s"] = (
            (ev_in[-1]["acked"] - (ev_lo[-1]["acked"] if ev_lo else 0))
            / max(1e-9, (ev_in[-1]["t"] - (ev_lo[-1]["t"] if ev_lo else 0)))
            if ev_in
            else math.nan
        )
        timeline.append(row)
        span = hi - lo or 1
        print(
            f"{hi:>6.0f}{row['ev_s']:>8,.0f}{fmt_ms(row[EVENTS]['p99']):>9}"
            f"{fmt_ms(row[EVENT]['p99']):>8}{row[NEIGHBORS]['n'] / span:>7.0f}"
            f"{fmt_ms(row[NEIGHBORS]['p99']):>7}{fmt_ms(row[NEIGHBORS]['max']):>8}"
            f"{row[RANK]['n'] / span:>7.1f}{fmt_ms(row[RANK]['p99']):>7}"
            f"{fmt_ms(row[RANK]['max']):>8}{row['rss_mb']:>8.1f}{row['edges'] or 0:>9,}"
            f"{row['snaps']:>6}{fmt_ms(row['client_lag_max']):>8}"
        )
    out["timeline"] = timeline

    # ---- during snapshots
    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    print()
    print("latency of requests started during a snapshot vs the rest (p50 / p99 / max ms, count):")
    during = {}
    for r in (EVENTS, EVENT, NEIGHBORS, RANK):
        ins, outs = [], []
        for t, x in zip(soak.start[r], soak.lat[r], strict=True):
            (ins if inside(t) else outs).append(x)
        a, b = lat_summary(ins), lat_summary(outs)
        during[r] = {"during": a, "outside": b}
        print(
            f"  {r:<16} during {fmt_ms(a['p50'])} / {fmt_ms(a['p99'])} / {fmt_ms(a['max'])}"
            f" ({a['count']:,})   outside {fmt_ms(b['p50'])} / {fmt_ms(b['p99'])} /"
            f" {fmt_ms(b['max'])} ({b['count']:,})"
        )
    out["during_snapshots"] = during

    # ---- snapshots
    print()
    durs = [s["seconds"] for s in snap_rows if s["kind"] != "shutdown"]
    print(
        f"snapshots during the load: {len(durs)} (periodic"
        f" {sum(1 for s in snap_rows if s['kind'] == 'periodic')}, admin"
        f" {sum(1 for s in snap_rows if s['kind'] == 'admin')}); duration min/median/max"
        f" {min(durs or [math.nan]):.3f} / {pct(durs, 0.5):.3f} / {max(durs or [math.nan]):.3f} s"
    )
    for s in snap_rows:
        mb = (s["bytes"] or 0) / 1e6
        print(
            f"  t={s['t_end']:>7.1f} s  {s['kind']:<8} {s['seconds']:.3f} s  {mb:.1f} MB"
            f"  edges {s['edges'] or 0:,}  cursor {s['cursor'] or 0:,}"
        )
    bad_admin = [s for s in soak.snapshots_admin if s["status"] != 200]
    if bad_admin:
        print(f"  admin snapshot requests that failed: {bad_admin}")
    m = end.get("metrics") or soak.last_metrics
    print(
        f"  /metrics: gravityd_snapshot_seconds count"
        f" {m.get('gravityd_snapshot_seconds_count', 0):.0f}"
        f" sum {m.get('gravityd_snapshot_seconds_sum', 0):.2f} s,"
        f" snapshot errors {m.get('gravityd_snapshot_errors_total', 0):.0f},"
        f" fold errors {m.get('gravityd_fold_errors_total', 0):.0f},"
        f" commit errors {m.get('gravityd_commit_errors_total', 0):.0f}"
    )
    out["snapshots"] = snap_rows
    out["admin_snapshots"] = soak.snapshots_admin

    # ---- RSS and the rest of the samples
    print()
    print("samples (daemon):")
    print(
        f"{'t s':>7}{'RSS MB':>8}{'threads':>8}{'fds':>5}{'CPU%':>6}{'last_id':>11}{'lag':>8}"
        f"{'edges':>9}{'nodes':>7}{'sessions':>9}{'load1':>7}"
    )
    prev = None
    for s in samples:
        cpu = ((s["cpu_s"] - prev["cpu_s"]) / max(1e-9, s["t"] - prev["t"])) if prev else math.nan
        prev = s
        print(
            f"{s['t']:>7.0f}{s['rss_mb']:>8.1f}{s['threads']:>8}{s['fds']:>5}"
            f"{cpu * 100:>6.0f}{s['last_id'] or 0:>11,}{s.get('lag', 0):>8,}"
            f"{s['edges'] or 0:>9,}{s['nodes'] or 0:>7,}{int(s['sessions'] or 0):>9,}"
            f"{s['load1']:>7.2f}"
        )
    out["samples"] = samples
    rss_growth: dict[str, Any] = {}
    during_load = [s for s in samples if s["t"] <= load_s + 1]
    if during_load:
        first, last = during_load[0], during_load[-1]
        base = next((s for s in during_load if s["t"] >= load_s / 3), last)
        edges_final = last["edges"] or 0
        plateau = next(
            (s["t"] for s in during_load if (s["edges"] or 0) >= 0.98 * edges_final), math.nan
        )
        after = [(s["t"], s["rss_mb"]) for s in during_load if s["t"] >= base["t"]]
        rss_growth = {
            "start_mb": first["rss_mb"],
            "end_mb": last["rss_mb"],
            "max_mb": max(s["rss_mb"] for s in samples),
            "hwm_mb": samples[-1]["hwm_mb"],
            "base_t": base["t"],
            "base_mb": base["rss_mb"],
            "growth_mb": last["rss_mb"] - base["rss_mb"],
            "slope_mb_per_h": slope_mb_per_h(after),
            "edges_plateau_t": plateau,
            "edges_end": edges_final,
            "sessions_end": last["sessions"],
            "edges_growth": (last["edges"] or 0) - (base["edges"] or 0),
        }
        edge_mb = rss_growth["edges_growth"] * 300 / 1e6
        print(
            f"RSS: start {first['rss_mb']:.1f} MB, end {last['rss_mb']:.1f} MB, max"
            f" {rss_growth['max_mb']:.1f} MB (VmHWM {rss_growth['hwm_mb']:.1f} MB); from"
            f" t={base['t']:.0f} s ({base['rss_mb']:.1f} MB) to the end: growth"
            f" {rss_growth['growth_mb']:+.1f} MB, fit slope {rss_growth['slope_mb_per_h']:+.1f}"
            f" MB/h; edges reached 98 % of their final {edges_final:,} at t={plateau:.0f} s and"
            f" grew {rss_growth['edges_growth']:+,} over the same span (~{edge_mb:.1f} MB at the"
            f" README's 300 B/edge), open sessions {base['sessions'] or 0:,.0f} ->"
            f" {last['sessions'] or 0:,.0f}"
        )
    out["rss"] = rss_growth

    # ---- fold lag and the end
    lags = [s.get("lag", 0) for s in during_load]
    before = end.get("before_fold", {})
    fold = end.get("fold", {})
    end_lag = (before.get("last_id", 0) or 0) - (before.get("cursor", 0) or 0)
    print(
        f"fold lag: max {max(lags or [0]):,} events over the samples; at the end of the load"
        f" {end_lag:,} events; POST /admin/fold -> {end.get('fold_status')} cursor"
        f" {fold.get('cursor', 0):,} in {end.get('fold_client_s', math.nan) * 1e3:.1f} ms"
        f" (last_id {fold.get('last_id', 0):,})"
    )
    killed = " (killed after the wait)" if shutdown.get("killed") else ""
    print(
        f"daemon stopped (SIGTERM) in {shutdown.get('seconds', math.nan):.2f} s, exit code"
        f" {shutdown.get('returncode')}{killed};"
        f" log + WAL {db_mb:.0f} MB; {len(alerts)} daemon log lines at warning or above"
    )
    for line in alerts[:10]:
        print("  | " + line[:300])
    out["fold"] = {
        "end_lag": end_lag,
        "max_lag": max(lags or [0]),
        "fold": fold,
        "fold_status": end.get("fold_status"),
    }
    out["shutdown"] = shutdown
    out["daemon_alerts"] = alerts[:100]

    # ---- correctness
    print()
    if check:
        print(
            f"log check: {check['rows']:,} rows; acknowledged {check['acked']:,}, present once"
            f" {check['acked_present_once']:,}; lost {check['lost']}, duplicated"
            f" {check['duplicated']}; failed requests' events present {check['unknown_present']}"
            f" / absent {check['unknown_absent']}; rejected present {check['rejected_present']};"
            f" never-sent present {check['never_sent_present']}; foreign rows"
            f" {check['foreign_rows']}; single-event id mismatches {check['single_id_mismatch']}"
        )
    out["check"] = check
    client_5xx = {
        r: {str(k): v for k, v in c.items() if isinstance(k, int) and k >= 500}
        for r, c in soak.status.items()
    }
    client_5xx = {r: c for r, c in client_5xx.items() if c}
    failures = []
    if not check:
        failures.append("no log to check")
    else:
        for key in (
            "lost",
            "duplicated",
            "rejected_present",
            "never_sent_present",
            "foreign_rows",
            "single_id_mismatch",
        ):
            if check[key]:
                failures.append(f"{key} {check[key]}")
    if client_5xx:
        failures.append(f"5xx answers {client_5xx}")
    if srv_5xx:
        failures.append(f"5xx in /metrics {srv_5xx}")
    if soak.daemon_died:
        failures.append("the daemon died during the run")
    if soak.dup_checks["batch_wrong"] or soak.dup_checks["single_wrong"]:
        failures.append(f"duplicate deliveries answered wrong {dict(soak.dup_checks)}")
    out["failures"] = failures
    out["total_s"] = time.perf_counter() - started
    print(
        (
            "CORRECTNESS: OK (lost 0, duplicated 0, no 5xx)"
            if not failures
            else "CORRECTNESS: FAILED: " + "; ".join(failures)
        )
        + f"; total {out['total_s']:.0f} s"
    )
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
        )
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
