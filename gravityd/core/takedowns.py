"""Takedowns: which tracks are blocked, and how a blocked track is kept out of every answer.

A block or unblock is an ordered record of the log (SQLite: a row of the `blocks` table whose
id comes from the same sequence as the events'), read back by `read_after` as a fold row with
the event type `block` or `unblock`. The graph's fold ignores those rows; `Blocks.fold` applies
them. So every process that folds the log (the one-process daemon, each replica, the cron
builder) converges on the same set, and the read-your-writes cursor covers blocks too.

The state is last-writer-wins by log position per track, so applying a change as soon as it is
durable (the answer to the PUT) and again when the fold reaches it is harmless, in any order.
Snapshots carry the blocked entries (their header's `blocks`), so a replica or the in-process
ranker starting from a snapshot knows them without reading the whole log.

Blocking never touches the graph: its events keep being folded, so an unblocked track comes
back exactly as it would have been. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, NamedTuple

from gravityd.core.events import ValidEvent

BLOCK = "block"
UNBLOCK = "unblock"
ADMIN_EVENT_TYPES = frozenset({BLOCK, UNBLOCK})
HEADER_KEY = "blocks"  # the snapshot header's field; absent in snapshots before 0.3


class BlockEntry(NamedTuple):
    """The latest change of one track: blocked or not, at which log position, when (Unix s)."""

    track_id: str
    blocked: bool
    id: int
    at: float


def change_event(track_id: str, blocked: bool, at: float) -> ValidEvent:
    """The log record of a block or unblock, in the shape `EventLog.append` takes.

    The log routes these event types to its blocks store; `validate_event` never produces
    them, so no client can block through the ingest routes.
    """
    return ValidEvent(None, "", track_id, BLOCK if blocked else UNBLOCK, None, at, None, None, None)


class Blocks:
    """The blocked tracks, last-writer-wins by log position per track."""

    def __init__(self) -> None:
        self._latest: dict[str, BlockEntry] = {}  # every track ever changed (unblocks too)
        self._blocked: set[str] = set()
        self.version = 0  # grows with every change of the blocked set: caches key on it

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._blocked

    def __len__(self) -> int:
        return len(self._blocked)

    def __bool__(self) -> bool:
        return bool(self._blocked)

    @property
    def ids(self) -> frozenset[str]:
        """A frozen copy, for callers on other threads (the in-process ranker)."""
        return frozenset(self._blocked)

    def latest(self, track_id: str) -> BlockEntry | None:
        """The track's latest known change (a block or an unblock), or None."""
        return self._latest.get(track_id)

    def apply(self, track_id: str, blocked: bool, position: int, at: float) -> bool:
        """Record one change unless a later one (higher position) is already known.

        Returns whether the track's blocked state changed.
        """
        have = self._latest.get(track_id)
        if have is not None and have.id >= position:
            return False
        self._latest[track_id] = BlockEntry(track_id, blocked, position, at)
        was = track_id in self._blocked
        if blocked:
            self._blocked.add(track_id)
        else:
            self._blocked.discard(track_id)
        if was != blocked:
            self.version += 1
        return was != blocked

    def fold(self, rows: Iterable[Sequence[Any]]) -> int:
        """Apply the block and unblock rows among fold rows (id, session, track, type, ts, ...).

        Returns how many rows were block changes. Cheap on batches without any: one set
        lookup per row.
        """
        n = 0
        admin = ADMIN_EVENT_TYPES
        for row in rows:
            if row[3] in admin:
                self.apply(row[2], row[3] == BLOCK, row[0], row[4])
                n += 1
        return n

    def entries(self) -> list[BlockEntry]:
        """The blocked tracks, most recently blocked first (ties by track id)."""
        out = [self._latest[t] for t in self._blocked]
        out.sort(key=lambda e: (-e.id, e.track_id))
        return out

    def to_record(self) -> list[list[Any]]:
        """The snapshot form: [[track_id, position, at], ...] of the blocked tracks."""
        return [[e.track_id, e.id, e.at] for e in sorted(self.entries(), key=lambda e: e.id)]

    @classmethod
    def from_record(cls, record: Any) -> Blocks:
        """Inverse of to_record; None (an older snapshot) is no blocks. Raises ValueError."""
        out = cls()
        if record is None:
            return out
        if not isinstance(record, list):
            raise ValueError("blocks: not a list")
        for item in record:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not isinstance(item[0], str)
                or not isinstance(item[1], int)
                or not isinstance(item[2], (int, float))
            ):
                raise ValueError("blocks: malformed entry")
            out.apply(item[0], True, item[1], float(item[2]))
        return out

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Blocks:
        return cls.from_record(header.get(HEADER_KEY))


Lanes = list[dict[str, Any]]


def visible_lanes(
    fetch: Callable[[int], Lanes], limit: int, min_score: float, blocked: Blocks
) -> Lanes:
    """The lanes answer as if blocked tracks were not in the graph.

    `fetch(n)` returns the graph's answer for limit n with min_score 0 (lanes strongest first,
    then any `rejected` entries). Asks for more than `limit` until enough unblocked lanes are
    found or the track has no more, then renormalises `normalized_score` so the strongest
    visible lane scores 1.0 (scores are weight ratios, so this is exactly the graph's own answer
    without the blocked lanes), and applies min_score and limit.
    """
    want = limit + min(len(blocked), limit)
    while True:
        got = fetch(want)
        lanes = [it for it in got if not it.get("rejected")]
        kept = [it for it in lanes if it["track_id"] not in blocked]
        if len(kept) >= limit or len(lanes) < want:
            break
        want *= 2
    out: Lanes = []
    if kept:
        top = kept[0]["normalized_score"]
        for it in kept[:limit]:
            score = min(1.0, it["normalized_score"] / top) if top > 0 else 0.0
            if score < min_score:
                break  # strongest first: the rest score lower still
            out.append({**it, "normalized_score": score})
    against = [it for it in got if it.get("rejected") and it["track_id"] not in blocked]
    out.extend(against[:limit])
    return out


def visible_ids(ids: Iterable[str], blocked: Blocks | Collection[str] | None) -> list[str]:
    """The ids that are not blocked, in their order."""
    if not blocked:
        return list(ids)
    return [t for t in ids if t not in blocked]
