"""The daemon's core: the log, the live graph and the task that folds one into the other.

One class for the three roles (docs/design.md, "Roles"): `all` appends, folds, snapshots and
serves; `writer` only appends (no graph, no fold); `replica` opens the log read-only, starts
from the newest snapshot, tails the log and serves every read. Which process writes snapshots
is decided by the snapshotter lease (gravityd/snapshots/lease.py). Nothing here knows about
HTTP; the API layer parses requests and calls these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from gravityd.config import Config
from gravityd.core import takedowns
from gravityd.core.events import ValidEvent
from gravityd.core.graph import GravityGraph
from gravityd.core.ranking import RankRequest, rank_pool
from gravityd.core.scoreboard import ReportQuery, Scoreboard, snapshot_records
from gravityd.core.session_index import SessionIndex
from gravityd.core.takedowns import Blocks
from gravityd.daemon.galaxies import SNAPSHOT_PART as GALAXIES_PART
from gravityd.daemon.galaxies import GalaxyKeeper, ServedLanes
from gravityd.daemon.metrics import Metrics
from gravityd.daemon.reads import LaneKeeper
from gravityd.log import Appended, EventLog, LogError, LogMissing, NotALog
from gravityd.log.open import open_log
from gravityd.snapshots.files import (
    Found,
    SnapshotInfo,
    SnapshotWriter,
    iter_edge_rows,
    list_snapshots,
    load_newest,
    parse_name,
    prune,
    skip_reason,
)
from gravityd.snapshots.lease import SnapshotLease
from gravityd.snapshots.state import State

log = logging.getLogger("gravityd.service")

TOP_TRACKS_TTL_S = 10.0
LOOP_WATCH_S = 0.1  # how often the event loop's lateness is sampled
CATALOG_COUNT_TTL_S = 10.0
LOG_WAIT_S = 0.5  # how often a replica looks for a log that does not exist yet


class NotSnapshotter(Exception):
    """Another process holds the snapshotter lease: this one never writes snapshots."""


LOG_RETRY_MAX_S = 30.0  # the longest wait between two tries of an unreachable log


def settle_memory() -> None:
    """Collect once, then move everything alive out of the collector's sight (gc.freeze).

    A loaded graph is millions of long-lived containers; a full collection walks all of them,
    stalling every request for as long (docs/reads.md has the measurement). Frozen objects are
    still freed by reference counting when the fold drops them; only cycles among them would
    outlive their use, and the graph makes none.
    """
    gc.collect()
    gc.freeze()


class RateMeter:
    """Events per second over the last `window` whole seconds, in one-second buckets."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._buckets: dict[int, int] = {}

    def add(self, n: int, now: float | None = None) -> None:
        sec = int(time.monotonic() if now is None else now)
        self._buckets[sec] = self._buckets.get(sec, 0) + n
        if len(self._buckets) > self.window + 2:
            for k in [k for k in self._buckets if k < sec - self.window]:
                del self._buckets[k]

    def rate(self, now: float | None = None) -> float:
        sec = int(time.monotonic() if now is None else now)
        # The current second is still filling: count the `window` seconds before it.
        total = sum(n for k, n in self._buckets.items() if sec - self.window <= k < sec)
        return total / self.window


