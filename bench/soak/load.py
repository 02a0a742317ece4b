"""The load: one asyncio client driving paced ingest (retries and deliberate duplicate
deliveries included), open-loop reads and periodic scrapes and snapshots, timing every request."""

from __future__ import annotations

import argparse
import array
import asyncio
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from .probes import open_fds, parse_metrics, proc_cpu_s, proc_status
from .world import (
    ACKED,
    EVENT,
    EVENT_DUP,
    EVENT_RETRY,
    EVENTS,
    EVENTS_DUP,
    EVENTS_RETRY,
    FOLD,
    JSON,
    METRICS,
    NDJSON,
    NEIGHBORS,
    RANK,
    READYZ,
    REJECTED,
    ROUTES,
    SNAPSHOT,
    UNKNOWN,
    Ledger,
    Sessions,
    World,
    rank_bodies,
)


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
