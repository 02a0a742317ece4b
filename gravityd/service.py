"""The daemon's core: the log, the live graph and the task that folds one into the other.

Nothing here knows about HTTP; the API layer parses requests and calls these methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gravityd.config import Config
from gravityd.events import ValidEvent
from gravityd.graph import GravityGraph
from gravityd.log import Appended, EventLog
from gravityd.metrics import Metrics

log = logging.getLogger("gravityd.service")


class Gravityd:
    """One process: accepts events into the log, folds them into the graph, serves reads."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.log = EventLog(config.db, synchronous=config.synchronous,
                            max_commit_events=config.commit_max_events)
        self.graph = GravityGraph(config.graph)
        self.ready = False
        self._ready_target = 0
        self._fold_lock = asyncio.Lock()
        self._fold_task: asyncio.Task | None = None
        self._closing = False
        self.started_at = time.time()
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

    async def start(self) -> None:
        """Open the log (ingest works from here on), then catch the graph up in the background."""
        await self.log.open()
        self._ready_target = self.log.last_id
        log.info("log opened", extra={"db": self.config.db, "last_id": self.log.last_id})
        self._fold_task = asyncio.create_task(self._fold_loop(), name="gravityd-fold")

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
            m.events_accepted.inc(new)
            m.commit_batch.observe(new)
        m.commit_seconds.observe(seconds)

    def reject(self, reason: str, count: int = 1) -> None:
        self.metrics.events_rejected.labels(reason).inc(count)

    async def fold_pending(self) -> int:
        """Fold every event committed before this call; return the cursor reached."""
        target = self.log.last_id
        while self.graph.cursor < target:
            await self._fold_batch()
        return self.graph.cursor

    async def _fold_batch(self) -> int:
        async with self._fold_lock:
            events = await self.log.read_after(self.graph.cursor, self.config.fold_batch_events)
            if not events:
                return 0
            try:
                n = self.graph.fold(events)
            except Exception:
                self.metrics.fold_errors.inc()
                log.exception("fold failed", extra={"first_id": events[0].id})
                n = self._fold_one_by_one(events)
            self.metrics.fold_events.inc(n)
        await asyncio.sleep(0)  # let reads in between batches
        return n

    def _fold_one_by_one(self, events: list) -> int:
        """Fold a failed batch event by event, skipping (and reporting) the ones that raise."""
        n = 0
        for ev in events:
            if ev.id <= self.graph.cursor:
                continue
            try:
                n += self.graph.fold([ev])
            except Exception:
                self.metrics.fold_errors.inc()
                log.error("event skipped by the fold", extra={"event_id": ev.id})
                self.graph.cursor = ev.id
        return n

    async def _fold_loop(self) -> None:
        started = time.perf_counter()
        try:
            await self.fold_pending()
            while self.graph.cursor < self._ready_target:
                await self.fold_pending()
            self.ready = True
            log.info("graph ready", extra={
                "cursor": self.graph.cursor, "edges": self.graph.edge_count,
                "seconds": round(time.perf_counter() - started, 3)})
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

    def neighbors(self, track_id: str, *, limit: int, direction: str,
                  min_score: float) -> list[dict[str, Any]]:
        return self.graph.neighbors(track_id, limit=limit, direction=direction, min_score=min_score)

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "cursor": self.graph.cursor,
            "last_id": self.log.last_id,
            "nodes": self.graph.node_count,
            "edges": self.graph.edge_count,
        }

    async def close(self) -> None:
        """Stop folding, drain every queued event into the log, close it."""
        self._closing = True
        if self._fold_task is not None:
            self._fold_task.cancel()
            try:
                await self._fold_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.log.close()
        log.info("stopped", extra={"last_id": self.log.last_id})