class Gravityd:
    """One process: accepts events into the log, folds them into the graph, serves reads."""

    def __init__(self, config: Config, metrics: Metrics | None = None, worker: int = 0) -> None:
        self.config = config
        self.worker = worker  # this process's index under a --workers supervisor (0 alone)
        self.role = config.role
        self.writes = self.role in ("all", "writer")  # appends to the log
        self.reads = self.role in ("all", "replica")  # holds a graph, folds, serves reads
        self.metrics = metrics or Metrics()
        opened = open_log(config, self.metrics.registry)
        self.log: EventLog = opened.log
        # What is not the log's job, from the same backend (gravityd.log.open).
        self.catalog = opened.catalog
        self.blocks_in_force = opened.blocks_in_force
        self.publisher = opened.publisher
        self.retention = opened.retention
        self.remote_snapshots = opened.remote_snapshots
        self.remote_log = opened.remote  # unreachable is retried, not fatal
        self.graph = GravityGraph(config.graph)
        self.scoreboard = Scoreboard(config.report)  # fed the same rows as the graph
        self.sessions = SessionIndex.for_fold(config.graph)  # session neighbours for /rank
        self.lanes = LaneKeeper(config, self.metrics, self.graph)  # what neighbors reads serve
        # Galaxies and routes: computed in a worker process from the served lanes.
        self.galaxies = GalaxyKeeper(
            config.galaxies,
            ServedLanes(lambda: self.graph.tracks(), self._out_lanes),
            on_computed=self._galaxies_computed,
            on_failed=self.metrics.galaxies_errors.inc,
        )
        self.lease = SnapshotLease(config.snapshot_dir)
        self.fatal: str | None = None  # set when the process must stop (a log that is not ours)
        self.failed = asyncio.Event()
        self.blocks = Blocks()  # takedowns, folded from the log beside the graph
        self.ready = False
        self._ready_event = asyncio.Event()
        self._ready_target = 0
        self._fold_lock = asyncio.Lock()
        self._fold_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._snapshot_lock = asyncio.Lock()
        self._snapshot_pending = False  # a takedown's snapshot is queued
        self._loaded = asyncio.Event()  # set once the start-up snapshot (if any) is in place
        self._last_snapshot: tuple[float, int] = (0.0, 0)  # (written at, cursor)
        self._closing = False
        self.started_at = time.time()
        self._rate = RateMeter()
        self._top: tuple[float, list[str], int] = (-1e9, [], 0)  # (computed at, ids, how many)
        self._catalog: tuple[float, int] = (-1e9, 0)  # (counted at, tracks in the catalogue)
        # Resolved (and replaced) after every fold batch: what min_cursor readers wait on.
        self._advanced: asyncio.Future[None] | None = None
        self._urgent = asyncio.Event()  # a min_cursor read waits: fold without gathering
        self.log.on_commit = self._on_commit
        self.log.on_commit_error = self.metrics.commit_errors.inc
        m = self.metrics
        m.info.labels(self.role, str(worker)).set(1)
        m.log_last_id.set_function(lambda: self.log.last_id)
        m.ready.set_function(lambda: 1 if self.ready else 0)
        if self.reads:
            m.fold_lag_events.set_function(
                lambda: max(0, self.log.last_id - max(self.graph.cursor, self.log.reserved))
            )
            m.fold_lag_seconds.set_function(lambda: self.log.lag_seconds(self.graph.cursor))
            m.graph_nodes.set_function(lambda: self.graph.node_count)
            m.graph_edges.set_function(lambda: self.graph.edge_count)
            m.graph_sessions.set_function(lambda: len(self.graph.sessions))
            m.cursor.set_function(lambda: self.graph.cursor)
            m.snapshot_age.set_function(self.snapshot_age)
            m.snapshotter.set_function(lambda: 1 if self.lease.held else 0)
        m.blocked_tracks.set_function(lambda: len(self.blocks))

    async def start(self) -> None:
        """A writer opens a local log now (ingest works from here on; a file that cannot be
        opened fails the start). A log over the network, and a replica's, is opened in the
        background, retried while it cannot be had: ingest answers 503 and /readyz 503 until
        then. The graph is loaded and caught up in the background."""
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="gravityd-loop-lag"))
        if self.role == "writer":
            if self.remote_log:
                self._tasks.append(asyncio.create_task(self._writer_open(), name="gravityd-open"))
            else:
                await self._open_log()
                self._writer_ready()
            return
        if self.writes and not self.remote_log:
            await self._open_log()
        self._fold_task = asyncio.create_task(self._run(), name="gravityd-fold")

    async def _open_log(self) -> None:
        # A restored snapshot's cursor is recorded in the log, so ids continue after it; the
        # snapshot folder's other files say nothing about this log (they may be another's).
        await self.log.open()
        if self.role == "writer":
            # No fold here: the takedowns in force come from the log itself, so a PUT can say
            # whether it changed anything.
            for track_id, position, at in await self.blocks_in_force.current_blocks():
                self.blocks.apply(track_id, True, position, at)
        self._ready_target = self.log.last_id
        log.info(
            "log opened",
            extra={"log": self.log.description, "role": self.role, "last_id": self.log.last_id},
        )

    async def _writer_open(self) -> None:
        if await self._wait_for_log():
            self._writer_ready()

    def _writer_ready(self) -> None:
        self.ready = True
        self._ready_event.set()
        self._tasks.append(asyncio.create_task(self._retain_loop(), name="gravityd-retain"))

    async def _wait_for_log(self) -> bool:
        """A replica started before its writer, or a log over the network that is down: one
        line per reason, then look again (every LOG_WAIT_S; for an unreachable network log,
        backing off to LOG_RETRY_MAX_S). A store that is not a gravityd log stops the process
        (`fatal`), as does a local file that cannot be opened."""
        said = ""
        delay = LOG_WAIT_S
        while not self._closing:
            try:
                await self._open_log()
                return True
            except LogMissing as exc:
                reason, delay = str(exc), LOG_WAIT_S
            except NotALog as exc:
                return self._fatal(exc)
            except LogError as exc:
                if not self.remote_log:
                    return self._fatal(exc)
                reason, delay = str(exc), min(LOG_RETRY_MAX_S, delay * 2)
            if reason != said:
                log.warning(
                    "waiting for the log", extra={"log": self.log.description, "reason": reason}
                )
                said = reason
            await asyncio.sleep(delay)
        return False

    def _fatal(self, exc: Exception) -> bool:
        self.fatal = str(exc)
        log.error("cannot use the log", extra={"error": str(exc)})
        self.failed.set()
        return False

    async def _run(self) -> None:
        """Open the log, then load the snapshot that belongs to it, then fold: which snapshot
        may be loaded depends on the log's identity and end."""
        self._tasks.append(asyncio.create_task(self.lanes.run(), name="gravityd-lanes"))
        try:
            if (not self.writes or self.remote_log) and not await self._wait_for_log():
                return
            await self._load_snapshot()
        finally:
            self._loaded.set()
        self.lease.try_acquire()
        tasks = [asyncio.create_task(self._snapshot_loop(), name="gravityd-snapshots")]
        self._tasks.extend(tasks)
        await self._fold_loop()

    async def _watch_loop(self, period: float = LOOP_WATCH_S) -> None:
        """How late the event loop wakes a sleeper: the queueing every request pays before its
        handler starts, which the per-route latency histograms cannot see."""
        loop = asyncio.get_running_loop()
        observe = self.metrics.loop_lag.observe
        while not self._closing:
            due = loop.time() + period
            await asyncio.sleep(period)
            observe(max(0.0, loop.time() - due))

    async def _load_snapshot(self) -> None:
        """The newest snapshot of this log whose cursor lies within it (else one from the
        object store, else none: replay), loaded off the event loop so ingest goes on."""
        started = time.perf_counter()
        identity = self.log.identity
        end = max(self.log.last_id, identity.claimed if identity is not None else 0)
        cfg = self.config
        found = await asyncio.to_thread(load_newest, cfg.snapshot_dir, cfg.graph, identity, end)
        if found is None and self.remote_snapshots is not None:
            found = await self._fetch_snapshot(identity, end)
        if found is None:
            log.info("no snapshot: replaying the whole log", extra={"log_end": end})
            return
        gc.freeze()  # keep full collections off the loaded graph: they stall requests
        state = State.from_found(found, cfg.report)
        self.graph, self.blocks, self.scoreboard = state.graph, state.blocks, state.scoreboard
        self.sessions = state.sessions
        carried = found.header["parts"].get(GALAXIES_PART)
        if carried:  # served at once: no wait for the first computation
            try:
                self.galaxies.adopt(carried[-1])
                self._galaxies_computed(0.0, self.galaxies.current.count, observe=False)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("snapshot galaxies skipped", extra={"error": str(exc)})
        self._last_snapshot = (found.header["created_at"], state.cursor)
        log.info(
            "snapshot loaded",
            extra={
                "path": str(found.info.path),
                "cursor": state.cursor,
                "edges": state.graph.edge_count,
                "origin": found.header.get("origin"),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    async def _fetch_snapshot(self, identity: Any, end: int) -> Found | None:
        """No usable local snapshot: the newest usable one of the log's object store."""
        assert self.remote_snapshots is not None
        cfg = self.config

        def accept(header: dict[str, Any]) -> str | None:
            return skip_reason(header, identity, end)

        try:
            got = await self.remote_snapshots.fetch_newest(cfg.snapshot_dir, cfg.graph, accept)
        except LogError as exc:
            log.warning("no snapshot from the object store", extra={"error": str(exc)})
            return None
        if got is None:
            return None
        path, header, graph = got
        seq, cursor = parse_name(path.name) or (0, graph.cursor)
        return Found(SnapshotInfo(path, seq, cursor), header, graph)

    async def ingest(self, events: list[ValidEvent], received_at: float) -> list[Appended]:
        """Make events durable; raise LogError when the log cannot take them."""
        out = await self.log.append(events, received_at)
        dups = sum(1 for a in out if a.duplicate)
        if dups:
            self.metrics.events_duplicate.inc(dups)
        return out

    def _on_commit(self, new: int, seconds: float) -> None:
        m = self.metrics
        if new:
            self._rate.add(new)
            m.events_accepted.inc(new)
            m.commit_batch.observe(new)
        m.commit_seconds.observe(seconds)

    def reject(self, reason: str, count: int = 1) -> None:
        self.metrics.events_rejected.labels(reason).inc(count)

    async def fold_pending(self, refresh: bool = True) -> int:
        """Fold every event committed before this call; return the cursor reached. With
        `refresh` (POST /admin/fold), also refresh every lane the fold touched before returning.

        Waits for the snapshot to be loaded first: folding into the empty start-up graph would
        be thrown away with it.
        """
        await self._loaded.wait()
        target = await self.log.refresh()
        while self.graph.cursor < target:
            if not await self._fold_batch():
                break  # nothing left to read (ids reserved past the end of the log)
        if refresh:
            self.lanes.attach(self.graph)
            await self.lanes.drain()
        await self._check_ready()
        return self.graph.cursor

    async def wait_ready(self) -> None:
        """Return once the graph has caught up with the log as it was at start (or the
        process must stop: `failed`)."""
        ready = asyncio.ensure_future(self._ready_event.wait())
        failed = asyncio.ensure_future(self.failed.wait())
        try:
            await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            failed.cancel()

    async def _check_ready(self) -> None:
        """Ready once caught up, and only with every lane computed: the first read is as fast
        as any (docs/reads.md)."""
        if self.ready or self.graph.cursor < self._ready_target:
            return
        self.lanes.attach(self.graph)
        await self.lanes.drain()
        if self.ready:
            return  # a concurrent fold_pending got there first
        settle_memory()
        self.ready = True
        self._ready_event.set()
        self._tasks.append(
            asyncio.create_task(
                self.galaxies.run(lambda: self.read_cursor), name="gravityd-galaxies"
            )
        )
        log.info(
            "graph ready",
            extra={
                "cursor": self.graph.cursor,
                "edges": self.graph.edge_count,
                "seconds": round(time.time() - self.started_at, 3),
            },
        )

    async def _fold_batch(self) -> int:
        """Read one batch and fold it in slices of a few ms, yielding to requests in between.

        The fold's result does not depend on where batches or slices end, so slicing costs
        nothing but the yields.
        """
        step = self.config.fold_slice_events
        async with self._fold_lock:
            events, bad = await self.log.read_after(
                self.graph.cursor, self.config.fold_batch_events
            )
            if bad:
                self._report_skipped(bad)
            if self.blocks.fold(events) and not self.writes:
                # A takedown PUT on the writer: the snapshotter carries it to in-process rankers.
                self._snapshot_soon()
            if not events:
                self.graph.advance_cursor(self.log.reserved)
                self._wake_readers()
                return 0
            for i in range(0, len(events), step):
                part = events[i : i + step]
                await self.lanes.within_bound()
                reflected = self.graph.cursor
                try:
                    n = self.graph.fold(part)
                except Exception:
                    self.metrics.fold_errors.inc()
                    log.exception("fold failed", extra={"first_id": part[0][0]})
                    n = self._fold_one_by_one(part)
                self._fold_sessions(part, reflected)
                self.lanes.mark(self.graph, self.graph.take_touched(), reflected)
                self.metrics.fold_events.inc(n)
                self._fold_radio(part)
                self._wake_readers()
                await asyncio.sleep(0)  # let reads in between slices
            self.log.forget_through(self.graph.cursor)
        return len(events)

    def _fold_sessions(self, part: list, reflected: int) -> None:
        """Feed the session index the rows the graph just folded; its failure never stops the
        fold (the index only adds votes to /rank)."""
        try:
            self.sessions.fold([ev for ev in part if ev[0] > reflected])
        except Exception:
            self.metrics.fold_errors.inc()
            log.exception("session index fold failed", extra={"first_id": part[0][0]})

    # ------------------------------------------------------------------ the radio's scoreboard

    def _fold_radio(self, part: list) -> None:
        """Feed the scoreboard the rows the graph just folded; its failure never stops the fold."""
        try:
            tally = self.scoreboard.fold(part)
        except Exception:
            self.metrics.fold_errors.inc()
            log.exception("scoreboard fold failed", extra={"first_id": part[0][0]})
            tally = Counter()
            for ev in part:  # the rest of the part one by one, skipping what raises
                try:
                    tally.update(self.scoreboard.fold([ev]))
                except Exception:
                    log.error("event skipped by the scoreboard", extra={"event_id": ev[0]})
        if tally:
            self.metrics.count_radio(tally, self.config.report.report_metric_arms)

    async def radio_report(self, query: ReportQuery) -> dict[str, Any]:
        """GET /radio/report, built one arm per step so a large one never holds the loop long
        (it is the scoreboard as of one cursor even if the fold runs in between)."""
        steps = self.scoreboard.report_steps(query.since, query.until, query.bucket, query.arms)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            await asyncio.sleep(0)

    def _wake_readers(self) -> None:
        fut = self._advanced
        if fut is not None:
            self._advanced = None
            if not fut.done():
                fut.set_result(None)

    async def caught_up(self, position: int, timeout_s: float) -> bool:
        """Wait (up to timeout_s) until the graph reflects every event through `position`: read
        your writes across processes. False if it did not get there in time."""
        if self.read_cursor >= position:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not self.writes:
            # Do not wait for the next poll: the writer may have committed a moment ago.
            with contextlib.suppress(LogError):
                await self.log.refresh()
        self._urgent.set()
        while self.graph.cursor < position:
            left = deadline - loop.time()
            if left <= 0:
                return False
            if self._advanced is None:
                self._advanced = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._advanced), left)
        # Folded; the answer also needs every lane refreshed through it (docs/reads.md).
        return await self.lanes.wait_cursor(position, deadline - loop.time())

    @property
    def read_cursor(self) -> int:
        """The log position every read answer reflects: the graph's, as far as the kept lanes
        have followed it."""
        return self.lanes.attach(self.graph).cursor

    def _report_skipped(self, bad: list[tuple[int, str]]) -> None:
        """Stored rows the fold cannot trust: counted by reason, logged (the first few by id)."""
        for _, problem in bad:
            self.metrics.fold_skipped.labels(problem).inc()
        for eid, problem in bad[:10]:
            log.error("stored event skipped by the fold", extra={"id": eid, "problem": problem})
        if len(bad) > 10:
            log.error(
                "stored events skipped by the fold",
                extra={"count": len(bad), "first_id": bad[0][0], "last_id": bad[-1][0]},
            )

    def _fold_one_by_one(self, events: list) -> int:
        """Fold a failed batch event by event, skipping (and reporting) the ones that raise."""
        n = 0
        for ev in events:
            eid = ev[0]
            if eid <= self.graph.cursor:
                continue
            try:
                n += self.graph.fold([ev])
            except Exception:
                self.metrics.fold_errors.inc()
                log.error("event skipped by the fold", extra={"event_id": eid})
                self.graph.advance_cursor(eid)
        return n

    async def _fold_loop(self) -> None:
        try:
            await self.fold_pending(refresh=False)  # catch up with the log at start: ready
            interval = self.config.fold_interval_ms / 1000
            while not self._closing:
                await self.log.committed.wait()
                self.log.committed.clear()
                if interval and not self._urgent.is_set():
                    # Gather more commits into each fold, unless a min_cursor read waits.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), interval)
                self._urgent.clear()
                await self.fold_pending(refresh=False)  # the refresher keeps the lanes
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fold task died")
            raise

    async def neighbors(
        self,
        track_id: str,
        *,
        limit: int,
        direction: str,
        min_score: float,
        rejected: bool = False,
        with_meta: bool = False,
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        if self.blocks:
            lanes = self._visible_lanes(track_id, limit, direction, min_score, rejected, now)
        else:
            lanes = self.lanes.neighbors(
                self.graph,
                track_id,
                limit=limit,
                direction=direction,
                min_score=min_score,
                rejected=rejected,
                now=now,
            )
        if with_meta and lanes:
            await self._add_meta(lanes)
        return lanes

    def _visible_lanes(
        self,
        track_id: str,
        limit: int,
        direction: str,
        min_score: float,
        rejected: bool,
        now: float | None,
    ) -> list[dict[str, Any]]:
        """Lanes without blocked tracks; a blocked track itself has none."""
        if track_id in self.blocks:
            return []

        def fetch(n: int) -> list[dict[str, Any]]:
            return self.lanes.neighbors(
                self.graph,
                track_id,
                limit=n,
                direction=direction,
                min_score=0.0,
                rejected=rejected,
                now=now,
            )

        return takedowns.visible_lanes(fetch, limit, min_score, self.blocks)

    async def _add_meta(self, items: list[dict[str, Any]]) -> None:
        """Title and artist from the catalogue (None where it does not know the track)."""
        meta = await self.catalog.track_meta([it["track_id"] for it in items])
        for it in items:
            it["title"], it["artist"] = meta.get(it["track_id"], (None, None))

    async def track(self, track_id: str) -> dict[str, Any]:
        """One track as the explorer shows it: catalogue entry and how many lanes it has."""
        out_lanes, in_lanes = self.graph.lane_counts(track_id)
        galaxy, centrality = self.galaxies.of_track(track_id)
        info = {
            "track_id": track_id,
            "out_lanes": out_lanes,
            "in_lanes": in_lanes,
            "galaxy": galaxy,
            "centrality": centrality,
        }
        if track_id in self.blocks:
            info["blocked"] = True  # only then: the answer of other tracks stays as it was
        await self._add_meta([info])
        return info

    async def top_tracks(self, limit: int, by: str = "lanes") -> list[dict[str, Any]]:
        """The tracks with the most warp lanes (in and out), recomputed at most every 10 s;
        `by="centrality"`: the most central of the served galaxies (sorted once per computation).

        Counting lanes visits every edge; it runs on the loop in slices so reads keep flowing.
        An empty answer is not kept, so a fresh daemon shows tracks as soon as it has some.
        """
        if by == "centrality":
            ranked = self.galaxies.most_central(limit + len(self.blocks))
            return await self._top_items(takedowns.visible_ids(ranked, self.blocks)[:limit])
        now = time.monotonic()
        cached_at, ids, size = self._top
        want = max(limit, 20) + len(self.blocks)  # blocked ones are left out below
        if now - cached_at > TOP_TRACKS_TTL_S or not ids or size < want:
            lane_counts = self.graph.lane_counts
            nodes = self.graph.tracks()
            best: list[tuple[int, str]] = []
            for i in range(0, len(nodes), 250):  # ~1 ms of the loop per slice at 10 lanes
                for u in nodes[i : i + 250]:
                    out_lanes, in_lanes = lane_counts(u)
                    if out_lanes or in_lanes:
                        best.append((out_lanes + in_lanes, u))
                # most lanes first, ties by id (smallest first)
                best = heapq.nsmallest(want, best, key=lambda x: (-x[0], x[1]))
                await asyncio.sleep(0)
            self._top = (time.monotonic(), [u for _, u in best], want)
        items = await self._top_items(takedowns.visible_ids(self._top[1], self.blocks)[:limit])
        items.sort(key=lambda it: (-it["lanes"], it["track_id"]))
        return items

    async def _top_items(self, ids: list[str]) -> list[dict[str, Any]]:
        items = []
        for u in ids:
            out_lanes, in_lanes = self.graph.lane_counts(u)
            galaxy, centrality = self.galaxies.of_track(u)
            items.append(
                {
                    "track_id": u,
                    "lanes": out_lanes + in_lanes,
                    "out_lanes": out_lanes,
                    "in_lanes": in_lanes,
                    "galaxy": galaxy,
                    "centrality": centrality,
                }
            )
        await self._add_meta(items)
        return items

    async def stats(self) -> dict[str, Any]:
        """The explorer's live panel: rates, lag, size, snapshot age (cheap to poll)."""
        now = time.monotonic()
        if now - self._catalog[0] > CATALOG_COUNT_TTL_S:
            self._catalog = (now, await self.catalog.catalog_size())
        age = self.snapshot_age()
        return {
            **self.status(),
            "fold_lag": max(0, self.log.last_id - self.graph.cursor),
            "fold_lag_seconds": round(self.log.lag_seconds(self.graph.cursor), 3),
            "events_per_s": round(self._rate.rate(), 1),
            "snapshot_age_s": None if age != age else round(age, 1),
            "catalog_tracks": self._catalog[1],
            **self.lanes.stats(),
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def rank(self, req: RankRequest) -> list[dict[str, Any]]:
        """POST /rank: the same function the radio runs in-process, on the live graph."""
        if self.blocks:
            req = req._replace(
                candidate_track_ids=takedowns.visible_ids(req.candidate_track_ids, self.blocks)
            )
        return rank_pool(
            **req._asdict(), graph=self.graph, params=self.config.rank, sessions=self.sessions
        )

    # ------------------------------------------------------------------ takedowns

    async def set_block(self, track_id: str, blocked: bool) -> dict[str, Any]:
        """Block or unblock through the log, so every process folding it converges; applied
        here at once (last-writer-wins by position makes the fold's second pass harmless).

        A change already in force spends no log position: the answer names the position of
        the change in force (0 for a track never blocked) with `changed: false`. A process
        holding the graph answers once its graph reflects that position, so the next read's
        Gravityd-Cursor is at or past the answer's `id`. Raises LogError when the log cannot
        take it."""
        have = self.blocks.latest(track_id)
        if (have.blocked if have is not None else False) == blocked:
            position = have.id if have is not None else 0
            await self._reflect(position)
            return {"track_id": track_id, "blocked": blocked, "id": position, "changed": False}
        at = time.time()
        (done,) = await self.log.append([takedowns.change_event(track_id, blocked, at)], at)
        self.blocks.apply(track_id, blocked, done.id, at)
        self._snapshot_soon()
        await self._reflect(done.id)
        return {"track_id": track_id, "blocked": blocked, "id": done.id, "changed": True}

    async def _reflect(self, position: int) -> None:
        """Let the graph reach a takedown's position before answering (read_wait_ms at most:
        past it the answer still stands, the change is durable and applied here)."""
        if self.reads and position > self.graph.cursor:
            await self.caught_up(position, self.config.read_wait_ms / 1000)

    def list_blocks(self) -> dict[str, Any]:
        entries = [
            {"track_id": e.track_id, "id": e.id, "blocked_at": e.at} for e in self.blocks.entries()
        ]
        return {"blocks": entries, "count": len(entries), "cursor": self.graph.cursor}

    def _snapshot_soon(self) -> None:
        """In-process rankers read blocks from the newest snapshot: write one now, in the
        background (one at a time; a change during it gets the next one)."""
        if not self.reads or not self.lease.held:
            return  # the snapshotter (a replica, when roles are split) writes it
        if not self.ready or self._closing or self._snapshot_pending:
            return
        self._snapshot_pending = True

        async def run() -> None:
            try:
                async with self._snapshot_lock:  # after any snapshot already being written
                    self._snapshot_pending = False
                await self.snapshot_now()
            except Exception:
                pass  # logged and counted by snapshot_now; the periodic loop retries

        self._tasks.append(asyncio.create_task(run(), name="gravityd-block-snapshot"))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ready": self.ready,
            "role": self.role,
            "worker": self.worker,
            "pid": os.getpid(),  # which process answered, behind a port shared by workers
            "last_id": self.log.last_id,
        }
        if self.reads:
            out.update(
                cursor=self.graph.cursor,
                nodes=self.graph.node_count,
                edges=self.graph.edge_count,
                snapshotter=self.lease.held,
            )
        return out

    # ------------------------------------------------------------------ snapshots

    async def snapshot_now(self) -> dict[str, Any]:
        """Write a snapshot of the live graph without stalling requests.

        Folding pauses while records are packed (so the file is consistent at its cursor);
        ingest and reads go on between records. The fsync and the SQL tables run in threads.
        """
        if not self.reads:
            raise NotSnapshotter("a writer keeps no graph: snapshots are written by a replica")
        if not self.lease.try_acquire():
            holder = self.lease.holder()
            raise NotSnapshotter(
                "another process holds the snapshotter lease"
                + (f" (pid {holder})" if holder else "")
                + "; ask that one"
            )
        async with self._snapshot_lock:
            cfg = self.config
            if self.ready:  # a snapshot carries galaxies as fresh as the lanes it is taken at
                try:
                    await self.galaxies.refresh(self.read_cursor)
                except Exception as exc:  # never a reason to lose the snapshot itself
                    self.metrics.galaxies_errors.inc()
                    log.error("galaxies failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                    self.galaxies.close()
            started = time.perf_counter()
            try:
                async with self._fold_lock:
                    writer = SnapshotWriter(
                        self.graph,
                        cfg.snapshot_dir,
                        cfg.snapshot_chunk,
                        self.blocks,
                        extra=itertools.chain(
                            snapshot_records(self.scoreboard, cfg.snapshot_chunk),
                            self.sessions.records(),
                            self._galaxy_records(),
                        ),
                        origin=self.log.identity.id if self.log.identity else None,
                    )
                    try:
                        while writer.step():
                            await asyncio.sleep(0)
                    except BaseException:
                        writer.abort()
                        raise
                # The file's content is complete: folding resumes while it is sealed, renamed
                # and turned into the SQL tables.
                try:
                    await asyncio.to_thread(writer.seal)
                    path = await asyncio.to_thread(writer.publish)
                except BaseException:
                    writer.abort()
                    raise
                cursor = writer.cursor
                rows = None
                if cfg.snapshot_track_edges:
                    # short transactions: the log writer waits behind each one
                    def rows() -> Any:
                        return iter_edge_rows(path, time.time(), 2000)

                await self.publisher.publish_graph(cursor, path.name, rows)
                if cfg.snapshot_track_edges and self.galaxies.current.count:
                    await self.publisher.publish_galaxies(
                        self.galaxies.current.cursor, self.galaxies.rows
                    )
            except Exception as exc:
                self.metrics.snapshot_errors.inc()
                log.error("snapshot failed", extra={"error": str(exc)})
                raise
            seconds = time.perf_counter() - started
            self._last_snapshot = (time.time(), cursor)
            self.metrics.snapshot_seconds.observe(seconds)
            gc.freeze()  # what the snapshot saw is long-lived: keep full collections off it
            removed = await asyncio.to_thread(prune, cfg.snapshot_dir, cfg.snapshot_keep)
            if self.writes:
                await self._retain_log()
            log.info(
                "snapshot written",
                extra={
                    "path": str(path),
                    "cursor": cursor,
                    "bytes": writer.bytes,
                    "edges": self.graph.edge_count,
                    "seconds": round(seconds, 3),
                    "pruned": len(removed),
                },
            )
            return {
                "path": str(path),
                "cursor": cursor,
                "bytes": writer.bytes,
                "seconds": round(seconds, 6),
            }

    async def _retain_log(self) -> None:
        """Delete events older than the retention age that every kept snapshot already holds."""
        days = self.config.log_retention_days
        snaps = list_snapshots(self.config.snapshot_dir)
        if days <= 0 or not snaps:
            return
        oldest_cursor = min(s.cursor for s in snaps)
        cutoff = time.time() - days * 86400
        deleted = await self.retention.retain(oldest_cursor, cutoff)
        if deleted:
            log.info("log retention", extra={"deleted": deleted, "upto": oldest_cursor})

    async def _retain_loop(self) -> None:
        """A writer role holds no graph: it applies retention on the snapshotter's schedule,
        from the snapshots in the shared folder (events inside every kept one may go)."""
        while not self._closing:
            await asyncio.sleep(self.config.snapshot_interval_s)
            try:
                await self._retain_log()
            except Exception as exc:
                log.error("log retention failed", extra={"error": str(exc)})

    async def _snapshot_loop(self) -> None:
        """Snapshot every interval; after a failure (disk full, folder unwritable) retry sooner,
        backing off from snapshot_retry_s to the interval, so a fixed disk is used at once."""
        cfg = self.config
        delay = cfg.snapshot_interval_s
        while not self._closing:
            await asyncio.sleep(delay)
            if not self.lease.try_acquire():
                delay = cfg.snapshot_interval_s  # another process is the snapshotter
                continue
            if self.graph.cursor - self._last_snapshot[1] < cfg.snapshot_min_events:
                delay = cfg.snapshot_interval_s
                continue
            try:
                await self.snapshot_now()  # a failure is logged and counted there
            except Exception:
                failed = delay < cfg.snapshot_interval_s
                delay = min(cfg.snapshot_interval_s, delay * 2 if failed else cfg.snapshot_retry_s)
            else:
                delay = cfg.snapshot_interval_s

    def snapshot_age(self) -> float:
        at = self._last_snapshot[0]
        return time.time() - at if at else float("nan")

    # ------------------------------------------------------------------ galaxies and routes

    def _out_lanes(self, track_id: str, limit: int) -> list[tuple[str, float]]:
        """The out-lanes a neighbors read serves, as (track id, normalized_score), without
        blocked tracks: what galaxies and routes are made of."""
        blocks = self.blocks
        if track_id in blocks:
            return []
        want = limit + len(blocks)  # kept lists hold at most K: slicing past them is free
        lanes = self.lanes.out_scores(self.graph, track_id, want)
        if blocks:
            lanes = [lane for lane in lanes if lane[0] not in blocks][:limit]
        return lanes

    def _galaxies_computed(self, seconds: float, count: int, observe: bool = True) -> None:
        m = self.metrics
        if observe:
            m.galaxies_seconds.observe(seconds)
        m.galaxies.set(count)
        m.galaxies_cursor.set(self.galaxies.current.cursor)

    def _galaxy_records(self) -> Iterator[tuple[str, Any]]:
        if self.galaxies.current.count:
            yield GALAXIES_PART, self.galaxies.current.to_records()

    async def galaxies_page(self, limit: int) -> dict[str, Any]:
        return self.galaxies.page(limit)

    async def galaxy_page(self, galaxy: int, limit: int) -> dict[str, Any] | None:
        page = self.galaxies.galaxy(galaxy, limit)
        if page is not None:
            await self._add_meta(page["tracks"])
        return page

    async def route(self, src: str, dst: str, max_len: int) -> dict[str, Any] | None:
        return await self.galaxies.route(src, dst, max_len, self.blocks.ids)

    async def close(self) -> None:
        """Stop taking work, drain every queued event into the log, snapshot, close."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.writes:
            await self.log.drain()
        if self.reads and self.ready and self.lease.held and self.config.snapshot_on_shutdown:
            try:
                await self.fold_pending()
                if self.graph.cursor > self._last_snapshot[1]:
                    await self.snapshot_now()
            except Exception:
                # The log holds everything: the next start replays what the snapshot missed.
                log.exception("shutdown snapshot failed")
        if self._fold_task is not None:
            self._fold_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fold_task
        await self.log.close()
        self.galaxies.close()
        self.lease.release()
        log.info(
            "stopped",
            extra={"role": self.role, "last_id": self.log.last_id, "cursor": self.graph.cursor},
        )
