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
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from gravityd.core.galaxies import EMPTY, Galaxies, GalaxyParams, compute_galaxies
from gravityd.core.routes import Route, RouteBounds, RouteGraph, best_route
from gravityd.daemon.workers import Worker

log = logging.getLogger("gravityd.galaxies")

GATHER_SLICE = 64  # tracks read per slice while gathering lanes: a fraction of a millisecond
SNAPSHOT_PART = "galaxies"  # the snapshot part that carries them (one record)


class LanesSource(Protocol):
    """What the keeper reads: the tracks, and each one's served out-lanes, best first."""

    def tracks(self) -> Sequence[str]: ...

    def lanes_of(self, track_id: str, limit: int) -> Sequence[tuple[str, float]]: ...


class ServedLanes:
    """A LanesSource from two callables (the daemon's graph is replaced when a snapshot loads,
    so it is looked up at each call)."""

    def __init__(
        self,
        tracks: Callable[[], Sequence[str]],
        lanes_of: Callable[[str, int], Sequence[tuple[str, float]]],
    ) -> None:
        self.tracks = tracks
        self.lanes_of = lanes_of


def _compute(
    lanes: list,
    resolution: float,
    seed: int,
    cursor: int,
    at: float,
    per_track: int,
    fanout: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs in the worker process: plain lists in, plain lists and arrays out (cheap to
    pickle): the galaxies, and the lanes compiled for routes."""
    gal = compute_galaxies(
        ((t, out[:per_track]) for t, out in lanes),
        resolution=resolution,
        seed=seed,
        cursor=cursor,
        computed_at=at,
    )
    return gal.to_records(), RouteGraph.arrays(lanes, fanout)


class GalaxyKeeper:
    """Owns the current galaxies and the worker process that recomputes them."""

    def __init__(
        self,
        params: GalaxyParams,
        source: LanesSource,
        *,
        on_computed: Callable[[float, int], None] | None = None,
        on_failed: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.params = params
        self.source = source
        self.current: Galaxies = EMPTY
        self.on_computed = on_computed
        self.on_failed = on_failed
        self.clock = clock
        self.computing = False
        self.last_started = float("-inf")  # monotonic
        self._worker = Worker()
        self._lock = asyncio.Lock()
        self._ranked: tuple[Galaxies, list[str]] | None = None
        self.route_graph: RouteGraph | None = None  # the lanes compiled with the galaxies

    @property
    def enabled(self) -> bool:
        return self.params.galaxies_interval_s > 0

    def adopt(self, records: dict[str, Any] | None) -> None:
        """Serve what a snapshot carried until the first computation replaces it."""
        if records:
            self.current = Galaxies.from_records(records)

    async def run(self, cursor: Callable[[], int]) -> None:
        """Recompute whenever due; a failure is logged and tried again an interval later."""
        if not self.enabled:
            return
        while True:
            at = cursor()
            if self.due(at):
                try:
                    await self.refresh(at)
                except Exception as exc:  # a worker that died, a bad input: never fatal
                    if self.on_failed is not None:
                        self.on_failed()
                    log.error("galaxies failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                    self.close()  # a broken pool is replaced at the next try
            await asyncio.sleep(min(1.0, self.params.galaxies_interval_s))

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
                if not lanes:  # nothing to compute: no worker process is started for it
                    self.current = Galaxies(cursor, self.clock(), (), {}, {}, {})
                    self.route_graph = None
                    return False
                started = time.perf_counter()
                p = self.params
                rec, arrays = await self._worker.run(
                    _compute,
                    lanes,
                    p.galaxies_resolution,
                    p.galaxies_seed,
                    cursor,
                    self.clock(),
                    p.galaxies_lanes_per_track,
                    p.route_fanout,
                )
                took = time.perf_counter() - started
            finally:
                self.computing = False
            self.current = Galaxies.from_records(rec)
            self.route_graph = await asyncio.to_thread(RouteGraph.from_arrays, arrays)
            log.info(
                "galaxies computed",
                extra={"cursor": cursor, "galaxies": self.current.count, "seconds": round(took, 3)},
            )
            if self.on_computed is not None:
                self.on_computed(took, self.current.count)
            return True

    async def _gather(self) -> list[tuple[str, list[tuple[str, float]]]]:
        """Every track's strongest lanes, a slice at a time so that reads go on in between."""
        p = self.params
        limit = max(p.galaxies_lanes_per_track, p.route_fanout)  # galaxies read the first
        tracks = list(self.source.tracks())
        out: list[tuple[str, list[tuple[str, float]]]] = []
        for i in range(0, len(tracks), GATHER_SLICE):
            for t in tracks[i : i + GATHER_SLICE]:
                lanes = self.source.lanes_of(t, limit)
                if lanes:
                    out.append((t, list(lanes)))
            await asyncio.sleep(0)
        return out

    # ------------------------------------------------------------------ reads, O(limit)

    def page(self, limit: int) -> dict[str, Any]:
        """GET /galaxies: the biggest galaxies, each with its most central tracks."""
        gal = self.current
        return {
            "cursor": gal.cursor,
            "computed_at": _iso(gal.computed_at) if gal.count else None,
            "count": gal.count,
            "galaxies": [
                {"galaxy": gid, "size": len(m), "tracks": list(m[:10]), "label": None}
                for gid, m in enumerate(gal.members[:limit])
            ],
        }

    def galaxy(self, gid: int, limit: int) -> dict[str, Any] | None:
        """GET /galaxies/{galaxy} without the catalogue's titles; None for an unknown id."""
        gal = self.current
        if not 0 <= gid < gal.count:
            return None
        members = gal.members[gid]
        tracks = []
        for t in members[:limit]:
            x, y = gal.positions[t]
            tracks.append({"track_id": t, "centrality": gal.centrality[t], "x": x, "y": y})
        return {"galaxy": gid, "size": len(members), "tracks": tracks}

    def of_track(self, track_id: str) -> tuple[int | None, float | None]:
        gal = self.current
        return gal.galaxy_of.get(track_id), gal.centrality.get(track_id)

    def most_central(self, limit: int) -> list[str]:
        """Tracks by centrality, highest first (a sort per computation, not per read)."""
        gal = self.current
        ranked = self._ranked
        if ranked is None or ranked[0] is not gal:
            order = sorted(gal.centrality, key=lambda t: (-gal.centrality[t], t))
            ranked = self._ranked = (gal, order)
        return ranked[1][:limit]

    async def route(
        self, src: str, dst: str, max_len: int, blocked: Collection[str] = frozenset()
    ) -> dict[str, Any] | None:
        """GET /route: the best route along the served lanes (gravityd/core/routes.py).

        First the compiled lanes of the last computation (scipy, in a thread: milliseconds),
        kept only if every hop is still a served lane and it fits the bounds; else the bounded
        label search over the live lanes. Either way each hop is a lane now, scored as now."""
        p = self.params
        lanes_of = self.source.lanes_of
        found = None
        graph = self.route_graph
        if graph is not None:
            fast = await asyncio.to_thread(graph.best, src, dst, max_len, blocked)
            if fast is not None:
                scores = []
                for a, b in itertools.pairwise(fast.path):
                    now = dict(lanes_of(a, p.route_fanout)).get(b)
                    if now is None:
                        break  # a hop left the lanes since: search the live ones
                    scores.append(now)
                else:
                    found = Route(fast.path, tuple(scores))
        if found is None:
            bounds = RouteBounds(max_len, p.route_fanout, p.route_visit_budget)
            found = best_route(lambda t: lanes_of(t, p.route_fanout), src, dst, bounds, blocked)
        if found is None:
            return None
        return {
            "from": src,
            "to": dst,
            "path": list(found.path),
            "hops": found.hops,
            "score": found.score,
            "scores": list(found.scores),
        }

    def rows(self, chunk: int = 5000) -> Iterator[list[tuple[str, int, float]]]:
        """The served galaxies as track_galaxies rows (track_id, galaxy, centrality)."""
        gal = self.current
        out: list[tuple[str, int, float]] = []
        for gid, members in enumerate(gal.members):
            for t in members:
                out.append((t, gid, gal.centrality[t]))
                if len(out) >= chunk:
                    yield out
                    out = []
        if out:
            yield out

    def close(self) -> None:
        self._worker.close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
