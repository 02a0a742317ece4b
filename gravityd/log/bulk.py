"""Bulk appends straight into the SQLite log, for `gravityd import --db` (no daemon running).

It takes the daemon's own `ProcessLock`, so it never writes beside a daemon or a cron build.
Rows arrive complete (ids included) and go in with one statement per chunk, `INSERT OR
IGNORE`: the unique index on event_id drops the repeats in C, so a rerun adds nothing without a
lookup per row. Worker processes hand their validated rows over as small scratch SQLite files
(`write_rows_file`), which `insert_file` copies in with one INSERT ... SELECT: SQLite moves the
rows in C, with none of the per-row Python (pickling, binding) this process would pay.
The ids the caller assigns may leave holes (bad or repeated lines); the log's readers skip a
position nobody wrote.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gravityd.log import LogError
from gravityd.log.sqlite import INSERT_EVENT
from gravityd.log.sqlite_schema import ProcessLock, connect_sync, transaction

_INSERT_OR_IGNORE = INSERT_EVENT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_TOP = (
    "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0),"
    " COALESCE((SELECT MAX(id) FROM blocks), 0),"
    " COALESCE((SELECT cursor FROM gravity_cursor WHERE id = 1), 0))"
)

_COLUMNS = (
    "id, event_id, session_id, track_id, event_type, user_id, ts, received_at, context, meta,"
    " elapsed_ms"
)
_SCRATCH = f"CREATE TABLE rows ({_COLUMNS.replace('id,', 'id INTEGER PRIMARY KEY,', 1)})"
_SCRATCH_INSERT = f"INSERT INTO rows ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
_COPY = f"INSERT OR IGNORE INTO main.events ({_COLUMNS}) SELECT {_COLUMNS} FROM scratch.rows"

Row = tuple  # the columns of sqlite.INSERT_EVENT, id first


def write_rows_file(path: str | os.PathLike, rows: list[Row]) -> None:
    """A scratch file of rows for `BulkLog.insert_file` (no journal, no sync: it is thrown
    away after the copy, and the copy into the log is the durable step)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(_SCRATCH)
        conn.execute("BEGIN")
        conn.executemany(_SCRATCH_INSERT, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


class BulkLog:
    """An exclusive bulk writer: `open`, `insert` chunks, `close`."""

    def __init__(self, path: str | os.PathLike, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._lock = ProcessLock(self.path)
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Lock (raises LogLocked while a daemon holds the log), create or migrate, connect."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._conn = connect_sync(self.path, self.synchronous)
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise LogError(f"cannot open the log {self.path}: {exc}") from None
        except BaseException:
            self._lock.release()
            raise

    def first_free_id(self, floor: int = 0) -> int:
        """The first position after every event, block and recorded cursor (and `floor`, the
        highest cursor of the snapshots), so the fold never skips what is imported."""
        assert self._conn is not None
        (top,) = self._conn.execute(_TOP).fetchone()
        return max(top, floor) + 1

    def insert(self, rows: list[Row]) -> int:
        """One transaction; returns how many rows were new (the rest repeated an event_id)."""
        assert self._conn is not None
        conn = self._conn
        before = conn.total_changes
        with transaction(conn):
            conn.executemany(_INSERT_OR_IGNORE, rows)
        return conn.total_changes - before

    def insert_file(self, path: str | os.PathLike) -> int:
        """Copy a `write_rows_file` file in, one transaction; returns how many rows were new."""
        assert self._conn is not None
        conn = self._conn
        conn.execute("ATTACH DATABASE ? AS scratch", (str(path),))
        try:
            before = conn.total_changes
            with transaction(conn):
                conn.execute(_COPY)
            return conn.total_changes - before
        finally:
            conn.execute("DETACH DATABASE scratch")

    def count(self) -> int:
        assert self._conn is not None
        return self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._lock.release()
