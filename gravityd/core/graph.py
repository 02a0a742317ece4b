"""The gravity graph: how listeners move between tracks, folded into a weighted directed graph.

Model (docs/design.md, section 2). Events are grouped by session and applied in log (id) order. Each
session remembers its recent tracks ("steps", newest last) with the verdicts already given on each.
An event on a track that is not the session's current track makes it the new current track: the
session moved from its previous step A to B, which counts one traversal (`n`) on A->B. The events
on B are the listener's verdict on the transitions *into* B:

- ``play_start`` adds ``weight_play_start`` (0 by default: starting is not liking);
- ``play_10s`` adds ``weight_play_10s`` (accepted), ``like`` adds ``weight_like`` (loved);
- ``skip`` at ``elapsed_ms`` subtracts ``skip_penalty * max(0, 1 - elapsed_ms / skip_grade_ms)``
  from A->B only: the earliest skips cost the most, a skip after the grading window costs nothing,
  and no single skip ever deletes an edge;
- ``radio_next`` marks B as the radio's pick and carries no weight: the verdict comes after it.

Each kind of verdict counts at most once per (session, transition), so retried or duplicated events
do not inflate an edge. A positive verdict on B credits every earlier step within ``credit_window``
steps (the SR rule of Ludewig & Jannach 2018) with ``weight * distance ** -distance_discount_power``
(1/d by default); a track repeated within the window is credited once, at its nearest distance, and
there are never self-loops. A skip only hits the immediate predecessor. A track skipped within
``skip_through_ms`` is passed through: it becomes invisible to what follows, so after A, B (skipped
at 2 s), C (kept), the listener went A->C and A->C is credited at distance 1 (A->B still gets the
skip penalty).

Sessions and odd input:

- A session silent longer than ``session_timeout_s`` starts fresh: no edge crosses the gap.
- A late event (its timestamp older than its session's latest) is applied in log order with its
  time clamped to the session's latest time; the log, not the client clock, orders a session.
- A verdict (``play_10s``, ``like``, ``skip``) on a track the session played earlier and still
  remembers (its last ``2 * credit_window + 2`` tracks) is a late verdict: it applies to that
  earlier occurrence's incoming edges, once per kind. Any other event on a track that is not the
  current one (including ``play_start``/``radio_next`` of a track played before, and a verdict
  on a track the session never announced) makes that track the new current track.

Decay is forward decay (Cormode et al., ICDE 2009): a contribution at time t is stored multiplied by
2^((t - t0)/H), H = ``half_life_days`` days, and every read multiplies by 2^(-(now - t0)/H), so
nothing is touched to age the graph and relative order never changes. When an event's exponent
exceeds ``rebase_exponent`` every stored value is rescaled once and t0 moves to that event's time.

Memory stays bounded two ways. A track never holds more than 2K out-edges (K =
``max_edges_per_track``): when a new edge would exceed that, the track is first trimmed to its K
strongest by decayed |w| (ties by track id), dropping any under ``epsilon``. And at every log id
that crosses a multiple of ``maintenance_every`` an incremental sweep examines the next of
``maintenance_parts`` slices of the tracks and sessions (by a stable hash, CRC-32 of the id, so
the slices survive a restart): edges whose decayed |w| is under ``epsilon`` go, tracks without
edges go, and sessions silent past the timeout are forgotten. Sweeping in small steps keeps each
one to a few milliseconds, so reads interleaved with the fold never stall behind a full pass. The
sweep's time is the log clock (the latest event time folded so far). ``maintain_all`` (never
called by the fold) does a full pass and also trims every track to K, e.g. before a snapshot.

Rebasing and maintenance happen at events the log decides, never on a timer or at batch ends, so
folding a log in one batch or in any split gives bit-identical state. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import networkx as nx

from gravityd.core.events import FoldEvent
from gravityd.core.lanes import fresh_neighbors
from gravityd.core.params import FoldParams

__all__ = ["STATE_VERSION", "FoldParams", "GravityGraph", "graph_signature", "state_from_records"]

STATE_VERSION = 3

# Per-step verdict flags in a session's memory.
F_START = 1  # play_start seen
F_P10 = 2  # play_10s seen
F_LIKE = 4  # like seen
F_SKIP = 8  # skip seen
F_RADIO = 16  # radio_next seen: the radio picked this track
F_THROUGH = 64  # skipped within skip_through_ms: invisible to later steps (the highest bit)

_RADIO, _START, _P10, _LIKE, _SKIP = 1, 2, 3, 4, 5
_CODES = {
    "radio_next": _RADIO,
    "play_start": _START,
    "play_10s": _P10,
    "like": _LIKE,
    "skip": _SKIP,
}
_DIRECTIONS = ("out", "in", "both")
_DAY = 86400.0

EdgeRow = tuple[str, str, float, float, float, int]


class GravityGraph:
    """The track graph, the sessions' memory and the cursor, which always travel together.

    Edge attributes (all stored forward-scaled except ``n``): ``pos`` and ``neg`` the positive
    and negative evidence (both >= 0; the net weight is pos - neg, derived, never stored twice),
    ``acc`` the part of
    ``pos`` from direct verdicts (B kept right after A, distance 1: what a skip is weighed
    against; the rest of ``pos`` is multi-step credit), ``n`` the traversals.
    A session's state is a list ``[last_ts, steps, flags]``: its latest (clamped) event time, its
    recent track ids (current last) and a verdict bit set per step.
    """

    def __init__(self, params: FoldParams | None = None) -> None:
        self.params = params if params is not None else FoldParams()
        self.g, self._node, self._succ, self._pred = _new_digraph()
        self.sessions: dict[str, list[Any]] = {}
        self.cursor = 0
        self.t0 = 0.0
        self.clock = 0.0  # latest event time folded: the log's notion of now
        self._n_edges = 0
        p = self.params
        self._h = p.half_life_days * _DAY if p.half_life_days > 0 else 0.0
        # _disc[d - 1] is the credit multiplier at distance d.
        self._disc = [
            1.0 if d == 1 else float(d) ** -p.distance_discount_power
            for d in range(1, p.credit_window + 1)
        ]
        # Maintenance slices: node and session ids by CRC-32 modulo parts; the next slice to sweep.
        self._node_parts: list[set[str]] = [set() for _ in range(p.maintenance_parts)]
        self._session_parts: list[set[str]] = [set() for _ in range(p.maintenance_parts)]
        self._sweep = 0
        self._steps_cap = 2 * p.credit_window + 2
        # Tracks whose edges the fold changed: whoever keeps lanes (gravityd/core/lanes.py)
        # takes them after each fold and recomputes those tracks off the request path.
        self.touched: set[str] = set()

    # ----------------------------------------------------------------------- reading

    @property
    def node_count(self) -> int:
        return len(self._node)

    @property
    def edge_count(self) -> int:
        return self._n_edges

    @property
    def session_count(self) -> int:
        return len(self.sessions)

    def tracks(self) -> list[str]:
        """Every track in the graph (a copy: safe to walk while the fold runs between slices)."""
        return list(self._node)

    def out_edges(self, track_id: str) -> Mapping[str, Mapping[str, Any]] | None:
        """The stored (forward-scaled) out-edges of a track, read-only: {dst: {pos, neg, acc, n}}.

        For hot readers (the ranking) that weigh many edges: multiply by decay_factor() to read
        weights. None for a track the graph does not hold.
        """
        return self._succ.get(track_id)

    def adjacency(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The successor and predecessor dicts ({track: {other: edge}}), for hot readers that
        must not change them (the lanes refresh)."""
        return self._succ, self._pred

    def decay_factor_at(self, t0: float, now: float | None = None) -> float:
        """decay_factor() for values stored with landmark t0 (kept lanes computed before a
        rebase moved the graph's)."""
        return forward_decay_factor(t0, self._h, now)

    def advance_cursor(self, position: int) -> None:
        """Move the cursor past positions that hold nothing to fold (ids reserved after a restored
        snapshot, an event the fold had to skip); never backwards."""
        if position > self.cursor:
            self.cursor = position

    def decay_factor(self, now: float | None = None) -> float:
        """Multiply a stored value by this to get its weight at `now` (seconds, default: now)."""
        return forward_decay_factor(self.t0, self._h, now)

    def edge(self, src: str, dst: str, now: float | None = None) -> dict[str, float] | None:
        """Decayed w, pos, neg and the traversal count n of src->dst, or None if absent."""
        nbrs = self._succ.get(src)
        e = nbrs.get(dst) if nbrs is not None else None
        if e is None:
            return None
        f = self.decay_factor(now)
        return {
            "w": (e["pos"] - e["neg"]) * f,
            "pos": e["pos"] * f,
            "neg": e["neg"] * f,
            "acc": e["acc"] * f,
            "n": e["n"],
        }

    def neighbors(
        self,
        track_id: str,
        *,
        limit: int = 10,
        direction: str = "out",
        min_score: float = 0.0,
        now: float | None = None,
        rejected: bool = False,
    ) -> list[dict[str, Any]]:
        """Warp lanes of a track, strongest first (ties by track id), computed now from the
        edges: the reference every kept answer (gravityd/core/lanes.py) equals once refreshed.

        Only edges with a positive net weight are lanes: a transition listeners reject never shows.
        ``weight`` is the decayed net weight at `now`; ``normalized_score`` is weight divided by the
        strongest positive weight of this track in this direction, so the top lane scores 1.0 and
        scores are in (0, 1] and monotone in weight. ``direction="both"`` merges out- and in-lanes,
        keeping the stronger lane per track (out on a tie), normalised over the merged set.
        ``min_score`` filters on normalized_score. Unknown track: []. ``evidence`` is the direct
        edge's (zeros for a lane of two hops or backward credit only).

        ``rejected=True`` (the explorer's "show skipped-away transitions") appends, after the
        lanes, up to `limit` edges whose net weight is not positive, most rejected first, marked
        ``"rejected": true`` with score 0: they are never lanes, but people tuning the map want to
        see what listeners push apart.
        """
        return fresh_neighbors(
            self,
            track_id,
            limit=limit,
            direction=direction,
            min_score=min_score,
            now=now,
            rejected=rejected,
        )

    def take_touched(self) -> set[str]:
        """The tracks whose edges the fold changed since the last call (kept lanes to redo)."""
        touched = self.touched
        self.touched = set()
        return touched

    def direct_evidence(
        self, tracks: Iterable[str], now: float | None = None
    ) -> list[tuple[str, str, float, float]]:
        """(a, b, kept, skipped) of the out-edges of these tracks with direct verdicts, decayed
        to `now`: what the learned transition model trains on (read in slices by a daemon)."""
        f = 1.0 if now is None else self.decay_factor(now)
        succ = self._succ
        out = []
        for a in tracks:
            nbrs = succ.get(a)
            if nbrs:
                for b, e in nbrs.items():
                    if e["acc"] > 0.0 or e["neg"] > 0.0:
                        out.append((a, b, e["acc"] * f, e["neg"] * f))
        return out

    def lane_counts(self, track_id: str) -> tuple[int, int]:
        """How many out- and in-lanes (positive net weight) a track has."""
        if track_id not in self._succ:
            return 0, 0
        return (
            sum(1 for e in self._succ[track_id].values() if e["pos"] > e["neg"]),
            sum(1 for e in self._pred[track_id].values() if e["pos"] > e["neg"]),
        )

    def to_edge_list(self, now: float | None = None) -> list[EdgeRow]:
        """Sorted (src, dst, w, pos, neg, n, acc); stored (forward-scaled) values, decayed if
        `now`."""
        f = 1.0 if now is None else self.decay_factor(now)
        return sorted(
            (u, v, (e["pos"] - e["neg"]) * f, e["pos"] * f, e["neg"] * f, e["n"], e["acc"] * f)
            for u, nbrs in self._succ.items()
            for v, e in nbrs.items()
        )

    # ----------------------------------------------------------------------- folding

    def fold(self, events: Sequence[FoldEvent]) -> int:
        """Fold a batch in log order; events at or below the cursor are skipped (replay is a no-op).

        Returns how many events were folded. The result is the same whatever the batch boundaries.
        """
        p = self.params
        sessions = self.sessions
        succ = self._succ
        cursor = self.cursor
        clock = self.clock
        timeout = p.session_timeout_s
        h = self._h
        bound = p.rebase_exponent
        cap = self._steps_cap
        every = p.maintenance_every
        mark = (cursor // every + 1) * every  # the next log id that triggers a sweep step
        every_part = p.maintenance_parts
        w_start, w_p10, w_like = p.weight_play_start, p.weight_play_10s, p.weight_like
        skip_pen, grade_ms = p.skip_penalty, p.skip_grade_ms
        default_elapsed, through_ms = p.skip_default_elapsed_ms, p.skip_through_ms
        codes = _CODES
        intern = sys.intern
        credit = self._credit
        new_edge = self._new_edge
        touched = self.touched
        count = 0
        try:
            for ev in events:
                eid, sid, tid, etype, t, elapsed, _ = ev
                if eid <= cursor:
                    continue
                count += 1
                code = codes.get(etype, 0)
                if not code:  # not a fold signal: nothing to learn, the cursor still moves
                    if eid >= mark:  # the log id crossed a multiple of maintenance_every
                        self.clock = clock
                        self._maintain(clock)
                        mark = (eid // every + 1) * every
                    cursor = eid
                    continue
                st = sessions.get(sid)
                if st is None or t - st[0] > timeout:
                    if st is None:
                        self._session_parts[_part(sid, every_part)].add(sid)
                    st = [t, [], []]
                    sessions[sid] = st
                elif t < st[0]:
                    t = st[0]  # late event: clamp to the session's latest time
                else:
                    st[0] = t
                if t > clock:
                    clock = t
                steps = st[1]
                flags = st[2]
                if steps and steps[-1] == tid:
                    j = len(steps) - 1
                else:
                    j = -1
                    if code >= _P10 and tid in steps:  # late verdict on an earlier step
                        j = len(steps) - 2
                        while steps[j] != tid:
                            j -= 1
                    if j < 0:
                        # The session moved on to tid: a traversal from its visible predecessor.
                        tid = intern(tid)
                        steps.append(tid)
                        flags.append(0)
                        if len(steps) > cap:
                            del steps[0]
                            del flags[0]
                        j = len(steps) - 1
                        i = j - 1
                        while i >= 0 and flags[i] & F_THROUGH:
                            i -= 1
                        if i >= 0 and steps[i] != tid:
                            a = steps[i]
                            nbrs = succ.get(a)
                            e = nbrs.get(tid) if nbrs is not None else None
                            if e is None:
                                e = new_edge(a, tid, t)
                                touched.add(a)
                                touched.add(tid)
                            e["n"] += 1
                if code != _RADIO:
                    fl = flags[j]
                    if code == _SKIP:
                        bit, x = F_SKIP, 0.0
                        if not fl & F_SKIP:
                            el = default_elapsed if elapsed is None else elapsed
                            x = skip_pen * max(0.0, 1.0 - el / grade_ms)
                            if elapsed is not None and elapsed < through_ms:
                                fl |= F_THROUGH
                    elif code == _P10:
                        bit, x = F_P10, w_p10
                    elif code == _LIKE:
                        bit, x = F_LIKE, w_like
                    else:
                        bit, x = F_START, w_start
                    if not fl & bit:
                        flags[j] = fl | bit
                        if x > 0.0:
                            if h:
                                k = (t - self.t0) / h
                                if k > bound:
                                    self._rebase(t)
                                    k = 0.0
                                s = 2.0**k
                            else:
                                s = 1.0
                            if code == _SKIP:
                                i = j - 1
                                while i >= 0 and flags[i] & F_THROUGH:
                                    i -= 1
                                if i >= 0 and steps[i] != steps[j]:
                                    a = steps[i]
                                    b = steps[j]
                                    nbrs = succ.get(a)
                                    e = nbrs.get(b) if nbrs is not None else None
                                    if e is None:
                                        e = new_edge(a, b, t)
                                    e["neg"] += x * s
                                    touched.add(a)
                                    touched.add(b)
                            else:
                                credit(steps, flags, j, x * s, t)
                else:
                    flags[j] |= F_RADIO
                if eid >= mark:
                    self.clock = clock
                    self._maintain(clock)
                    mark = (eid // every + 1) * every
                cursor = eid
        finally:
            self.cursor = cursor
            self.clock = clock
            # networkx >= 3.3 caches conversions for its backends; the fold changed the graph
            # under it. The attribute is the documented backend interface, absent before 3.3.
            nx_cache = getattr(self.g, "__networkx_cache__", None)
            if nx_cache:
                nx_cache.clear()
        return count

    def _credit(self, steps: list[str], flags: list[int], j: int, v: float, t: float) -> None:
        """Credit v * discount(d) to every visible step within the window before step j."""
        b = steps[j]
        succ = self._succ
        if b not in succ:
            self._add_node(b)
        pred_b = self._pred[b]
        disc = self._disc
        window = len(disc)
        lo = j - window if j > window else 0
        if j == lo:
            return
        if max(flags[lo:j]) >= F_THROUGH:  # passed-through steps are invisible: look further back
            cand = []
            i = j - 1
            while i >= 0 and len(cand) < window:
                if not flags[i] & F_THROUGH:
                    cand.append(steps[i])
                i -= 1
        else:
            cand = steps[lo:j]
            cand.reverse()
        pairs: Any = zip(cand, disc, strict=False)
        if b in cand or len(set(cand)) != len(cand):  # rare: credit each track once, nearest
            seen = {b}
            pairs = [(a, dd) for a, dd in pairs if a not in seen and not seen.add(a)]
        keep = self.params.max_edges_per_track
        cap = 2 * keep
        created = 0
        direct = v  # the nearest visible step is the direct predecessor: a verdict on a->b
        touched = self.touched
        touched.add(b)
        for a, dd in pairs:
            touched.add(a)
            c = v * dd
            e = pred_b.get(a)  # the same dict as succ[a][b]: one lookup instead of two
            if e is None:
                nbrs = succ.get(a)
                if nbrs is None:
                    nbrs = self._add_node(a)
                if len(nbrs) >= keep and not direct:
                    # A full track opens no new edge for a far credit: it would be among the
                    # weakest and trimmed soon, and opening it costs more than the credit is worth.
                    direct = 0.0
                    continue
                if len(nbrs) >= cap:
                    self._trim(a, nbrs, self.decay_factor(t), cap // 2)
                nbrs[b] = pred_b[a] = {"pos": c, "neg": 0.0, "acc": direct, "n": 0}
                created += 1
            else:
                e["pos"] += c
                if direct:
                    e["acc"] += direct
            direct = 0.0
        self._n_edges += created

    def _add_node(self, node: str) -> dict[str, Any]:
        self._node_parts[_part(node, len(self._node_parts))].add(node)
        self._node[node] = {}
        self._pred[node] = {}
        nbrs: dict[str, Any] = {}
        self._succ[node] = nbrs
        return nbrs

    def _new_edge(self, a: str, b: str, t: float) -> dict[str, Any]:
        succ = self._succ
        nbrs = succ.get(a)
        if nbrs is None:
            nbrs = self._add_node(a)
        elif len(nbrs) >= 2 * self.params.max_edges_per_track:
            self._trim(a, nbrs, self.decay_factor(t), self.params.max_edges_per_track)
        if b not in succ:
            self._add_node(b)
        e: dict[str, Any] = {"pos": 0.0, "neg": 0.0, "acc": 0.0, "n": 0}
        nbrs[b] = e
        self._pred[b][a] = e
        self._n_edges += 1
        return e

    def _trim(self, u: str, nbrs: dict[str, Any], f: float, k: int) -> list[str]:
        """Drop u's edges under epsilon at decay factor f, then all but the k strongest by |w|."""
        eps = self.params.epsilon
        drop = [v for v, e in nbrs.items() if abs(e["pos"] - e["neg"]) * f < eps]
        if len(nbrs) - len(drop) > k:
            dropped = set(drop)
            ranked = sorted(
                (-abs(e["pos"] - e["neg"]), v) for v, e in nbrs.items() if v not in dropped
            )
            drop.extend(v for _, v in ranked[k:])
        if drop:
            pred = self._pred
            touched = self.touched
            touched.add(u)
            for v in drop:
                del nbrs[v]
                del pred[v][u]
                touched.add(v)
            self._n_edges -= len(drop)
        return drop

    def _rebase(self, t: float) -> None:
        """Move the landmark to t, rescaling every stored value so decayed weights are unchanged."""
        f = 2.0 ** (-(t - self.t0) / self._h)
        for nbrs in self._succ.values():
            for e in nbrs.values():
                e["pos"] *= f
                e["acc"] *= f
                e["neg"] *= f
        self.t0 = t
        self.touched.update(self._succ)  # every stored weight moved: kept lanes are redone

    def _maintain(self, now: float) -> None:
        """One sweep step over the next slice: faint edges, edgeless tracks, idle sessions."""
        part = self._sweep
        self._sweep = (part + 1) % len(self._node_parts)
        succ, pred = self._succ, self._pred
        nodes = self._node_parts[part]
        f = self.decay_factor(now)
        no_cap = len(succ) + 1  # the sweep only drops faint edges; the 2K rule bounds the rest
        check = list(nodes)
        for u in nodes:
            nbrs = succ[u]
            if nbrs:
                check.extend(self._trim(u, nbrs, f, no_cap))
        for u in check:
            if u in succ and not succ[u] and not pred[u]:
                self._node_parts[_part(u, len(self._node_parts))].discard(u)
                del succ[u]
                del pred[u]
                del self._node[u]
        sessions = self.sessions
        sids = self._session_parts[part]
        timeout = self.params.session_timeout_s
        idle = [sid for sid in sids if now - sessions[sid][0] > timeout]
        for sid in idle:
            sids.discard(sid)
            del sessions[sid]

    def maintain_all(self, now: float | None = None) -> None:
        """A full maintenance pass at `now` (default: the log clock), e.g. before a snapshot.

        Also trims every track to its K strongest edges. Never called by fold (which sweeps one
        slice at a time at log-decided points); calling it changes the state, so two graphs fed
        the same log stay equal only if both call it at the same points.
        """
        if now is None:
            now = self.clock
        f = self.decay_factor(now)
        k = self.params.max_edges_per_track
        for u, nbrs in self._succ.items():
            self._trim(u, nbrs, f, k)
        sweep = self._sweep
        for _ in range(len(self._node_parts)):
            self._maintain(now)
        self._sweep = sweep

    # ----------------------------------------------------------------------- state

    def export_state(self) -> dict[str, Any]:
        """Everything needed to resume folding, as msgpack-friendly lists indexed by a track table.

        ``tracks`` lists graph nodes first (``node_count`` of them) then tracks only sessions
        reference; edges are parallel arrays of track indices and values; sessions are flattened.
        """
        return state_from_records(self.iter_state(chunk=1 << 62))

    def iter_state(self, chunk: int = 50_000) -> Iterator[tuple[str, Any]]:
        """export_state() as a stream of records: ("meta", scalars) first, then ("tracks", list),
        ("edges", arrays) and ("sessions", arrays) pieces of at most `chunk` items that
        concatenate in order. A snapshot writer packs them one by one, so a large graph never
        needs a second full copy in memory. The graph must not change while this runs.
        """
        tracks = list(self._node)
        index: dict[str, int] = {}  # filled chunk by chunk: no single long step
        yield (
            "meta",
            {
                "version": STATE_VERSION,
                "cursor": self.cursor,
                "t0": self.t0,
                "clock": self.clock,
                "sweep": self._sweep,
                "node_count": len(tracks),
            },
        )
        for i in range(0, len(tracks), chunk):
            part = tracks[i : i + chunk]
            index.update(zip(part, range(i, i + len(part)), strict=True))
            yield "tracks", part
        cols: tuple[list, ...] = ([], [], [], [], [], [])
        for u, nbrs in self._succ.items():
            ui = index[u]
            src, dst, pos, neg, n, acc = cols
            for v, e in nbrs.items():
                src.append(ui)
                dst.append(index[v])
                pos.append(e["pos"])
                neg.append(e["neg"])
                n.append(e["n"])
                acc.append(e["acc"])
            if len(src) >= chunk:
                yield "edges", dict(zip(_EDGE_KEYS, cols, strict=True))
                cols = ([], [], [], [], [], [])
        if cols[0]:
            yield "edges", dict(zip(_EDGE_KEYS, cols, strict=True))
        extra: list[str] = []
        scols: tuple[list, ...] = ([], [], [], [], [])
        for sid, (ts, st_steps, st_flags) in self.sessions.items():
            sids, last_ts, lengths, steps, flags = scols
            sids.append(sid)
            last_ts.append(ts)
            lengths.append(len(st_steps))
            for t in st_steps:
                i = index.get(t)
                if i is None:
                    i = index[t] = len(index)
                    extra.append(t)
                steps.append(i)
            flags.extend(st_flags)
            if len(steps) >= chunk:  # sessions hold up to 2 * credit_window + 2 steps each
                if extra:
                    yield "tracks", extra
                    extra = []
                yield "sessions", dict(zip(_SESSION_KEYS, scols, strict=True))
                scols = ([], [], [], [], [])
        if extra:
            yield "tracks", extra
        if scols[0]:
            yield "sessions", dict(zip(_SESSION_KEYS, scols, strict=True))

    def edge_rows(
        self, now: float | None = None, chunk: int = 50_000
    ) -> Iterator[list[tuple[str, str, float, float, float, int]]]:
        """Edges as (src, dst, w, pos, neg, n) decayed to `now`, in lists of `chunk` rows."""
        f = self.decay_factor(now)
        rows: list[tuple[str, str, float, float, float, int]] = []
        for u, nbrs in self._succ.items():
            for v, e in nbrs.items():
                pos, neg = e["pos"], e["neg"]
                rows.append((u, v, (pos - neg) * f, pos * f, neg * f, e["n"]))
            if len(rows) >= chunk:
                yield rows
                rows = []
        if rows:
            yield rows

    @classmethod
    def from_state(cls, state: dict[str, Any], params: FoldParams | None = None) -> GravityGraph:
        """Rebuild a graph from export_state(); folding continues exactly as if never saved."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')!r} is not {STATE_VERSION}")
        gg = cls(params)
        intern = sys.intern
        tracks = [intern(t) for t in state["tracks"]]
        node_count = state["node_count"]
        if not 0 <= node_count <= len(tracks):
            raise ValueError("node_count: out of range")
        node, succ, pred = gg._node, gg._succ, gg._pred
        parts = len(gg._node_parts)
        for t in tracks[:node_count]:
            gg._node_parts[_part(t, parts)].add(t)
            node[t] = {}
            succ[t] = {}
            pred[t] = {}
        ed = state["edges"]
        cols = (ed["src"], ed["dst"], ed["pos"], ed["neg"], ed["n"], ed["acc"])
        if len({len(c) for c in cols}) != 1:
            raise ValueError("edges: arrays differ in length")
        for ui, vi, pos, neg, n, acc in zip(*cols, strict=True):
            if ui >= node_count or vi >= node_count:
                raise ValueError("edges: index outside the node table")
            u, v = tracks[ui], tracks[vi]
            e = {
                "pos": float(pos),
                "neg": float(neg),
                "acc": float(acc),
                "n": int(n),
            }
            succ[u][v] = e
            pred[v][u] = e
        gg._n_edges = len(cols[0])
        ss = state["sessions"]
        steps, flags = ss["steps"], ss["flags"]
        if len(steps) != len(flags) or sum(ss["lengths"]) != len(steps):
            raise ValueError("sessions: arrays differ in length")
        at = 0
        for sid, ts, length in zip(ss["ids"], ss["last_ts"], ss["lengths"], strict=True):
            gg._session_parts[_part(sid, parts)].add(sid)
            gg.sessions[sid] = [
                float(ts),
                [tracks[i] for i in steps[at : at + length]],
                list(flags[at : at + length]),
            ]
            at += length
        gg.cursor = int(state["cursor"])
        gg.t0 = float(state["t0"])
        gg.clock = float(state["clock"])
        gg._sweep = int(state["sweep"]) % len(gg._node_parts)
        return gg


class _DiGraph(nx.DiGraph):
    """A networkx DiGraph whose node and adjacency dicts the fold also holds directly.

    networkx documents its storage (a dict of dicts of edge-attribute dicts) and the factory
    attributes that make those dicts for subclasses; a factory that remembers what it made is
    how GravityGraph gets the raw dicts without reading networkx's private attributes. The hot
    paths (the fold, the lanes refresh, the ranking) index them directly: the read-only views
    (G.succ[u], an AtlasView made per access) cost several times a dict lookup there.
    """

    _made: list[dict[str, Any]] | None = None

    @classmethod
    def _factory(cls) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if cls._made is not None:
            cls._made.append(d)
        return d

    node_dict_factory = _factory
    adjlist_outer_dict_factory = _factory


def _new_digraph() -> tuple[nx.DiGraph, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An empty graph and its node, successor and predecessor dicts (the one place they are
    obtained; checked through the public API, so a networkx that builds them otherwise fails
    loudly here rather than folding into dicts the graph does not see)."""
    made: list[dict[str, Any]] = []
    _DiGraph._made = made
    try:
        g = _DiGraph()
    finally:
        _DiGraph._made = None
    if len(made) != 3:
        raise RuntimeError("networkx built its DiGraph differently: cannot hold its dicts")
    node, succ, pred = made
    g.add_edge("a", "b")
    ok = "a" in node and "b" in succ.get("a", ()) and "a" in pred.get("b", ())
    g.remove_node("a")
    g.remove_node("b")
    if not ok or node or succ or pred:
        raise RuntimeError("networkx built its DiGraph differently: cannot hold its dicts")
    return g, node, succ, pred


def _part(key: str, parts: int) -> int:
    """The maintenance slice of a track or session id: stable across processes and restarts."""
    return zlib.crc32(key.encode()) % parts


_EDGE_KEYS = ("src", "dst", "pos", "neg", "n", "acc")


def forward_decay_factor(t0: float, half_life_s: float, now: float | None = None) -> float:
    """What a value stored with landmark t0 is multiplied by to read it at `now`."""
    if not half_life_s:
        return 1.0
    if now is None:
        now = time.time()
    return 2.0 ** min(1000.0, -(now - t0) / half_life_s)


_SESSION_KEYS = ("ids", "last_ts", "lengths", "steps", "flags")


def state_from_records(records: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Join the records of iter_state() back into one export_state() dict."""
    state: dict[str, Any] = {
        "tracks": [],
        "edges": {k: [] for k in _EDGE_KEYS},
        "sessions": {k: [] for k in _SESSION_KEYS},
    }
    for part, payload in records:
        if part == "meta":
            state.update(payload)
        elif part == "tracks":
            state["tracks"].extend(payload)
        elif part in ("edges", "sessions"):
            target = state[part]
            for key, values in payload.items():
                target[key].extend(values)
        else:
            raise ValueError(f"unknown state record {part!r}")
    return state


def graph_signature(gg: GravityGraph) -> tuple[Any, ...]:
    """Everything that determines future behaviour, in a canonical order, for exact comparison."""
    sessions = sorted((sid, st[0], tuple(st[1]), tuple(st[2])) for sid, st in gg.sessions.items())
    return (gg.cursor, gg.t0, gg.clock, gg.node_count, gg.edge_count, gg.to_edge_list(), sessions)
