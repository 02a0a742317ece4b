"""Session neighbours: a bounded index of recent listening sessions per track, kept by the fold,
and the session-kNN score `rank_pool` blends in (the formula: docs/model.md, "Ranking").

Why: the warp lanes see one step at a time; a radio session says more. Sessions whose tracks
overlap the current one (most of all its latest tracks) predict what comes next better than any
single track's edges (V-SKNN, Ludewig & Jannach 2018; STAN, Garg et al. 2019).

What is kept (every bound a [graph] setting):

- a session is the tracks a listener kept (``play_10s`` or ``like``), in order, each once; one
  longer than ``session_index_length`` tracks, or silent past ``session_timeout_s``, goes on
  as a new indexed session, so every stored session holds at most that many tracks;
- each session gets a serial number when its first track is indexed (later sessions, higher
  numbers: recency without a clock); at most ``session_index_sessions`` are stored, the oldest
  forgotten first;
- each track remembers the serials of the last ``session_index_per_track`` sessions that kept
  it (entries of forgotten sessions are passed over when read).

Pure and deterministic: the same events in the same order give the same index, whatever the
batches; no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gravityd.core.events import FoldEvent
from gravityd.core.params import FoldParams

__all__ = ["KEPT_EVENTS", "SESSIONS_PART", "SessionIndex", "SessionQuery", "session_scores"]

KEPT_EVENTS = frozenset({"play_10s", "like"})
SESSIONS_PART = "session_index"  # the snapshot part that carries the index
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """How the neighbours are searched and how they vote (the [rank] settings of the same name)."""

    sample: int = 500  # most recent sessions sharing a track with the current one, looked at
    neighbours: int = 100  # most similar of them that vote
    position_decay: float = 2.0  # lambda_spw: the track i steps back weighs exp(-i / this)
    recency: float = 0.0  # lambda_snh, sessions (0: off): s sessions old weighs exp(-s / this)
    item_decay: float = 2.0  # lambda_inh: a vote d steps from the match weighs exp(-d / this)
    idf: float = 1.0  # a vote for c is multiplied by 1 + this * log(sessions / sessions with c)
    # a vote for a track *before* the match counts this much (1: both sides alike, as in STAN;
    # 0: successors only, since listeners' order is directional)
    before: float = 1.0


class SessionIndex:
    """The last sessions per track, bounded; fed events in log order by `fold`."""

    def __init__(
        self,
        per_track: int = 100,
        length: int = 20,
        sessions: int = 100_000,
        timeout_s: float = 1800.0,
    ) -> None:
        if per_track < 0 or length < 1 or sessions < 1:
            raise ValueError("session index bounds must be positive")
        self.per_track = per_track
        self.length = length
        self.max_sessions = sessions
        self.timeout_s = timeout_s
        self.next_serial = 0
        self.stored: dict[int, list[Any]] = {}  # serial -> [session_id, last ts, tracks]
        self.by_track: dict[str, deque[int]] = {}
        self.df: dict[str, int] = {}  # stored sessions holding the track
        self.open: dict[str, int] = {}  # session_id -> its newest serial (while stored)

    @classmethod
    def for_fold(cls, params: FoldParams | None) -> SessionIndex:
        """The index the [graph] settings describe."""
        p = params if params is not None else FoldParams()
        return cls(
            p.session_index_per_track,
            p.session_index_length,
            p.session_index_sessions,
            p.session_timeout_s,
        )

    @property
    def enabled(self) -> bool:
        return self.per_track > 0

    def __len__(self) -> int:
        return len(self.stored)

    def fold(self, events: Iterable[FoldEvent]) -> int:
        """Index the kept tracks of these events; returns how many were appended."""
        if not self.enabled:
            return 0
        added = 0
        for ev in events:  # FoldEvent fields by position: log rows may be plain tuples
            if ev[3] in KEPT_EVENTS:
                added += self._keep(ev[1], ev[2], ev[4])
        return added

    def _keep(self, sid: str, track: str, ts: float) -> int:
        serial = self.open.get(sid)
        rec = self.stored.get(serial) if serial is not None else None
        if rec is not None and track in rec[2]:
            rec[1] = max(rec[1], ts)
            return 0  # a track counts once per session (a late like, a repeat)
        if rec is None or len(rec[2]) >= self.length or ts - rec[1] > self.timeout_s:
            serial = self.next_serial
            self.next_serial += 1
            rec = self.stored[serial] = [sid, ts, []]
            self.open[sid] = serial
            if len(self.stored) > self.max_sessions:
                self._forget(next(iter(self.stored)))
        rec[1] = max(rec[1], ts)
        rec[2].append(track)
        q = self.by_track.get(track)
        if q is None:
            q = self.by_track[track] = deque(maxlen=self.per_track)
        q.append(serial)
        self.df[track] = self.df.get(track, 0) + 1
        return 1

    def _forget(self, serial: int) -> None:
        sid, _, tracks = self.stored.pop(serial)
        if self.open.get(sid) == serial:
            del self.open[sid]
        for t in tracks:
            n = self.df[t] - 1
            if n:
                self.df[t] = n
            else:
                del self.df[t]
                self.by_track.pop(t, None)

    # ------------------------------------------------------------------ snapshots

    def records(self, chunk: int = 20_000) -> Iterator[tuple[str, Any]]:
        """The index as snapshot records: a head, then the sessions and the per-track lists in
        chunks (so a big index never becomes one huge payload)."""
        yield (
            SESSIONS_PART,
            {
                "format": _FORMAT,
                "per_track": self.per_track,
                "length": self.length,
                "sessions": self.max_sessions,
                "timeout_s": self.timeout_s,
                "next_serial": self.next_serial,
            },
        )
        rows = [[s, r[0], r[1], r[2]] for s, r in self.stored.items()]
        for i in range(0, len(rows), chunk):
            yield SESSIONS_PART, {"stored": rows[i : i + chunk]}
        lists = [[t, list(q)] for t, q in self.by_track.items()]
        for i in range(0, len(lists), chunk):
            yield SESSIONS_PART, {"by_track": lists[i : i + chunk]}

    @classmethod
    def from_records(cls, payloads: Sequence[Mapping[str, Any]]) -> SessionIndex:
        """Rebuild what `records` wrote; ValueError when the part is not one we wrote."""
        try:
            head = payloads[0]
            if head.get("format") != _FORMAT:
                raise ValueError(f"session index format {head.get('format')!r} unknown")
            idx = cls(
                int(head["per_track"]),
                int(head["length"]),
                int(head["sessions"]),
                float(head["timeout_s"]),
            )
            idx.next_serial = int(head["next_serial"])
            for p in payloads[1:]:
                for s, sid, ts, tracks in p.get("stored", ()):
                    idx.stored[int(s)] = [str(sid), float(ts), [str(t) for t in tracks]]
                    idx.open[str(sid)] = int(s)
                    for t in tracks:
                        idx.df[t] = idx.df.get(t, 0) + 1
                for t, serials in p.get("by_track", ()):
                    idx.by_track[str(t)] = deque((int(s) for s in serials), maxlen=idx.per_track)
        except (IndexError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"session index part unreadable: {exc!r}") from None
        return idx

    def signature(self) -> tuple[Any, ...]:
        """Everything the index holds, comparable (tests: replays and round trips)."""
        return (
            self.next_serial,
            tuple((s, r[0], r[1], tuple(r[2])) for s, r in self.stored.items()),
            tuple(sorted((t, tuple(q)) for t, q in self.by_track.items())),
            tuple(sorted(self.df.items())),
        )


def session_scores(
    index: SessionIndex,
    session: Sequence[str],
    pool: Mapping[str, Any],
    q: SessionQuery,
) -> dict[str, float]:
    """Session-kNN votes for the pool's tracks (only those with a vote), given the session so
    far, oldest first (its last track the current one). Cost O(len(session) * per_track) for the
    sample, O(sample) for the similarities, O(neighbours * length) for the votes."""
    if not session or not index.stored or q.neighbours < 1 or q.sample < 1:
        return {}
    stored = index.stored
    by_track = index.by_track
    length = len(session)
    # position weights: the latest occurrence of a track counts (the current track: 1)
    weight: dict[str, float] = {}
    for i, t in enumerate(session):
        weight[t] = math.exp(-(length - 1 - i) / q.position_decay)
    # the most recent sessions that share a track
    candidates: set[int] = set()
    for t in weight:
        serials = by_track.get(t)
        if serials:
            candidates.update(serials)
    sample = heapq.nlargest(q.sample, (s for s in candidates if s in stored))
    if not sample:
        return {}
    newest = index.next_serial
    sims: list[tuple[float, int]] = []
    for s in sample:
        tracks = stored[s][2]
        overlap = 0.0
        for t in tracks:
            w = weight.get(t)
            if w is not None:
                overlap += w
        if overlap > 0.0:
            sim = overlap / math.sqrt(len(tracks))
            if q.recency > 0.0:
                sim *= math.exp(-(newest - 1 - s) / q.recency)
            sims.append((sim, s))
    total = max(1, len(stored))
    df = index.df
    rank = {t: i for i, t in enumerate(session)}
    before = q.before
    out: dict[str, float] = {}
    for sim, s in heapq.nlargest(q.neighbours, sims):
        tracks = stored[s][2]
        # r: where the neighbour holds the session's most recent track it shares
        r = max((j for j, t in enumerate(tracks) if t in rank), key=lambda j: rank[tracks[j]])
        for j, c in enumerate(tracks):
            if c in pool and j != r:
                v = sim * math.exp(-abs(j - r) / q.item_decay)
                if j < r:
                    v *= before
                    if not v:
                        continue
                if q.idf:
                    v *= 1.0 + q.idf * math.log(total / df.get(c, 1))
                out[c] = out.get(c, 0.0) + v
    return out
