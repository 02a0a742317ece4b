"""Positions and the message format of the JetStream log.

An event's position is `sequence * 8192 + slot`, the slots of a message of n events being the
last n (8192 - n .. 8191): positions are unique and strictly increasing, `position >> 13` is
the stream sequence, and the committed high-water mark is `last_seq * 8192 + 8191`. A message
packs up to 8,192 events as msgpack columns, behind an ids block other writers decode alone.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import msgpack

from gravityd.core.events import EVENT_TYPES, MAX_ELAPSED_MS, FoldEvent, ValidEvent
from gravityd.core.takedowns import ADMIN_EVENT_TYPES
from gravityd.log import BadRows
from gravityd.log.jetstream_params import MAX_MESSAGE_EVENTS

SHIFT = 13  # positions: sequence << SHIFT | slot
SLOTS = 1 << SHIFT
assert SLOTS == MAX_MESSAGE_EVENTS

MAGIC = b"GEV1"
_U32 = struct.Struct(">I")
WRITER_HEADER = "Gravityd-Writer"
COUNT_HEADER = "Gravityd-Events"

# Listening events and takedowns (block/unblock of a track) travel in the same messages.
_FOLDED_TYPES = EVENT_TYPES | ADMIN_EVENT_TYPES
# The stored columns after event_id: session, track, type, user, ts, context, meta, elapsed.
_COLUMN_GETTERS = [itemgetter(i) for i in range(1, len(ValidEvent._fields))]


def position(seq: int, slot: int) -> int:
    return seq << SHIFT | slot


def high_water_of(last_seq: int) -> int:
    """The position of the last event of message `last_seq` (0 for an empty stream)."""
    return position(last_seq, SLOTS - 1) if last_seq > 0 else 0


def encode_message(
    events: list[ValidEvent], event_ids: list[str], assigned: bytes, received_at: float
) -> bytes:
    """One message: MAGIC, u32 length of the ids block, the ids block, the columns block.

    The ids block (`[event_ids, assigned]`, assigned[i] = 1 where the server made the id up)
    comes first and alone so other writers decode only it for their duplicate index.
    """
    cols = [list(map(g, events)) for g in _COLUMN_GETTERS]  # in C, column by column
    ids = msgpack.packb([event_ids, assigned], use_bin_type=True)
    body = msgpack.packb([received_at, *cols], use_bin_type=True)
    return MAGIC + _U32.pack(len(ids)) + ids + body


def decode_ids(payload: bytes) -> tuple[list[str], bytes] | None:
    """The ids block of a message, or None if it is not a gravityd message."""
    if not payload.startswith(MAGIC) or len(payload) < 8:
        return None
    (n,) = _U32.unpack_from(payload, 4)
    try:
        ids, assigned = msgpack.unpackb(payload[8 : 8 + n], raw=False)
    except Exception:
        return None
    if not isinstance(ids, list) or not isinstance(assigned, bytes) or len(ids) != len(assigned):
        return None
    return ids, assigned


_COLUMNS = 9  # received_at then session, track, type, user, ts, context, meta, elapsed


def decode_events(seq: int, payload: bytes) -> tuple[list[FoldEvent], BadRows]:
    """A message's events as the fold reads them (plain tuples in FoldEvent's order).

    An event the fold cannot trust comes back with a None event type and is listed in the bad
    rows; a message that is not gravityd's at all is one such row at the message's last slot.
    """
    last = position(seq, SLOTS - 1)
    if not payload.startswith(MAGIC) or len(payload) < 8:
        return [(last, "", "", None, 0.0, None, None)], [(last, "message")]  # type: ignore[list-item]
    (n,) = _U32.unpack_from(payload, 4)
    try:
        cols = msgpack.unpackb(payload[8 + n :], raw=False)
        ok = isinstance(cols, list) and len(cols) == _COLUMNS
        count = len(cols[1]) if ok else 0
        ok = (
            ok
            and 0 < count <= SLOTS
            and all(isinstance(c, list) and len(c) == count for c in cols[1:])
        )
    except Exception:
        ok = False
    if not ok:
        return [(last, "", "", None, 0.0, None, None)], [(last, "message")]  # type: ignore[list-item]
    _, sessions, tracks, types, _users, tss, contexts, _metas, elapsed = cols
    first = position(seq, SLOTS - count)
    rows: list[Any] = []
    bad: BadRows = []
    for i, (s, t, et, ts, ctx, el) in enumerate(
        zip(sessions, tracks, types, tss, contexts, elapsed, strict=True)
    ):
        problem = None
        if type(s) is not str:
            problem = "session_id"
        elif type(t) is not str:
            problem = "track_id"
        elif et not in _FOLDED_TYPES:
            problem = "event_type"
        elif type(ts) not in (float, int) or not -1e300 <= ts <= 1e300:
            problem = "ts"
        elif el is not None and (type(el) is not int or not 0 <= el <= MAX_ELAPSED_MS):
            problem = "elapsed_ms"
        elif ctx is not None and type(ctx) is not str:
            problem = "context"
        if problem is None:
            rows.append((first + i, s, t, et, ts, el, ctx))
        else:
            rows.append((first + i, "", "", None, 0.0, None, None))
            bad.append((first + i, problem))
    return rows, bad


@dataclass
class CommitMessage:
    """One message of a commit, kept until JetStream acknowledged it."""

    msg_id: str
    payload: bytes
    ids: list[str]  # every event_id, in slot order
    assigned: bytes  # 1 where the server made the id up (not remembered for duplicates)
    first_sent: float = field(default_factory=time.monotonic)

    @property
    def count(self) -> int:
        return len(self.ids)

    def client_pairs(self, base: int) -> tuple[list[str], range | list[int]]:
        """(client event_ids, their positions) once the message sits at `base`."""
        if not any(self.assigned):
            return self.ids, range(base, base + self.count)
        keep = [i for i, a in enumerate(self.assigned) if not a]
        return [self.ids[i] for i in keep], [base + i for i in keep]
