"""The baselines the graph is measured against, each from the training playlists alone.

- ``popularity``: the most played training songs.
- ``tag cosine``: |A n B| / sqrt(|A| |B|) of two songs' tag sets (0 when either has none).
- ``bigram``: a song's first-order successor counts in training.
- ``SR`` (sequential rules, Ludewig & Jannach 2018): every later track within 10 steps of a is
  credited 1/distance, the top 20 per track kept.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence

SR_STEPS = 10  # the SR baseline's window (steps)
SR_KEEP = 20  # successors kept per track by SR


def successor_counts(playlists: Iterable[Sequence[int]]) -> dict[int, Counter[int]]:
    """Plain first-order (bigram) successor counts a -> b, b != a."""
    out: dict[int, Counter[int]] = {}
    for songs in playlists:
        for a, b in itertools.pairwise(songs):
            if a != b:
                c = out.get(a)
                if c is None:
                    c = out[a] = Counter()
                c[b] += 1
    return out


def sequential_rules(
    playlists: Iterable[Sequence[int]], steps: int = SR_STEPS, keep: int = SR_KEEP
) -> dict[int, dict[int, float]]:
    """SR: each later track within `steps` of a credits a -> it with 1/distance; top `keep` per a
    (by score, ties by song index), divided by a's maximum so scores fall in (0, 1]."""
    raw: dict[int, dict[int, float]] = {}
    for songs in playlists:
        n = len(songs)
        for i in range(n - 1):
            a = songs[i]
            row = raw.get(a)
            if row is None:
                row = raw[a] = {}
            for d in range(1, min(steps, n - 1 - i) + 1):
                b = songs[i + d]
                if b != a:
                    row[b] = row.get(b, 0.0) + 1.0 / d
    out: dict[int, dict[int, float]] = {}
    for a, row in raw.items():
        if not row:
            continue
        best = heapq.nsmallest(keep, row.items(), key=lambda kv: (-kv[1], kv[0]))
        top = best[0][1]
        out[a] = {b: s / top for b, s in best}
    return out


def tag_cosine(a: frozenset[int], b: frozenset[int]) -> float:
    """Cosine of two tag sets as binary vectors; 0 when either is empty."""
    if not a or not b:
        return 0.0
    return len(a & b) / math.sqrt(len(a) * len(b))


class TagCosines:
    """Tag cosines from one song to all others through an inverted index, for one song at a
    time (the transitions are visited grouped by their source)."""

    def __init__(self, tags: Sequence[frozenset[int]]) -> None:
        self.tags = tags
        self.postings: dict[int, list[int]] = {}
        for s, ts in enumerate(tags):
            for t in ts:
                self.postings.setdefault(t, []).append(s)
        self.norm = [math.sqrt(len(ts)) for ts in tags]

    def from_song(self, a: int) -> dict[int, float]:
        """Every song with a positive cosine to a (a itself excluded)."""
        ta = self.tags[a]
        if not ta:
            return {}
        overlap: Counter[int] = Counter()
        for t in ta:
            overlap.update(self.postings[t])
        overlap.pop(a, None)
        na = self.norm[a]
        norm = self.norm
        return {s: c / (na * norm[s]) for s, c in overlap.items()}


def top_cosine(
    cos_a: dict[int, float], by_pop: Sequence[int], tie: Sequence[int], a: int
) -> list[int]:
    """The 20 songs most similar to a by tag cosine (ties by `tie`); when fewer than 20 share a
    tag with a, the list is filled with the most popular others (a tagless song gets popularity)."""
    best = [s for s, _ in heapq.nsmallest(20, cos_a.items(), key=lambda kv: (-kv[1], tie[kv[0]]))]
    if len(best) < 20:
        have = set(best)
        for s in by_pop:
            if len(best) == 20:
                break
            if s != a and s not in have:
                best.append(s)
    return best
