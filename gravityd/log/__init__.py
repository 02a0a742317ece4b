"""The event log: the source of truth every graph state is rebuilt from, behind one interface.

Every role talks to the log through `EventLog` (below) and nothing else: a writer appends, a
replica reads after its cursor and watches the committed high-water mark. Each backend is one
module of this package and holds every statement of its store:

- `gravityd.log.sqlite`: one SQLite file (WAL), the embedded default, for one machine;
- `gravityd.log.jetstream`: a NATS JetStream stream, for writers and replicas on many machines.

`gravityd.log.open` chooses the backend from the log URL. Callers import a backend from its own
module; this one holds only what every backend shares.

Positions are increasing integers the log assigns (SQLite row ids, JetStream stream sequences);
a position the log skipped (reserved, deleted, a sequence hole) is simply never read back.
See docs/design.md, "The log and its backends".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

from gravityd.core.events import FoldEvent, ValidEvent


class LogError(Exception):
    """The log cannot take writes (or reads) right now: disk full, locked, closed, unreachable.

    The HTTP layer answers 503 `log_unavailable` with Retry-After; nothing was acknowledged.
    """


class LogLocked(LogError):
    """Another process holds the log's writer lock."""


class LogMissing(LogError):
    """The log does not exist yet (a replica started before its writer)."""


class NotALog(LogError):
    """The store exists but is not a gravityd log (another file, another schema, a newer one)."""


class Appended(NamedTuple):
    """What the log did with one event: its position, its event_id, and whether it was a repeat."""

    id: int
    event_id: str
    duplicate: bool


# Rows the fold could not trust: (position, the field at fault). Reported, never folded.
BadRows = list[tuple[int, str]]
# A track_edges row: (src, dst, weight, pos, neg, n), decayed to the time it is written.
EdgeRow = tuple[str, str, float, float, float, int]
# A track_galaxies row: (track_id, galaxy, centrality); the table stamps it with the cursor.
GalaxyRow = tuple[str, int, float]


class CommitTimes:
    """When each position became visible to this process, until the fold passes it.

    The fold lag in seconds is the age of the oldest entry: for a writer the commit time, for a
    replica the moment it saw the commit (at most one poll later). Trimmed by the fold itself,
    so the record stays as short as the lag whether or not anybody scrapes /metrics.
    """

    def __init__(self) -> None:
        self._seen: deque[tuple[int, float]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, position: int, at: float | None = None) -> None:
        self._seen.append((position, time.time() if at is None else at))

    def forget_through(self, cursor: int) -> None:
        seen = self._seen
        while seen and seen[0][0] <= cursor:
            seen.popleft()

    def lag_seconds(self, cursor: int, now: float | None = None) -> float:
        """Age of the oldest commit the fold has not reached yet (0 when caught up)."""
        self.forget_through(cursor)
        if not self._seen:
            return 0.0
        return max(0.0, (now or time.time()) - self._seen[0][1])


class LogIdentity(NamedTuple):
    """Which log this is, so a snapshot of another log is never taken for one of this one.

    `id`: made once when the log is created (SQLite: a random id stored in it; JetStream: the
    stream's name and creation time, `<stream>@<iso time>`). `adopted`: (origin, cursor) of the
    snapshots of other logs that `gravityd restore` installed for this one. `claimed`: the
    highest position the log had given out or reserved when it was opened (a restored
    snapshot's cursor counts: new positions come after it).
    """

    id: str
    adopted: frozenset[tuple[str, int]] = frozenset()
    claimed: int = 0


