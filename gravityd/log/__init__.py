"""The event log: the source of truth every graph state is rebuilt from, behind one interface.

Every role talks to the log through `EventLog` (below) and nothing else: a writer appends, a
replica reads after its cursor and watches the committed high-water mark. Each backend is one
module of this package and holds every statement of its store:

- `gravityd.log.sqlite`: one SQLite file (WAL), the embedded default, for one machine;
- `gravityd.log.jetstream`: a NATS JetStream stream, for writers and replicas on many machines.

Positions are increasing integers the log assigns (SQLite row ids, JetStream stream sequences);
a position the log skipped (reserved, deleted, a sequence hole) is simply never read back.
See docs/design.md, "The log and its backends".
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from gravityd.events import FoldEvent, ValidEvent


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


@runtime_checkable
class EventLog(Protocol):
    """What every backend provides. A writer uses append/lookup; a replica read_after/high_water.

    `last_id` is the highest position this process knows to be committed: after its own
    appends for a writer, after the last `high_water()` for a reader.
    """

    last_id: int

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

    async def close(self) -> None:
        """Finish what was acknowledged as queued, then release everything."""
        ...


from gravityd.log.sqlite import (  # noqa: E402 - the backend needs the names above
    SCHEMA_VERSION,
    ProcessLock,
    SqliteLog,
    connect_sync,
    current_blocks,
    delete_folded_before,
    get_cursor,
    new_event_id,
    read_after_sync,
    set_cursor,
    write_track_edges,
)

__all__ = [
    "SCHEMA_VERSION",
    "Appended",
    "BadRows",
    "EventLog",
    "LogError",
    "LogLocked",
    "LogMissing",
    "NotALog",
    "ProcessLock",
    "SqliteLog",
    "connect_sync",
    "current_blocks",
    "delete_folded_before",
    "get_cursor",
    "new_event_id",
    "read_after_sync",
    "set_cursor",
    "write_track_edges",
]
