"""The galaxies of a running process: recomputed off the event loop, served from memory.

Louvain and PageRank over the whole lanes graph take seconds on a big catalogue and hold the
interpreter lock all the while, so they run in a worker process (one, kept for the daemon's
life; spawned, so it does not copy the daemon's heap). The loop only gathers the input, in
slices of `GATHER_SLICE` tracks with a yield between them, and swaps the answer in whole: a read
sees either the old galaxies or the new ones, never a mix, and never waits for a computation.

A computation starts when the fold moved since the last one and `galaxies_interval_s` has
passed (the snapshot writer also asks for one before each snapshot, so a snapshot carries
galaxies as fresh as its interval). What a snapshot carries is adopted at start, so a restarted
process or a new replica serves galaxies before its first computation.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from gravityd.core.galaxies import EMPTY, Galaxies, GalaxyParams, compute_galaxies

log = logging.getLogger("gravityd.galaxies")

GATHER_SLICE = 256  # tracks read per slice while gathering lanes: well under a millisecond


class LanesSource(Protocol):
    """What the keeper reads: the tracks, and each one's served out-lanes, best first."""

    def tracks(self) -> Sequence[str]: ...

    def lanes_of(self, track_id: str, limit: int) -> Sequence[tuple[str, float]]: ...


def _compute(lanes: list, resolution: float, seed: int, cursor: int, at: float) -> dict[str, Any]:
    """Runs in the worker process: plain lists in, plain lists out (cheap to pickle)."""
    gal = compute_galaxies(lanes, resolution=resolution, seed=seed, cursor=cursor, computed_at=at)
    return gal.to_records()


class GalaxyKeeper:
    """Owns the current galaxies and the worker process that recomputes them."""

    def __init__(
        self,
        params: GalaxyParams,
        source: LanesSource,
        *,
        on_computed: Callable[[float, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.params = params
        self.source = source
        self.current: Galaxies = EMPTY
        self.on_computed = on_computed
        self.clock = clock
        self.computing = False
        self.last_started = float("-inf")  # monotonic
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.params.galaxies_interval_s > 0

    def adopt(self, records: dict[str, Any] | None) -> None:
        """Serve what a snapshot carried until the first computation replaces it."""
        if records:
            self.current = Galaxies.from_records(records)

    def due(self, cursor: int) -> bool:
        return (
            self.enabled
            and not self.computing
            and cursor != self.current.cursor
            and time.monotonic() - self.last_started >= self.params.galaxies_interval_s
        )

    async def refresh(self, cursor: int) -> bool:
        """Recompute for the lanes as of `cursor` (coalesced: one at a time); True if replaced."""
        if not self.enabled:
            return False
        async with self._lock:
            if cursor == self.current.cursor and self.current.count:
                return False
            self.computing = True
            self.last_started = time.monotonic()
            try:
                lanes = await self._gather()
                started = time.perf_counter()
                p = self.params
                rec = await asyncio.get_running_loop().run_in_executor(
                    self._executor(),
                    _compute,
                    lanes,
                    p.galaxies_resolution,
                    p.galaxies_seed,
                    cursor,
                    self.clock(),
                )
                took = time.perf_counter() - started
            finally:
                self.computing = False
            self.current = Galaxies.from_records(rec)
            log.info(
                "galaxies computed",
                extra={"cursor": cursor, "galaxies": self.current.count, "seconds": round(took, 3)},
            )
            if self.on_computed is not None:
                self.on_computed(took, self.current.count)
            return True

    async def _gather(self) -> list[tuple[str, list[tuple[str, float]]]]:
        """Every track's strongest lanes, a slice at a time so that reads go on in between."""
        limit = self.params.galaxies_lanes_per_track
        tracks = list(self.source.tracks())
        out: list[tuple[str, list[tuple[str, float]]]] = []
        for i in range(0, len(tracks), GATHER_SLICE):
            for t in tracks[i : i + GATHER_SLICE]:
                lanes = self.source.lanes_of(t, limit)
                if lanes:
                    out.append((t, list(lanes)))
            await asyncio.sleep(0)
        return out

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork would copy the whole graph's pages for a process that needs a list.
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
