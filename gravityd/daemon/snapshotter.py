"""The snapshot side of the daemon: loading one at start, writing them (on schedule, on a
takedown, on demand, at shutdown), and log retention behind them.

A mixin of `Gravityd` (gravityd/daemon/service.py), which owns the state named below. Which
process writes snapshots is decided by the snapshotter lease (gravityd/snapshots/lease.py).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from gravityd.config import Config
from gravityd.core.graph import GravityGraph
from gravityd.core.scoreboard import Scoreboard, snapshot_records
from gravityd.core.session_index import SessionIndex
from gravityd.core.takedowns import Blocks
from gravityd.daemon.galaxies import SNAPSHOT_PART as GALAXIES_PART
from gravityd.daemon.galaxies import GalaxyKeeper
from gravityd.daemon.metrics import Metrics
from gravityd.daemon.models import ModelKeeper
from gravityd.log import EventLog, GraphPublisher, LogError, Retention
from gravityd.log.open import RemoteSnapshots
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


class NotSnapshotter(Exception):
    """Another process holds the snapshotter lease: this one never writes snapshots."""


class Snapshotter:
    """Snapshots in and out, over the state `Gravityd` sets up."""

    config: Config
    metrics: Metrics
    event_log: EventLog
    graph: GravityGraph
    scoreboard: Scoreboard
    sessions: SessionIndex
    models: ModelKeeper
    blocks: Blocks
    galaxies: GalaxyKeeper
    lease: SnapshotLease
    publisher: GraphPublisher
    retention: Retention
    remote_snapshots: RemoteSnapshots | None
    reads: bool
    writes: bool
    ready: bool
    _tasks: list[asyncio.Task]
    _closing: bool
    _fold_lock: asyncio.Lock
    _snapshot_lock: asyncio.Lock
    _snapshot_pending: bool
    _last_snapshot: tuple[float, int]

    read_cursor: int  # gravityd/daemon/fold_loop.py
    _galaxies_computed: Callable[..., None]  # gravityd/daemon/service.py

    async def _load_snapshot(self) -> None:
        """The newest snapshot of this log whose cursor lies within it (else one from the
        object store, else none: replay), loaded off the event loop so ingest goes on."""
        started = time.perf_counter()
        identity = self.event_log.identity
        end = max(self.event_log.last_id, identity.claimed if identity is not None else 0)
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
        self.models.adopt(state.model)
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
            if self.ready and not self._closing:  # and the model (not at shutdown: seconds)
                try:
                    await self.models.refresh()
                except Exception as exc:
                    self.metrics.model_errors.inc()
                    log.error(
                        "model training failed", extra={"error": f"{type(exc).__name__}: {exc}"}
                    )
                    self.models.close()
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
                            self.models.current.records(),
                            self._galaxy_records(),
                        ),
                        origin=self.event_log.identity.id if self.event_log.identity else None,
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

    def _galaxy_records(self) -> Iterator[tuple[str, Any]]:
        if self.galaxies.current.count:
            yield GALAXIES_PART, self.galaxies.current.to_records()
