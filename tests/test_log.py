"""The SQLite backend on its own: the EventLog protocol, the read-only tail, server event ids."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from gravityd.core.events import ValidEvent
from gravityd.log import EventLog, LogError, LogMissing, NotALog
from gravityd.log.event_ids import new_event_ids
from gravityd.log.sqlite import SqliteLog
from gravityd.log.sqlite_schema import check_log_file


def ev(session: str, n: int, event_id: str | None = None) -> ValidEvent:
    track = str(uuid.UUID(int=n))
    return ValidEvent(event_id, session, track, "play_10s", None, 1.7e9 + n, None, None, None)


def test_server_event_ids_are_uuid7_unique_and_time_ordered() -> None:
    first = new_event_ids(2000)
    time.sleep(0.002)  # the next millisecond: ids made later sort after
    later = new_event_ids(10)
    for text in first + later:
        u = uuid.UUID(text)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == text
    assert len(set(first + later)) == 2010
    assert max(first) < min(later)
    assert new_event_ids(0) == []


async def test_both_modes_satisfy_the_protocol(tmp_path: Path) -> None:
    writer = SqliteLog(tmp_path / "l.db")
    reader = SqliteLog(tmp_path / "l.db", readonly=True, poll_ms=1)
    assert isinstance(writer, EventLog) and isinstance(reader, EventLog)
    with pytest.raises(LogMissing):
        await reader.open()  # before any writer created it
    await writer.open()
    try:
        await reader.open()
        try:
            assert reader.last_id == 0
            out = await writer.append([ev("s", 1, "a"), ev("s", 2)], 1.7e9)
            assert [a.id for a in out] == [1, 2]
            # The reader learns of the commit by itself, through the WAL file's change.
            await asyncio.wait_for(reader.committed.wait(), 10)
            assert reader.last_id == 2 and await reader.high_water() == 2
            rows, bad = await reader.read_after(0, 10)
            assert [r[0] for r in rows] == [1, 2] and bad == []
            assert await reader.lookup(["a", "zz"]) == {"a": 1}
            again = await writer.append([ev("s", 1, "a")], 1.7e9)
            assert again[0].duplicate and again[0].id == 1
            with pytest.raises(LogError):
                await reader.append([ev("s", 3)], 1.7e9)  # read-only: never writes an event
        finally:
            await reader.close()
    finally:
        await writer.close()


def test_check_log_file_tells_missing_from_foreign(tmp_path: Path) -> None:
    with pytest.raises(LogMissing):
        check_log_file(tmp_path / "none.db")
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(LogMissing):  # a writer is creating it right now
        check_log_file(empty)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(NotALog):
        check_log_file(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"no sqlite here " * 200)
    with pytest.raises(NotALog):
        check_log_file(junk)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(NotALog, match="newer"):
        check_log_file(newer)
