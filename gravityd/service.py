"""The daemon's core: the log, the live graph and the task that folds one into the other.

Nothing here knows about HTTP; the API layer parses requests and calls these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import time
from pathlib import Path
from typing import Any

from gravityd import blocks as takedowns
from gravityd.blocks import Blocks
from gravityd.config import Config
from gravityd.events import ValidEvent
from gravityd.graph import GravityGraph
from gravityd.log import (
    Appended,
    SqliteLog,
    connect_sync,
    delete_folded_before,
    set_cursor,
    write_track_edges,
)
from gravityd.metrics import Metrics
from gravityd.ranking import RankRequest, rank_candidates
from gravityd.snapshot import (
    SnapshotWriter,
    iter_edge_rows,
    list_snapshots,
    load_newest,
    prune,
)

log = logging.getLogger("gravityd.service")

TOP_TRACKS_TTL_S = 10.0
LOOP_WATCH_S = 0.1  # how often the event loop's lateness is sampled
CATALOG_COUNT_TTL_S = 10.0


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

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.log = SqliteLog(
            config.db,
            synchronous=config.synchronous,
            max_commit_events=config.commit_max_events,
            busy_timeout_ms=config.busy_timeout_ms,
        )
        self.graph = GravityGraph(config.graph)
        self.blocks = Blocks()  # takedowns, folded from the log beside the graph
        self.ready = False
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
        self.log.on_commit = self._on_commit
        self.log.on_commit_error = self.metrics.commit_errors.inc
        m = self.metrics
        m.fold_lag_events.set_function(lambda: max(0, self.log.last_id - self.graph.cursor))
        m.fold_lag_seconds.set_function(lambda: self.log.lag_seconds(self.graph.cursor))
        m.graph_nodes.set_function(lambda: self.graph.node_count)
        m.graph_edges.set_function(lambda: self.graph.edge_count)
        m.graph_sessions.set_function(lambda: len(self.graph.sessions))
        m.cursor.set_function(lambda: self.graph.cursor)
        m.log_last_id.set_function(lambda: self.log.last_id)
        m.ready.set_function(lambda: 1 if self.ready else 0)
        m.snapshot_age.set_function(self.snapshot_age)
        m.blocked_tracks.set_function(lambda: len(self.blocks))

    async def start(self) -> None:
        """Open the log (ingest works from here on), then load and catch up in the background."""
        await self.log.open()
        snaps = list_snapshots(self.config.snapshot_dir)
        if snaps:  # ids must continue after any snapshot's cursor, even a restored one
            self.log.reserve_after(max(s.cursor for s in snaps))
        self._ready_target = self.log.last_id
        log.info("log opened", extra={"db": self.config.db, "last_id": self.log.last_id})
        self._fold_task = asyncio.create_task(self._run(), name="gravityd-fold")
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="gravityd-loop-lag"))

    async def _run(self) -> None:
        try:
            await self._load_snapshot()
        finally:
            self._loaded.set()
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
        """Newest valid snapshot, loaded off the event loop so ingest goes on meanwhile."""
        started = time.perf_counter()
        found = await asyncio.to_thread(load_newest, self.config.snapshot_dir, self.config.graph)
        if found is None:
            log.info("no snapshot: replaying the whole log")
            return
        info, header, graph = found
        gc.freeze()  # keep full collections off the loaded graph: they stall requests
        self.graph = graph
        self.blocks = Blocks.from_header(header)
        self._last_snapshot = (header["created_at"], graph.cursor)
        log.info(
            "snapshot loaded",
            extra={
                "path": str(info.path),
                "cursor": graph.cursor,
                "edges": graph.edge_count,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

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

    async def fold_pending(self) -> int:
        """Fold every event committed before this call; return the cursor reached.

        Waits for the snapshot to be loaded first: folding into the empty start-up graph would
        be thrown away with it.
        """
        await self._loaded.wait()
        target = self.log.last_id
        while self.graph.cursor < target:
            if not await self._fold_batch():
                break  # nothing left to read (ids reserved past the end of the log)
        self._check_ready()
        return self.graph.cursor

    def _check_ready(self) -> None:
        if self.ready or self.graph.cursor < self._ready_target:
            return
        self.ready = True
        gc.freeze()  # the caught-up graph is long-lived: keep full collections off it
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
            self.blocks.fold(events)  # takedowns travel in the log; the graph ignores them
            if not events:
                self.graph.cursor = max(self.graph.cursor, self.log.reserved)
                return 0
            for i in range(0, len(events), step):
                part = events[i : i + step]
                try:
                    n = self.graph.fold(part)
                except Exception:
                    self.metrics.fold_errors.inc()
                    log.exception("fold failed", extra={"first_id": part[0][0]})
                    n = self._fold_one_by_one(part)
                self.metrics.fold_events.inc(n)
                await asyncio.sleep(0)  # let reads in between slices
            self.log.forget_through(self.graph.cursor)
        return len(events)

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
                self.graph.cursor = eid
        return n

    async def _fold_loop(self) -> None:
        try:
            await self.fold_pending()  # catch up with the log as it was at start: ready
            interval = self.config.fold_interval_ms / 1000
            while not self._closing:
                await self.log.committed.wait()
                self.log.committed.clear()
                if interval:
                    await asyncio.sleep(interval)  # gather more commits into each fold
                await self.fold_pending()
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
    ) -> list[dict[str, Any]]:
        if self.blocks:
            lanes = self._visible_lanes(track_id, limit, direction, min_score, rejected)
        else:
            lanes = self.graph.neighbors(
                track_id, limit=limit, direction=direction, min_score=min_score, rejected=rejected
            )
        if with_meta and lanes:
            await self._add_meta(lanes)
        return lanes

    def _visible_lanes(
        self, track_id: str, limit: int, direction: str, min_score: float, rejected: bool
    ) -> list[dict[str, Any]]:
        """Lanes without blocked tracks; a blocked track itself has none."""
        if track_id in self.blocks:
            return []

        def fetch(n: int) -> list[dict[str, Any]]:
            return self.graph.neighbors(track_id, limit=n, direction=direction, rejected=rejected)

        return takedowns.visible_lanes(fetch, limit, min_score, self.blocks)

    async def _add_meta(self, items: list[dict[str, Any]]) -> None:
        """Title and artist from the catalogue (None where it does not know the track)."""
        meta = await self.log.track_meta([it["track_id"] for it in items])
        for it in items:
            it["title"], it["artist"] = meta.get(it["track_id"], (None, None))

    async def track(self, track_id: str) -> dict[str, Any]:
        """One track as the explorer shows it: catalogue entry and how many lanes it has."""
        out_lanes, in_lanes = self.graph.lane_counts(track_id)
        info = {"track_id": track_id, "out_lanes": out_lanes, "in_lanes": in_lanes}
        if track_id in self.blocks:
            info["blocked"] = True  # only then: the answer of other tracks stays as it was
        await self._add_meta([info])
        return info

    async def top_tracks(self, limit: int) -> list[dict[str, Any]]:
        """The tracks with the most warp lanes (in and out), recomputed at most every 10 s.

        Counting lanes visits every edge; it runs on the loop in slices so reads keep flowing.
        An empty answer is not kept, so a fresh daemon shows tracks as soon as it has some.
        """
        now = time.monotonic()
        cached_at, ids, size = self._top
        want = max(limit, 20) + len(self.blocks)  # blocked ones are left out below
        if now - cached_at > TOP_TRACKS_TTL_S or not ids or size < want:
            lane_counts = self.graph.lane_counts
            nodes = list(self.graph.g._succ)
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
        items = []
        for u in takedowns.visible_ids(self._top[1], self.blocks)[:limit]:
            out_lanes, in_lanes = self.graph.lane_counts(u)
            items.append(
                {
                    "track_id": u,
                    "lanes": out_lanes + in_lanes,
                    "out_lanes": out_lanes,
                    "in_lanes": in_lanes,
                }
            )
        items.sort(key=lambda it: (-it["lanes"], it["track_id"]))
        await self._add_meta(items)
        return items

    async def stats(self) -> dict[str, Any]:
        """The explorer's live panel: rates, lag, size, snapshot age (cheap to poll)."""
        now = time.monotonic()
        if now - self._catalog[0] > CATALOG_COUNT_TTL_S:
            self._catalog = (now, await self.log.catalog_size())
        age = self.snapshot_age()
        return {
            **self.status(),
            "fold_lag": max(0, self.log.last_id - self.graph.cursor),
            "fold_lag_seconds": round(self.log.lag_seconds(self.graph.cursor), 3),
            "events_per_s": round(self._rate.rate(), 1),
            "snapshot_age_s": None if age != age else round(age, 1),
            "catalog_tracks": self._catalog[1],
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def rank(self, req: RankRequest) -> list[dict[str, Any]]:
        """POST /rank: the same function the radio runs in-process, on the live graph."""
        if self.blocks:
            req = req._replace(
                candidate_track_ids=takedowns.visible_ids(req.candidate_track_ids, self.blocks)
            )
        return rank_candidates(**req._asdict(), graph=self.graph, params=self.config.rank)

    # ------------------------------------------------------------------ takedowns

    async def set_block(self, track_id: str, blocked: bool) -> dict[str, Any]:
        """Block or unblock through the log, so every process folding it converges; applied
        here at once (last-writer-wins by position makes the fold's second pass harmless).
        Raises LogError when the log cannot take it."""
        was = track_id in self.blocks
        at = time.time()
        (done,) = await self.log.append([takedowns.change_event(track_id, blocked, at)], at)
        self.blocks.apply(track_id, blocked, done.id, at)
        if was != blocked:
            self._snapshot_soon()
        return {"track_id": track_id, "blocked": blocked, "id": done.id, "changed": was != blocked}

    def list_blocks(self) -> dict[str, Any]:
        entries = [
            {"track_id": e.track_id, "id": e.id, "blocked_at": e.at} for e in self.blocks.entries()
        ]
        return {"blocks": entries, "count": len(entries), "cursor": self.graph.cursor}

    def _snapshot_soon(self) -> None:
        """In-process rankers read blocks from the newest snapshot: write one now, in the
        background (one at a time; a change during it gets the next one)."""
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
        return {
            "ready": self.ready,
            "cursor": self.graph.cursor,
            "last_id": self.log.last_id,
            "nodes": self.graph.node_count,
            "edges": self.graph.edge_count,
        }

    # ------------------------------------------------------------------ snapshots

    async def snapshot_now(self) -> dict[str, Any]:
        """Write a snapshot of the live graph without stalling requests.

        Folding pauses while records are packed (so the file is consistent at its cursor);
        ingest and reads go on between records. The fsync and the SQL tables run in threads.
        """
        async with self._snapshot_lock:
            cfg = self.config
            started = time.perf_counter()
            try:
                async with self._fold_lock:
                    writer = SnapshotWriter(
                        self.graph, cfg.snapshot_dir, cfg.snapshot_chunk, self.blocks
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
                await asyncio.to_thread(self._write_tables, cursor, path)
            except Exception as exc:
                self.metrics.snapshot_errors.inc()
                log.error("snapshot failed", extra={"error": str(exc)})
                raise
            seconds = time.perf_counter() - started
            self._last_snapshot = (time.time(), cursor)
            self.metrics.snapshot_seconds.observe(seconds)
            gc.freeze()  # what the snapshot saw is long-lived: keep full collections off it
            removed = await asyncio.to_thread(prune, cfg.snapshot_dir, cfg.snapshot_keep)
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

    def _write_tables(self, cursor: int, path: Path) -> None:
        conn = connect_sync(self.config.db, self.config.synchronous)
        try:
            conn.execute("BEGIN IMMEDIATE")
            set_cursor(conn, cursor, path.name)
            conn.execute("COMMIT")
            if self.config.snapshot_track_edges:
                now = time.time()
                # short transactions: the log writer waits behind each one
                write_track_edges(conn, iter_edge_rows(path, now, 2000), now)
        finally:
            conn.close()

    async def _retain_log(self) -> None:
        """Delete events older than the retention age that every kept snapshot already holds."""
        days = self.config.log_retention_days
        snaps = list_snapshots(self.config.snapshot_dir)
        if days <= 0 or not snaps:
            return
        oldest_cursor = min(s.cursor for s in snaps)
        cutoff = time.time() - days * 86400

        def run() -> int:
            conn = connect_sync(self.config.db, self.config.synchronous)
            try:
                return delete_folded_before(conn, oldest_cursor, cutoff)
            finally:
                conn.close()

        deleted = await asyncio.to_thread(run)
        if deleted:
            log.info("log retention", extra={"deleted": deleted, "upto": oldest_cursor})

    async def _snapshot_loop(self) -> None:
        """Snapshot every interval; after a failure (disk full, folder unwritable) retry sooner,
        backing off from snapshot_retry_s to the interval, so a fixed disk is used at once."""
        cfg = self.config
        delay = cfg.snapshot_interval_s
        while not self._closing:
            await asyncio.sleep(delay)
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

    async def close(self) -> None:
        """Stop taking work, drain every queued event into the log, snapshot, close."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.log.drain()
        if self.ready and self.config.snapshot_on_shutdown:
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
        log.info("stopped", extra={"last_id": self.log.last_id, "cursor": self.graph.cursor})
