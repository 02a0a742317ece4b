"""The radio service's entry point: `from gravityd.gravity import rank_candidates` (and
`route`, a playable path between two tracks).

Without `graph=`, ranking uses the graph of the newest snapshot in the configured snapshot
folder (GRAVITYD_SNAPSHOT_DIR, else the config file). The folder is looked at no more than once
a second; a newer snapshot is loaded by one caller while the others keep ranking on the graph
they have, so a reload never stalls the radio. Safe to call from many threads: a loaded graph
is only ever read.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from gravityd.config import Config, load_config
from gravityd.core import ranking
from gravityd.core.events import canonical_uuid
from gravityd.core.graph import GravityGraph
from gravityd.core.lanes import compute_track
from gravityd.core.routes import RouteBounds, best_route
from gravityd.core.session_index import SessionIndex
from gravityd.core.takedowns import Blocks, visible_ids
from gravityd.core.transitions import TransitionModel
from gravityd.snapshots.files import list_snapshots, load_newest
from gravityd.snapshots.state import model_from_header, sessions_from_header

log = logging.getLogger("gravityd.gravity")

__all__ = ["SnapshotGraph", "rank_candidates", "route"]

CHECK_INTERVAL_S = 1.0


class SnapshotGraph:
    """The newest snapshot's graph of one folder, swapped for a newer one when it appears."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.folder = config.snapshot_dir
        self.graph: GravityGraph | None = None
        self.blocked: frozenset[str] = frozenset()  # the snapshot's takedowns
        self.sessions: SessionIndex | None = None  # the snapshot's session index
        self.model: TransitionModel | None = None  # the snapshot's learned transition model
        self.path: str | None = None
        self._checked = 0.0
        self._reload = threading.Lock()

    def get(self) -> GravityGraph | None:
        now = time.monotonic()
        if self.graph is not None and now - self._checked < CHECK_INTERVAL_S:
            return self.graph
        # One caller reloads; the others go on with the graph they have (first load: they wait).
        if self._reload.acquire(blocking=self.graph is None):
            try:
                if self.graph is None or time.monotonic() - self._checked >= CHECK_INTERVAL_S:
                    self._refresh()
            finally:
                self._reload.release()
        return self.graph

    def _refresh(self) -> None:
        self._checked = time.monotonic()
        snaps = list_snapshots(self.folder)
        if not snaps or str(snaps[0].path) == self.path:
            return
        found = load_newest(self.folder, self.config.graph)
        if found is None:
            return
        info, header, graph = found
        if str(info.path) == self.path:
            return
        gc.freeze()  # a full collection over a big graph would stall callers for 100+ ms
        # blocks first: a caller between the two lines filters by the newer set, never misses one
        self.blocked = Blocks.from_header(header).ids | self.blocked
        self.sessions = sessions_from_header(header, self.config.graph)
        self.model = model_from_header(header, self.config.graph)
        self.graph, self.path = graph, str(info.path)
        self.blocked = Blocks.from_header(header).ids
        log.info("ranking graph loaded", extra={"path": self.path, "edges": graph.edge_count})


_sources: dict[tuple[str | None, str | None], SnapshotGraph] = {}
_sources_lock = threading.Lock()


def _default_source() -> SnapshotGraph:
    """The snapshot graph of the configured folder; the config is read once per setting."""
    key = (os.environ.get("GRAVITYD_CONFIG"), os.environ.get("GRAVITYD_SNAPSHOT_DIR"))
    src = _sources.get(key)
    if src is None:
        with _sources_lock:
            src = _sources.get(key)
            if src is None:
                src = _sources[key] = SnapshotGraph(load_config())
    return src


def _canon(t: str) -> str:
    # the graph holds lower-case UUIDs; the regex runs only for ids that need it
    if type(t) is str and t.islower():
        return t
    return canonical_uuid(t) or t


def rank_candidates(
    current_track_id: str,
    candidate_track_ids: Iterable[str],
    embeddings_scores: Mapping[str, Any] | None,
    session_history: Iterable[str] | None = None,
    *,
    graph: GravityGraph | None = None,
    limit: int | None = None,
    params: ranking.RankParams | None = None,
    now: float | None = None,
    blocked: Collection[str] | None = None,
    sessions: SessionIndex | None = None,
    model: TransitionModel | None = None,
) -> list[dict[str, Any]]:
    """Rank the radio's candidates best first (see gravityd.core.ranking for the formula).

    Ids may be given in any case; they are compared in canonical lower-case form, as the graph
    stores them (ids that are not UUIDs are compared as given). Tracks of session_history and
    the current track are never returned, nor blocked tracks: those of the newest snapshot
    when `graph` is not given, else those of `blocked` (canonical ids). The session index
    (session neighbours' votes) and the learned transition model (the prior) are the
    snapshot's when `graph` is not given, else `sessions` and `model`.
    """
    source = None
    if graph is None or params is None:
        source = _default_source()
        if graph is None:
            graph = source.get()
            if blocked is None:
                blocked = source.blocked
            if sessions is None:
                sessions = source.sessions
            if model is None:
                model = source.model
        if params is None:
            params = source.config.rank

    scores = None
    if embeddings_scores is not None:
        scores = {_canon(k): v for k, v in embeddings_scores.items()}
    return ranking.rank_pool(
        _canon(current_track_id),
        visible_ids([_canon(c) for c in candidate_track_ids], blocked),
        scores,
        None if session_history is None else [_canon(h) for h in session_history],
        graph=graph,
        limit=limit,
        params=params,
        now=now,
        sessions=sessions,
        model=model,
    )


# Per graph: each track's out-lanes as (track id, normalized_score), computed the first time a
# route passes the track (a loaded graph is only read, so what is computed stays right).
_route_lanes: weakref.WeakKeyDictionary[GravityGraph, dict[str, list[tuple[str, float]]]] = (
    weakref.WeakKeyDictionary()
)


def route(
    from_track_id: str,
    to_track_id: str,
    max_len: int = 12,
    *,
    graph: GravityGraph | None = None,
    blocked: Collection[str] | None = None,
) -> list[str]:
    """The best playable path from one track to another along warp lanes (the contract's
    GET /route, in process): track ids from `from_track_id` to `to_track_id`, every hop a
    lane, no track twice, no blocked track; [] when there is none within `max_len` hops or
    the search's bounds (docs/galaxies.md). Graph and takedowns as for rank_candidates."""
    if max_len < 1:
        raise ValueError("max_len: must be >= 1")
    source = _default_source()  # its settings are read once; its graph only when asked for
    if graph is None:
        graph = source.get()
        if blocked is None:
            blocked = source.blocked
    if graph is None:
        return []
    params = source.config.galaxies
    memo = _route_lanes.setdefault(graph, {})
    fanout = params.route_fanout
    keep = max(fanout, 1)

    def lanes_of(t: str) -> list[tuple[str, float]]:
        got = memo.get(t)
        if got is None:
            succ, _ = graph.adjacency()
            got = []
            if t in succ:
                side = compute_track(graph, t, None, keep).out
                if side.top > 0.0:
                    pairs = zip(side.ids, side.weights, strict=True)
                    got = [(d, min(1.0, w / side.top)) for d, w in pairs]
            memo[t] = got
        return got

    found = best_route(
        lanes_of,
        _canon(from_track_id),
        _canon(to_track_id),
        RouteBounds(max_len, fanout, params.route_visit_budget),
        frozenset(blocked or ()),
    )
    return [] if found is None else list(found.path)
