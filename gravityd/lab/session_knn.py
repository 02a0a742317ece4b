"""The session-aware references of `gravityd eval`: V-SKNN, STAN and SR summed over the session.

Written from the papers' definitions (docs/evaluation.md has the figures):

- **V-SKNN** (Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms";
  session-rec's parameters k=100, sample_size=500, linear position weights, idf): the candidate
  neighbours are the ``sample_size`` most recent training sessions that share a track with the
  current session; a neighbour's similarity is the sum, over the tracks it shares, of the current
  session's linear position weight ``max(0, 1 - 0.1 (L - i))`` (i = 1..L, the last track 1),
  divided by L; the ``k`` most similar vote for each of their tracks with their similarity times
  ``1 / step`` (step = how far back the most recent shared track is in the current session) times
  ``1 + idf_weight * idf(track)``, idf = log(training sessions / sessions holding the track).
- **STAN** (Garg et al., SIGIR 2019): the current session's track at position i of L weighs
  ``exp((i - L) / lambda_spw)``; a neighbour's similarity is the weighted overlap divided by
  ``sqrt(L * |n|)`` times its recency ``exp(-age / lambda_snh)``; the ``k`` most similar vote for
  each of their tracks with that similarity times ``exp(-|p(track) - p(r)| / lambda_inh)``, r the
  neighbour's occurrence of the most recent shared track.
- **SR over the session**: the SR rows (`baselines.sequential_rules`) of every track of the
  session, summed.

A training session's "time" is its order in the training file (the playlists carry no dates):
recency means "later in the file", and ages count sessions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KnnParams:
    """The references' parameters (session-rec's for V-SKNN; STAN's paper ranges)."""

    k: int = 100
    sample_size: int = 500
    idf_weight: float = 1.0
    stan_k: int = 100
    stan_sample_size: int = 1000
    lambda_spw: float = 1.02
    lambda_snh: float = 5000.0  # sessions: the file order stands in for time
    lambda_inh: float = 2.05


class SessionKnn:
    """Training sessions indexed by track, for V-SKNN and STAN over song indices."""

    def __init__(self, sessions: Sequence[Sequence[int]], params: KnnParams | None = None) -> None:
        self.params = params or KnnParams()
        self.sessions = [list(s) for s in sessions]
        self.sets = [frozenset(s) for s in self.sessions]
        self.by_track: dict[int, list[int]] = {}  # track -> session numbers, ascending
        for n, items in enumerate(self.sets):
            for t in items:
                self.by_track.setdefault(t, []).append(n)
        total = max(1, len(self.sessions))
        self.idf = {t: math.log(total / len(ns)) for t, ns in self.by_track.items()}
        self.now = len(self.sessions)

    def _sample(self, session: Sequence[int], size: int) -> list[int]:
        """The `size` most recent sessions sharing a track with `session`."""
        seen: set[int] = set()
        for t in set(session):
            seen.update(self.by_track.get(t, ())[-size:])
        return heapq.nlargest(size, seen)

    def vsknn(self, session: Sequence[int]) -> dict[int, float]:
        """V-SKNN scores of every track the neighbours hold (session: oldest first)."""
        p = self.params
        length = len(session)
        weight: dict[int, float] = {}
        for i, t in enumerate(session, start=1):
            weight[t] = max(0.0, 1.0 - 0.1 * (length - i))  # a repeat keeps its latest position
        sims: list[tuple[float, int]] = []
        for n in self._sample(session, p.sample_size):
            items = self.sets[n]
            s = sum(w for t, w in weight.items() if t in items) / length
            if s > 0:
                sims.append((s, n))
        scores: dict[int, float] = {}
        idf = self.idf
        for s, n in heapq.nlargest(p.k, sims):
            items = self.sets[n]
            step = next((d for d, t in enumerate(reversed(session), start=1) if t in items), length)
            v = s / step
            for t in items:
                scores[t] = scores.get(t, 0.0) + v * (1.0 + p.idf_weight * idf.get(t, 0.0))
        return scores

    def stan(self, session: Sequence[int]) -> dict[int, float]:
        """STAN scores of every track the neighbours hold (session: oldest first)."""
        p = self.params
        length = len(session)
        w1: dict[int, float] = {}
        for i, t in enumerate(session, start=1):
            w1[t] = math.exp((i - length) / p.lambda_spw)
        order = {t: i for i, t in enumerate(session)}  # latest position of each track
        sims: list[tuple[float, int]] = []
        for n in self._sample(session, p.stan_sample_size):
            items = self.sets[n]
            overlap = sum(w for t, w in w1.items() if t in items)
            if overlap > 0:
                recency = math.exp(-(self.now - n) / p.lambda_snh)
                sims.append((overlap / math.sqrt(length * len(items)) * recency, n))
        scores: dict[int, float] = {}
        for s, n in heapq.nlargest(p.stan_k, sims):
            songs = self.sessions[n]
            # r: the neighbour's track that is the most recent of the current session
            r = max((t for t in self.sets[n] if t in order), key=order.__getitem__)
            pos_r = [j for j, t in enumerate(songs) if t == r]
            dist: dict[int, int] = {}
            for j, t in enumerate(songs):
                d = min(abs(j - q) for q in pos_r)
                if d and d < dist.get(t, 1 << 30):
                    dist[t] = d
            for t, d in dist.items():
                scores[t] = scores.get(t, 0.0) + s * math.exp(-d / p.lambda_inh)
        return scores


def sr_over_session(
    sr: Mapping[int, Mapping[int, float]], session: Sequence[int]
) -> dict[int, float]:
    """SR's rows of every distinct track of the session, summed."""
    out: dict[int, float] = {}
    for t in set(session):
        for c, v in sr.get(t, {}).items():
            out[c] = out.get(c, 0.0) + v
    return out
