"""The fold side of the daemon: the loop that folds the log into the graph, readiness, and
read-your-writes (`caught_up`, `read_cursor`).

A mixin of `Gravityd` (gravityd/daemon/service.py), which owns the state named below; kept apart
so each concern reads on its own page.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gravityd.config import Config
from gravityd.core.graph import GravityGraph
from gravityd.core.scoreboard import ReportQuery, Scoreboard
from gravityd.core.session_index import SessionIndex
from gravityd.core.takedowns import Blocks
from gravityd.daemon.galaxies import GalaxyKeeper
from gravityd.daemon.metrics import Metrics
from gravityd.daemon.models import ModelKeeper
from gravityd.daemon.reads import LaneKeeper
from gravityd.log import EventLog, LogError

log = logging.getLogger("gravityd.service")


def settle_memory() -> None:
    """Collect once, then move everything alive out of the collector's sight (gc.freeze).

    A loaded graph is millions of long-lived containers; a full collection walks all of them,
    stalling every request for as long (docs/reads.md has the measurement). Frozen objects are
    still freed by reference counting when the fold drops them; only cycles among them would
    outlive their use, and the graph makes none.
    """
    gc.collect()
    gc.freeze()


class FoldLoop:
    """Folding, readiness and read-your-writes, over the state `Gravityd` sets up."""

    config: Config
    metrics: Metrics
    event_log: EventLog
    graph: GravityGraph
    scoreboard: Scoreboard
    sessions: SessionIndex
    models: ModelKeeper
    blocks: Blocks
    lanes: LaneKeeper
    galaxies: GalaxyKeeper
    writes: bool
    ready: bool
    failed: asyncio.Event
    started_at: float
    _ready_event: asyncio.Event
    _ready_target: int
    _fold_lock: asyncio.Lock
    _loaded: asyncio.Event
    _tasks: list[asyncio.Task]
    _closing: bool
    _advanced: asyncio.Future[None] | None
    _urgent: asyncio.Event

    _snapshot_soon: Callable[[], None]  # gravityd/daemon/snapshotter.py

    async def fold_pending(self, refresh: bool = True) -> int:
        """Fold every event committed before this call; return the cursor reached. With
        `refresh` (POST /admin/fold), also refresh every lane the fold touched before returning.

        Waits for the snapshot to be loaded first: folding into the empty start-up graph would
        be thrown away with it.
        """
        await self._loaded.wait()
        target = await self.event_log.refresh()
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
        self._tasks.append(
            asyncio.create_task(self.models.run(lambda: self.read_cursor), name="gravityd-model")
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
            events, bad = await self.event_log.read_after(
                self.graph.cursor, self.config.fold_batch_events
            )
            if bad:
                self._report_skipped(bad)
            if self.blocks.fold(events) and not self.writes:
                # A takedown PUT on the writer: the snapshotter carries it to in-process rankers.
                self._snapshot_soon()
            if not events:
                self.graph.advance_cursor(self.event_log.reserved)
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
            self.event_log.forget_through(self.graph.cursor)
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
                    log.error("event skipped by the scoreboard", extra={"position": ev[0]})
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
                await self.event_log.refresh()
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
                log.error("event skipped by the fold", extra={"position": eid})
                self.graph.advance_cursor(eid)
        return n

    async def _fold_loop(self) -> None:
        try:
            await self.fold_pending(refresh=False)  # catch up with the log at start: ready
            interval = self.config.fold_interval_ms / 1000
            while not self._closing:
                await self.event_log.committed.wait()
                self.event_log.committed.clear()
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
