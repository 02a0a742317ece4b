"""The read side: lanes kept refreshed off the request path, and the reads that serve them.

A neighbors read serves what `LaneIndex` already holds (O(limit)). The fold files the tracks it
touched; the refresher task here recomputes them in slices of `lanes_refresh_slice_ms`, yielding
to requests between slices, within `lanes_refresh_share` of the loop (flat out only while a
min_cursor read waits). Past `lanes_max_lag_ms` the fold also refreshes half a slice before each
of its own (`within_bound`). docs/reads.md states what the bound and min_cursor guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from gravityd.config import Config
from gravityd.core.graph import GravityGraph
from gravityd.core.lanes import READING, LaneIndex, read_rebuilds
from gravityd.daemon.metrics import Metrics


class LaneKeeper:
    """Owns the LaneIndex of the live graph and the task that keeps it refreshed."""

    def __init__(self, config: Config, metrics: Metrics, graph: GravityGraph) -> None:
        self.keep = config.max_neighbors_limit
        self.max_lag_s = config.lanes_max_lag_ms / 1000
        self.slice_s = config.lanes_refresh_slice_ms / 1000
        self.share = min(1.0, config.lanes_refresh_share)
        self.metrics = metrics
        self.index = self._new_index(graph)
        self._wake = asyncio.Event()  # something became dirty
        self._progress = asyncio.Event()  # a refresh slice finished
        self._waiting = 0  # min_cursor readers waiting: refresh flat out
        self.closing = False
        m = metrics
        m.lanes_lag_seconds.set_function(lambda: self.index.lag_seconds())
        m.lanes_dirty.set_function(lambda: self.index.dirty)
        m.lanes_cursor.set_function(lambda: self.index.cursor)
        m.lanes_refreshed.set_function(lambda: self.index.refreshed)
        m.lanes_read_rebuilds.set_function(read_rebuilds)

    def _new_index(self, graph: GravityGraph) -> LaneIndex:
        index = LaneIndex(graph, self.keep)
        index.mark_all(graph.cursor)
        return index

    def attach(self, graph: GravityGraph) -> LaneIndex:
        """The index of `graph` (a loaded snapshot replaces the graph: all of it is dirty)."""
        if self.index.graph is not graph:
            self.index = self._new_index(graph)
            self._wake.set()
        return self.index

    # ------------------------------------------------------------------ the fold's side

    def mark(self, graph: GravityGraph, touched: Iterable[str], reflected: int) -> None:
        """The fold folded events after `reflected`, touching these tracks."""
        index = self.attach(graph)
        index.mark(touched, reflected)
        if index.dirty:
            self._wake.set()

    async def within_bound(self) -> None:
        """Called by the fold before each slice: past the bound, the fold first gives the
        refresher one slice, so that refreshing keeps pace with folding when the refresher's
        share alone does not. Never more: a full pass costs the same however many events it
        covers, so folding on is what coalesces touches (docs/reads.md)."""
        index = self.index
        if index.dirty and index.lag_seconds() > self.max_lag_s:
            self.metrics.lanes_fold_waits.inc()
            index.refresh_for(self.slice_s / 2)
            self._progress.set()

    # ------------------------------------------------------------------ refreshing

    async def run(self) -> None:
        """The refresher: slices of work, a yield between slices, a share of the loop."""
        loop = asyncio.get_running_loop()
        while not self.closing:
            if not self.index.dirty:
                self._wake.clear()
                self._progress.set()
                await self._wake.wait()
                continue
            started = loop.time()
            self.index.refresh_for(self.slice_s)
            spent = loop.time() - started
            self._progress.set()
            if self._waiting or self.share >= 1.0:
                await asyncio.sleep(0)  # a min_cursor read waits: only requests go first
            else:
                # The stated share holds even when behind: taking the whole loop starved
                # ingest and reads in --role all (p99 1.7 s at 18k events/s of shuffle).
                await asyncio.sleep(spent * (1.0 / self.share - 1.0))

    async def drain(self) -> None:
        """Refresh everything dirty now, in slices with yields (start-up, /admin/fold)."""
        for _ in self.index.refresh_all_steps(self.slice_s):
            self._progress.set()
            await asyncio.sleep(0)

    async def wait_cursor(self, position: int, timeout_s: float) -> bool:
        """Wait (up to timeout_s) until every kept lane reflects the log through `position`;
        the refresher runs flat out meanwhile."""
        if self.index.cursor >= position:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._waiting += 1
        self._wake.set()
        try:
            while self.index.cursor < position:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), left)
            return True
        finally:
            self._waiting -= 1

    # ------------------------------------------------------------------ reading

    def neighbors(
        self,
        graph: GravityGraph,
        track_id: str,
        *,
        limit: int,
        direction: str,
        min_score: float,
        rejected: bool,
        now: float | None,
    ) -> list[dict[str, Any]]:
        """The kept answer (never computed here: a read that did would be counted)."""
        token = READING.set(True)
        try:
            return self.attach(graph).neighbors(
                track_id,
                limit=limit,
                direction=direction,
                min_score=min_score,
                now=now,
                rejected=rejected,
            )
        finally:
            READING.reset(token)

    def out_scores(self, graph: GravityGraph, track_id: str, limit: int) -> list[tuple[str, float]]:
        """A track's kept out-lanes as (track id, normalized_score), best first: what a neighbors
        read serves, without building its answer (routes and galaxies walk many tracks)."""
        rec = self.attach(graph).get(track_id)
        if rec is None or limit <= 0:
            return []
        side = rec.out
        top = side.top
        if top <= 0.0:
            return []
        pairs = zip(side.ids[:limit], side.weights[:limit], strict=True)
        return [(t, min(1.0, w / top)) for t, w in pairs]

    def stats(self) -> dict[str, Any]:
        index = self.index
        return {
            "lanes_cursor": index.cursor,
            "lanes_lag_s": round(index.lag_seconds(), 4),
            "lanes_dirty": index.dirty,
            "lanes_max_lag_ms": self.max_lag_s * 1000,
        }