@runtime_checkable
class EventLog(Protocol):
    """The log's job and nothing else. A writer uses append/lookup; a replica
    read_after/high_water/refresh. The catalogue, takedowns in force, graph publishing and
    retention are separate small protocols below, which a backend may also implement.

    `last_id` is the highest position this process knows to be committed: after its own
    appends for a writer, after the last `refresh()` for a reader; `committed` is set each time
    it grows (the fold task waits on it); `reserved` is a position up to which nothing will
    ever be read back (ids skipped after a restored snapshot), `commits` the fold lag record;
    `identity` is known once `open()` returned.
    """

    last_id: int
    reserved: int
    readonly: bool
    committed: asyncio.Event
    commits: CommitTimes
    identity: LogIdentity | None
    on_commit: Callable[[int, float], None] | None
    on_commit_error: Callable[[], None] | None

    @property
    def description(self) -> str:
        """Where the log is, for log lines (never a credential)."""
        ...

    async def open(self) -> None:
        """Connect (and, for a writer, create or migrate); raise LogError subclasses."""
        ...

    async def append(self, events: list[ValidEvent], received_at: float) -> list[Appended]:
        """Make events durable; return one Appended per event, in order, once they are."""
        ...

    async def lookup(self, event_ids: list[str]) -> dict[str, int]:
        """The positions of those client event_ids the log already holds (duplicate lookup)."""
        ...

    async def read_after(self, cursor: int, limit: int) -> tuple[list[FoldEvent], BadRows]:
        """Up to `limit` committed events with position > cursor, in order, and the bad rows
        among them (which come back as events with a None event type: no-ops for the fold)."""
        ...

    async def high_water(self) -> int:
        """The highest committed position now (cheap: replicas poll it)."""
        ...

    async def refresh(self) -> int:
        """Learn the high-water mark now (a reader's poll); set `committed` if it grew."""
        ...

    def lag_seconds(self, cursor: int, now: float | None = None) -> float: ...

    def forget_through(self, cursor: int) -> None: ...

    async def drain(self) -> None:
        """Stop taking appends; return once every queued one is durable (or failed)."""
        ...

    async def close(self) -> None:
        """Finish what was acknowledged as queued, then release everything."""
        ...


@runtime_checkable
class Catalog(Protocol):
    """Titles and artists for the explorer (`gravityd catalog load`); may know none."""

    async def track_meta(self, track_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """The catalogue's (title, artist) for the ids it knows."""
        ...

    async def catalog_size(self) -> int: ...


@runtime_checkable
class BlocksInForce(Protocol):
    """The takedowns in force, for a writer that folds nothing (its PUT says "changed")."""

    async def current_blocks(self) -> list[tuple[str, int, float]]:
        """(track_id, position, at) of every track blocked now."""
        ...


@runtime_checkable
class GraphPublisher(Protocol):
    """Where the snapshotter puts what it wrote, beside the file (SQL tables, object store)."""

    async def publish_graph(
        self, cursor: int, snapshot: str, rows: Callable[[], Iterator[list[EdgeRow]]] | None
    ) -> None:
        """Record the newest durable snapshot's cursor and (rows given) the track_edges table."""
        ...

    async def publish_galaxies(
        self, cursor: int, rows: Callable[[], Iterator[list[GalaxyRow]]]
    ) -> None:
        """Replace the track_galaxies table with the galaxies computed at `cursor`."""
        ...


@runtime_checkable
class Retention(Protocol):
    """Deletes events every kept snapshot holds (a stream has its own retention instead)."""

    async def retain(self, cursor: int, older_than: float) -> int:
        """Delete events inside every kept snapshot and older than a cut-off; how many."""
        ...


class NoCatalog:
    """A log without a catalogue (JetStream): no titles, nothing counted."""

    async def track_meta(self, track_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        return {}

    async def catalog_size(self) -> int:
        return 0


class NoBlocksInForce:
    """A log with no table to ask (JetStream): a writer starts knowing no takedown."""

    async def current_blocks(self) -> list[tuple[str, int, float]]:
        return []


class NoRetention:
    """Retention is the store's own (JetStream's max age and bytes): nothing deleted here."""

    async def retain(self, cursor: int, older_than: float) -> int:
        return 0


class NoPublisher:
    """Nowhere to publish beyond the snapshot file itself."""

    async def publish_graph(
        self, cursor: int, snapshot: str, rows: Callable[[], Iterator[list[EdgeRow]]] | None
    ) -> None:
        return None

    async def publish_galaxies(
        self, cursor: int, rows: Callable[[], Iterator[list[GalaxyRow]]]
    ) -> None:
        return None


__all__ = [
    "Appended",
    "BadRows",
    "BlocksInForce",
    "Catalog",
    "CommitTimes",
    "EdgeRow",
    "EventLog",
    "GalaxyRow",
    "GraphPublisher",
    "LogError",
    "LogIdentity",
    "LogLocked",
    "LogMissing",
    "NoBlocksInForce",
    "NoCatalog",
    "NoPublisher",
    "NoRetention",
    "NotALog",
    "Retention",
]
