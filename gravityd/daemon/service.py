"""The daemon's core: the log, the live graph and the task that folds one into the other.

One class for the three roles (docs/design.md, "Roles"): `all` appends, folds, snapshots and
serves; `writer` only appends (no graph, no fold); `replica` opens the log read-only, starts
from the newest snapshot, tails the log and serves every read. Which process writes snapshots
is decided by the snapshotter lease (gravityd/snapshots/lease.py). Nothing here knows about
HTTP; the API layer parses requests and calls these methods.

`Gravityd` is the facade the HTTP layer calls; its sides live beside it, one concern a module:
fold_loop.py (folding, readiness, read-your-writes), snapshotter.py (snapshots in and out,
retention) and tracks.py (neighbors, tracks, top tracks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from gravityd.config import Config
from gravityd.core import takedowns
from gravityd.core.events import ValidEvent
from gravityd.core.graph import GravityGraph
from gravityd.core.ranking import RankRequest, rank_pool
from gravityd.core.scoreboard import Scoreboard
from gravityd.core.session_index import SessionIndex
from gravityd.core.takedowns import Blocks
from gravityd.daemon.fold_loop import FoldLoop, settle_memory
from gravityd.daemon.galaxies import GalaxyKeeper, ServedLanes
from gravityd.daemon.metrics import Metrics
from gravityd.daemon.models import ModelKeeper
from gravityd.daemon.reads import LaneKeeper
from gravityd.daemon.snapshotter import NotSnapshotter, Snapshotter
from gravityd.daemon.tracks import TrackReads
from gravityd.log import Appended, EventLog, LogError, LogMissing, NotALog
from gravityd.log.open import open_log
from gravityd.snapshots.lease import SnapshotLease

__all__ = ["Gravityd", "NotSnapshotter", "RateMeter", "settle_memory"]

log = logging.getLogger("gravityd.service")

LOOP_WATCH_S = 0.1  # how often the event loop's lateness is sampled
CATALOG_COUNT_TTL_S = 10.0
LOG_WAIT_S = 0.5  # how often a replica looks for a log that does not exist yet
LOG_RETRY_MAX_S = 30.0  # the longest wait between two tries of an unreachable log


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


class Gravityd(FoldLoop, Snapshotter, TrackReads):
    """One process: accepts events into the log, folds them into the graph, serves reads."""

    def __init__(self, config: Config, metrics: Metrics | None = None, worker: int = 0) -> None:
        self.config = config
        self.worker = worker  # this process's index under a --workers supervisor (0 alone)
        self.role = config.role
        self.writes = self.role in ("all", "writer")  # appends to the log
        self.reads = self.role in ("all", "replica")  # holds a graph, folds, serves reads
        self.metrics = metrics or Metrics()
        opened = open_log(config, self.metrics.registry)
        self.event_log: EventLog = opened.log
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
        # The learned transition model (the ranking's prior): retrained in a worker process.
        self.models = ModelKeeper(
            config.graph,
            lambda: self.graph,
            self._fold_lock,
            on_trained=lambda took, _: self.metrics.model_seconds.observe(took),
            on_failed=self.metrics.model_errors.inc,
        )
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
        self.event_log.on_commit = self._on_commit
        self.event_log.on_commit_error = self.metrics.commit_errors.inc
        m = self.metrics
        m.info.labels(self.role, str(worker)).set(1)
        m.log_last_id.set_function(lambda: self.event_log.last_id)
        m.ready.set_function(lambda: 1 if self.ready else 0)
        if self.reads:
            m.fold_lag_events.set_function(
                lambda: max(
                    0, self.event_log.last_id - max(self.graph.cursor, self.event_log.reserved)
                )
            )
            m.fold_lag_seconds.set_function(lambda: self.event_log.lag_seconds(self.graph.cursor))
            m.graph_nodes.set_function(lambda: self.graph.node_count)
            m.graph_edges.set_function(lambda: self.graph.edge_count)
            m.graph_sessions.set_function(lambda: len(self.graph.sessions))
            m.model_tracks.set_function(lambda: len(self.models.current))
            m.model_cursor.set_function(lambda: self.models.current.cursor)
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
        await self.event_log.open()
        if self.role == "writer":
            # No fold here: the takedowns in force come from the log itself, so a PUT can say
            # whether it changed anything.
            for track_id, position, at in await self.blocks_in_force.current_blocks():
                self.blocks.apply(track_id, True, position, at)
        self._ready_target = self.event_log.last_id
        log.info(
            "log opened",
            extra={
                "log": self.event_log.description,
                "role": self.role,
                "last_id": self.event_log.last_id,
            },
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
                    "waiting for the log",
                    extra={"log": self.event_log.description, "reason": reason},
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

    async def ingest(self, events: list[ValidEvent], received_at: float) -> list[Appended]:
        """Make events durable; raise LogError when the log cannot take them."""
        out = await self.event_log.append(events, received_at)
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

    async def stats(self) -> dict[str, Any]:
        """The explorer's live panel: rates, lag, size, snapshot age (cheap to poll)."""
        now = time.monotonic()
        if now - self._catalog[0] > CATALOG_COUNT_TTL_S:
            self._catalog = (now, await self.catalog.catalog_size())
        age = self.snapshot_age()
        return {
            **self.status(),
            "fold_lag": max(0, self.event_log.last_id - self.graph.cursor),
            "fold_lag_seconds": round(self.event_log.lag_seconds(self.graph.cursor), 3),
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
            **req._asdict(),
            graph=self.graph,
            params=self.config.rank,
            sessions=self.sessions,
            model=self.models.current,
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
        (done,) = await self.event_log.append([takedowns.change_event(track_id, blocked, at)], at)
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

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ready": self.ready,
            "role": self.role,
            "worker": self.worker,
            "pid": os.getpid(),  # which process answered, behind a port shared by workers
            "last_id": self.event_log.last_id,
        }
        if self.reads:
            out.update(
                cursor=self.graph.cursor,
                nodes=self.graph.node_count,
                edges=self.graph.edge_count,
                snapshotter=self.lease.held,
            )
        return out

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
            await self.event_log.drain()
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
        await self.event_log.close()
        self.galaxies.close()
        self.models.close()
        self.lease.release()
        log.info(
            "stopped",
            extra={
                "role": self.role,
                "last_id": self.event_log.last_id,
                "cursor": self.graph.cursor,
            },
        )
