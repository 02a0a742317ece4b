"""The read side of the daemon: neighbors, one track, the top tracks, with takedowns applied
and catalogue metadata added. Neighbors come from the kept lanes (gravityd/daemon/reads.py).

A mixin of `Gravityd` (gravityd/daemon/service.py), which owns the state named below.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any

from gravityd.core import takedowns
from gravityd.core.graph import GravityGraph
from gravityd.core.takedowns import Blocks
from gravityd.daemon.galaxies import GalaxyKeeper
from gravityd.daemon.reads import LaneKeeper
from gravityd.log import Catalog

TOP_TRACKS_TTL_S = 10.0


class TrackReads:
    """What the explorer and the radio read about tracks, over the state `Gravityd` sets up."""

    graph: GravityGraph
    blocks: Blocks
    lanes: LaneKeeper
    galaxies: GalaxyKeeper
    catalog: Catalog
    _top: tuple[float, list[str], int]

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
