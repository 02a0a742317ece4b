"""The evaluation's protocol: which playlists are held out, which candidates a pool holds, and
how ranks become HR@k and MRR@k. Nothing here knows a method; `evaluate` and the baselines use it.

- **Split by whole playlists**: a playlist is held out when a seeded stable hash (BLAKE2b) of its
  line number falls under ``test_fraction``; ``max_playlists`` keeps a seeded subsample first.
- **Held-out transitions**: every a -> b of a test playlist with b != a.
- **Pools**: the true next track plus others drawn by training popularity without replacement.
- **Metrics**: HR@k is the share of transitions whose true next track is in the top k; MRR@k the
  mean of 1/rank over them (0 past k).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Split:
    train: list[list[int]]
    test: list[list[int]]
    train_lines: list[int]
    test_lines: list[int]


def _unit_hash(seed: int, salt: str, key: int) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, salt, key), the same in every process."""
    digest = hashlib.blake2b(f"{seed}:{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split_playlists(
    playlists: Sequence[tuple[int, list[int]]],
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_playlists: int | None = None,
) -> Split:
    """Split whole playlists by a seeded hash of their line number (file order kept in each part).

    ``max_playlists`` first keeps the playlists with the smallest hashes under another salt (a
    seeded subsample, the same whatever the file order).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction: must be strictly between 0 and 1")
    chosen = list(playlists)
    if max_playlists is not None:
        if max_playlists < 1:
            raise ValueError("max_playlists: must be at least 1")
        if max_playlists < len(chosen):
            keep = set(
                heapq.nsmallest(
                    max_playlists,
                    (ln for ln, _ in chosen),
                    key=lambda ln: (_unit_hash(seed, "sample", ln), ln),
                )
            )
            chosen = [pl for pl in chosen if pl[0] in keep]
    train, test, train_lines, test_lines = [], [], [], []
    for lineno, songs in chosen:
        if _unit_hash(seed, "split", lineno) < test_fraction:
            test.append(songs)
            test_lines.append(lineno)
        else:
            train.append(songs)
            train_lines.append(lineno)
    return Split(train, test, train_lines, test_lines)


@dataclass
class RankingScores:
    """Accumulates ranks (1-based; None or 0 = not ranked) into HR@k and MRR@k."""

    n: int = 0
    hits10: int = 0
    hits20: int = 0
    rr10: float = 0.0
    rr20: float = 0.0

    def add(self, rank: int | None) -> None:
        self.n += 1
        if rank and rank <= 20:
            self.hits20 += 1
            self.rr20 += 1.0 / rank
            if rank <= 10:
                self.hits10 += 1
                self.rr10 += 1.0 / rank

    def result(self) -> dict[str, float]:
        n = self.n or 1
        return {
            "HR@10": self.hits10 / n,
            "HR@20": self.hits20 / n,
            "MRR@10": self.rr10 / n,
            "MRR@20": self.rr20 / n,
        }


def metrics_from_ranks(ranks: Iterable[int | None]) -> dict[str, float]:
    """HR@10, HR@20, MRR@10, MRR@20 of a list of ranks (None = the true item was not listed)."""
    m = RankingScores()
    for r in ranks:
        m.add(r)
    return m.result()


def rank_in_list(items: Sequence[int], target: int) -> int | None:
    try:
        return items.index(target) + 1
    except ValueError:
        return None


def pool_rank(
    pool: Sequence[int],
    target: int,
    score: Any,
    cosine: dict[int, float] | None,
    tie: Sequence[int],
) -> int:
    """Rank of target in the pool sorted by score (a mapping, missing = 0; None = unused) desc,
    then tag cosine desc (None = unused), then the tie-break order `tie` (unique per song): 1 +
    how many members sort strictly before it (the keys are unique: its sorted position)."""

    def key(c: int) -> tuple[float, float, int]:
        return (
            -score.get(c, 0.0) if score is not None else 0.0,
            -cosine.get(c, 0.0) if cosine is not None else 0.0,
            tie[c],
        )

    kt = key(target)
    return 1 + sum(1 for c in pool if key(c) < kt)


def held_out(test: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(test playlist, position of a) of every held-out transition a -> b with b != a."""
    return [
        (k, j)
        for k, songs in enumerate(test)
        for j in range(len(songs) - 1)
        if songs[j] != songs[j + 1]
    ]


def draw_pool(
    rng: random.Random,
    songs: Sequence[int],
    cum: Sequence[float],
    size: int,
    exclude: set[int],
) -> list[int]:
    """`size` distinct songs drawn by popularity (cum weights), none in `exclude`."""
    available = len(songs) - sum(1 for s in exclude if _has(songs, s))
    size = min(size, available)
    out: dict[int, None] = {}
    total = cum[-1]
    while len(out) < size:
        for _ in range(2 * (size - len(out)) + 8):
            s = songs[bisect.bisect_right(cum, rng.random() * total)]
            if s not in exclude and s not in out:
                out[s] = None
                if len(out) == size:
                    break
    return list(out)


def _has(sorted_songs: Sequence[int], s: int) -> bool:
    i = bisect.bisect_left(sorted_songs, s)
    return i < len(sorted_songs) and sorted_songs[i] == s
