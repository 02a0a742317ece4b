"""The learned transition model of a running process: retrained off the event loop, served from
memory.

Training is seconds of numpy over every edge with direct evidence, so it runs in a worker
process (one, kept for the daemon's life; spawned, so it does not copy the daemon's heap; at
the lowest CPU priority, so requests come first). The loop only gathers the input, in slices
of `GATHER_SLICE` tracks with a yield between them, while holding the fold lock: the edges are
all as of one cursor, so the model is exactly what `gravityd build` or a replay trains at that
cursor. The answer is swapped in whole: a read sees the old model or the new one, never waits
for a training.

A training starts when the fold moved since the last one and `model_interval_s` has passed;
what a snapshot carries is adopted at start, so a restarted process or a new replica ranks with
priors before its first training. Staleness is visible: `gravityd_model_cursor` beside
`gravityd_cursor`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gravityd.core.graph import GravityGraph
from gravityd.core.params import FoldParams
from gravityd.core.transitions import ModelParams, TransitionModel, edge_arrays, fit_transitions
from gravityd.daemon.workers import Worker

log = logging.getLogger("gravityd.model")

GATHER_SLICE = 256  # tracks read per slice while gathering edges: a fraction of a millisecond
# Fewer edges than this train in a thread: milliseconds, not worth a process (a new log, tests).
INLINE_ROWS = 1000


def _train(
    rows: list[tuple[str, str, float, float]], params: ModelParams, cursor: int
) -> TransitionModel:
    """Runs in the worker process: plain rows in, the model out (arrays pickle cheaply)."""
    return fit_transitions(edge_arrays(rows), params, cursor)


class ModelKeeper:
    """Owns the current transition model and the worker process that retrains it."""

    def __init__(
        self,
        params: FoldParams,
        graph: Callable[[], GravityGraph],
        fold_lock: asyncio.Lock,
        *,
        on_trained: Callable[[float, TransitionModel], None] | None = None,
        on_failed: Callable[[], None] | None = None,
        inline_rows: int = INLINE_ROWS,
    ) -> None:
        self.params = ModelParams.from_fold(params)
        self.inline_rows = inline_rows
        self.interval = params.model_interval_s
        self.graph = graph  # looked up at each training: a snapshot load replaces the graph
        self.fold_lock = fold_lock
        self.current = TransitionModel(self.params)
        self.on_trained = on_trained
        self.on_failed = on_failed
        self.training = False
        self.last_started = float("-inf")  # monotonic
        self._worker = Worker()
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.params.dims > 0 and self.interval > 0

    def adopt(self, model: TransitionModel) -> None:
        """Rank with what a snapshot carried until the first training replaces it."""
        if model.params == self.params and len(model):
            self.current = model

    async def run(self, cursor: Callable[[], int]) -> None:
        """Retrain whenever due; a failure is logged and tried again an interval later."""
        if not self.enabled:
            return
        while True:
            if self.due(cursor()):
                try:
                    await self.refresh()
                except Exception as exc:  # a worker that died, a bad input: never fatal
                    if self.on_failed is not None:
                        self.on_failed()
                    log.error(
                        "model training failed", extra={"error": f"{type(exc).__name__}: {exc}"}
                    )
                    self.close()  # a broken pool is replaced at the next try
            await asyncio.sleep(min(1.0, self.interval))

    def due(self, cursor: int) -> bool:
        return (
            self.enabled
            and not self.training
            and cursor != self.current.cursor
            and time.monotonic() - self.last_started >= self.interval
        )

    async def refresh(self) -> bool:
        """Retrain on the graph as it is now (coalesced: one at a time); True if replaced."""
        if self.params.dims <= 0:
            return False
        async with self._lock:
            self.training = True
            self.last_started = time.monotonic()
            try:
                async with self.fold_lock:  # one cursor for every edge gathered
                    graph = self.graph()
                    cursor = graph.cursor
                    if cursor == self.current.cursor and len(self.current):
                        return False
                    rows = await self._gather(graph)
                started = time.perf_counter()
                if len(rows) < self.inline_rows:
                    model = await asyncio.to_thread(_train, rows, self.params, cursor)
                else:
                    model = await self._worker.run(_train, rows, self.params, cursor)
                took = time.perf_counter() - started
            finally:
                self.training = False
            self.current = model
            log.info(
                "model trained",
                extra={
                    "cursor": cursor,
                    "tracks": len(model),
                    "edges": model.edges,
                    "seconds": round(took, 3),
                },
            )
            if self.on_trained is not None:
                self.on_trained(took, model)
            return True

    async def _gather(self, graph: GravityGraph) -> list[tuple[str, str, float, float]]:
        """Every edge with direct evidence, a slice of tracks at a time (reads go on between)."""
        tracks = graph.tracks()
        now = graph.clock or None  # the graph's own clock: what a replay would decay to
        out: list[tuple[str, str, float, float]] = []
        for i in range(0, len(tracks), GATHER_SLICE):
            out.extend(graph.direct_evidence(tracks[i : i + GATHER_SLICE], now))
            await asyncio.sleep(0)
        return out

    def close(self) -> None:
        self._worker.close()
