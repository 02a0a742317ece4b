"""Galaxies: the shape of the whole warp-lane graph, for the map (docs/galaxies.md).

A galaxy is a community of the lanes graph: tracks listeners treat as one neighbourhood. The
lanes graph has an arc a->b weighted by b's ``normalized_score`` among a's out-lanes (what
`gravity_neighbors` serves), so every track's strongest lane weighs 1 whatever its traffic:
a galaxy is a neighbourhood of taste, not of popularity. Communities come from networkx's
Louvain (directed modularity, a fixed seed, `resolution` documented in config/gravityd.toml);
centrality is PageRank on the same arcs, so a track many neighbourhoods lead to ranks high.

Everything here is a pure function of its input: the same lanes give the same galaxies, the
same ids and the same layout on every replica (nodes and arcs enter networkx in sorted order,
since Louvain's result depends on the order it visits them as well as on the seed). Galaxy ids
are ranks: 0 is the biggest galaxy, ties broken by the most central track's id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from gravityd.core.checks import check_fields

# Sunflower spiral (Vogel 1979): evenly filled discs with no iteration and no randomness.
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

Lanes = Iterable[tuple[str, Sequence[tuple[str, float]]]]


@dataclass(frozen=True)
class GalaxyParams:
    """The [galaxies] settings (config/gravityd.toml documents each)."""

    galaxies_interval_s: float = 300.0
    galaxies_resolution: float = 1.0
    galaxies_seed: int = 42
    galaxies_lanes_per_track: int = 20
    route_fanout: int = 16
    route_visit_budget: int = 20_000
    route_max_len: int = 32

    def __post_init__(self) -> None:
        check_fields(self)
        if self.galaxies_interval_s < 0:
            raise ValueError("galaxies_interval_s: must be >= 0 (0 turns galaxies off)")
        if self.galaxies_resolution <= 0:
            raise ValueError("galaxies_resolution: must be > 0")
        for name in ("galaxies_lanes_per_track", "route_fanout", "route_visit_budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        if self.route_max_len < 1:
            raise ValueError("route_max_len: must be >= 1")


@dataclass(frozen=True)
class Galaxies:
    """One computation: who is in which galaxy, how central each track is, where it is drawn."""

    cursor: int  # the fold position of the lanes it was computed from
    computed_at: float  # unix seconds
    members: tuple[tuple[str, ...], ...]  # by galaxy id: tracks, most central first
    galaxy_of: Mapping[str, int]
    centrality: Mapping[str, float]  # PageRank, sums to 1 over the tracks with lanes
    positions: Mapping[str, tuple[float, float]]  # the map's 2D layout, roughly in [-1, 1]

    @property
    def count(self) -> int:
        return len(self.members)

    def to_records(self) -> dict[str, Any]:
        """A msgpack-ready form (plain lists), for snapshots and the worker process's answer."""
        return {
            "cursor": self.cursor,
            "computed_at": self.computed_at,
            "members": [list(m) for m in self.members],
            "centrality": [[self.centrality[t] for t in m] for m in self.members],
            "positions": [[list(self.positions[t]) for t in m] for m in self.members],
        }

    @classmethod
    def from_records(cls, rec: Mapping[str, Any]) -> Galaxies:
        members = tuple(tuple(m) for m in rec["members"])
        galaxy_of: dict[str, int] = {}
        centrality: dict[str, float] = {}
        positions: dict[str, tuple[float, float]] = {}
        for gid, (tracks, cents, pos) in enumerate(
            zip(members, rec["centrality"], rec["positions"], strict=True)
        ):
            for t, c, xy in zip(tracks, cents, pos, strict=True):
                galaxy_of[t] = gid
                centrality[t] = float(c)
                positions[t] = (float(xy[0]), float(xy[1]))
        return cls(
            cursor=int(rec["cursor"]),
            computed_at=float(rec["computed_at"]),
            members=members,
            galaxy_of=galaxy_of,
            centrality=centrality,
            positions=positions,
        )


EMPTY = Galaxies(0, 0.0, (), {}, {}, {})


def lanes_graph(lanes: Lanes) -> nx.DiGraph:
    """The lanes as a weighted DiGraph, built in sorted order so that Louvain is repeatable."""
    arcs = sorted(
        (src, dst, float(score))
        for src, out in lanes
        for dst, score in out
        if score > 0.0 and src != dst
    )
    g = nx.DiGraph()
    g.add_nodes_from(sorted({t for a in arcs for t in a[:2]}))
    g.add_weighted_edges_from(arcs)
    return g


def compute_galaxies(
    lanes: Lanes,
    *,
    resolution: float = 1.0,
    seed: int = 0,
    cursor: int = 0,
    computed_at: float = 0.0,
) -> Galaxies:
    """Communities, centrality and layout of the lanes graph (see the module docstring)."""
    g = lanes_graph(lanes)
    if g.number_of_nodes() == 0:
        return Galaxies(cursor, computed_at, (), {}, {}, {})
    communities = nx.community.louvain_communities(
        g, weight="weight", resolution=resolution, seed=seed
    )
    centrality = nx.pagerank(g, weight="weight")
    ordered = [sorted(c, key=lambda t: (-centrality[t], t)) for c in communities]
    ordered.sort(key=lambda m: (-len(m), m[0]))
    members = tuple(tuple(m) for m in ordered)
    galaxy_of = {t: gid for gid, m in enumerate(members) for t in m}
    positions = layout(g, members, galaxy_of, seed=seed)
    return Galaxies(
        cursor=cursor,
        computed_at=computed_at,
        members=members,
        galaxy_of=galaxy_of,
        centrality={t: round(c, 9) for t, c in centrality.items()},
        positions=positions,
    )


def layout(
    g: nx.DiGraph,
    members: Sequence[Sequence[str]],
    galaxy_of: Mapping[str, int],
    *,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Galaxies placed by a spring layout of the galaxy graph (arcs between galaxies summed),
    each drawn as a sunflower disc of area proportional to its size, most central track in the
    middle. Spring layout over galaxies (hundreds of nodes), never over tracks, keeps it cheap."""
    between: dict[tuple[int, int], float] = {}
    for a, b, w in g.edges(data="weight"):
        ga, gb = galaxy_of[a], galaxy_of[b]
        if ga != gb:
            key = (min(ga, gb), max(ga, gb))
            between[key] = between.get(key, 0.0) + w
    q = nx.Graph()
    q.add_nodes_from(range(len(members)))
    q.add_weighted_edges_from((a, b, w) for (a, b), w in sorted(between.items()))
    if len(members) == 1:
        centres = {0: (0.0, 0.0)}
    else:
        raw = nx.spring_layout(q, weight="weight", seed=seed)
        centres = {k: (float(v[0]), float(v[1])) for k, v in raw.items()}
    total = sum(len(m) for m in members)
    # Discs share about a fifth of the unit square's area, so neighbouring galaxies rarely
    # overlap (the spring layout spreads galaxy centres over about [-1, 1]).
    unit = math.sqrt(0.2 / (math.pi * total)) if total else 0.0
    out: dict[str, tuple[float, float]] = {}
    for gid, m in enumerate(members):
        cx, cy = centres[gid]
        for i, t in enumerate(m):
            r = unit * math.sqrt(i)
            a = i * _GOLDEN_ANGLE
            out[t] = (round(cx + r * math.cos(a), 6), round(cy + r * math.sin(a), 6))
    return out
