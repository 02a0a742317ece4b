"""The SQLite log's file: its schema and migrations, connecting to it, transactions, the
one-writer lock, and the identity and readability checks a process makes before using it."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from gravityd.lockfile import PidLock
from gravityd.log import LogError, LogIdentity, LogLocked, LogMissing, NotALog
from gravityd.log.sqlite_tables import get_cursor

log = logging.getLogger("gravityd.log")

# Each entry migrates the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        track_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        user_id TEXT,
        ts REAL NOT NULL,
        received_at REAL NOT NULL,
        context TEXT,
        meta TEXT,
        elapsed_ms INTEGER
    );
    CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events(event_id);
    CREATE TABLE IF NOT EXISTS gravity_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cursor INTEGER NOT NULL,
        snapshot TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS track_edges (
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        weight REAL NOT NULL,
        pos REAL NOT NULL,
        neg REAL NOT NULL,
        n INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (src, dst)
    ) WITHOUT ROWID;
    """,
    # 2: the optional track catalogue (`gravityd catalog load`), for titles in the explorer.
    """
    CREATE TABLE IF NOT EXISTS tracks (
        track_id TEXT PRIMARY KEY,
        title TEXT,
        artist TEXT,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: takedowns (gravityd.core.takedowns). Each block or unblock is a row whose id comes from the
    # events' sequence, so read_after hands it to every process in log order.
    """
    CREATE TABLE IF NOT EXISTS blocks (
        id INTEGER PRIMARY KEY,
        track_id TEXT NOT NULL,
        blocked INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS blocks_track ON blocks(track_id, id);
    """,
    # 4: the log's identity (a random id made once, here), which every snapshot records, and
    # the snapshots of other logs `gravityd restore` adopted for this one.
    """
    CREATE TABLE IF NOT EXISTS log_identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        log_id TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    INSERT OR IGNORE INTO log_identity (id, log_id, created_at)
        VALUES (1, lower(hex(randomblob(16))), (julianday('now') - 2440587.5) * 86400.0);
    CREATE TABLE IF NOT EXISTS adopted_snapshots (
        origin TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        snapshot TEXT NOT NULL,
        adopted_at REAL NOT NULL,
        PRIMARY KEY (origin, cursor)
    ) WITHOUT ROWID;
    """,
    # 5: the galaxies beside track_edges (written with it by the snapshotter), for SQL readers.
    """
    CREATE TABLE IF NOT EXISTS track_galaxies (
        track_id TEXT PRIMARY KEY,
        galaxy INTEGER NOT NULL,
        centrality REAL NOT NULL,
        cursor INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
]
IDENTITY_PREFIX = "sqlite:"  # a SQLite log's identity is "sqlite:<32 hex digits>"
SCHEMA_VERSION = len(MIGRATIONS)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    """One transaction: committed whole, or rolled back whole on any exception (a full disk,
    a refused row), so the log never holds half a group commit."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect_sync(
    path: str | os.PathLike, synchronous: str = "FULL", *, migrate: bool = True
) -> sqlite3.Connection:
    """Open (and migrate) the log synchronously: for the CLI tools that run without a loop."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    if migrate:
        prepare(conn, synchronous)
    else:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def prepare(conn: sqlite3.Connection, synchronous: str) -> None:
    """WAL, the durability level, then the migrations this log still lacks."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LogError(
            f"{version=} of the log is newer than this gravityd knows ({SCHEMA_VERSION}); upgrade"
        )
    for target in range(version, SCHEMA_VERSION):
        conn.executescript(
            "BEGIN;" + MIGRATIONS[target] + f"PRAGMA user_version = {target + 1};COMMIT;"
        )
        log.info("log migrated", extra={"schema_version": target + 1})


class ProcessLock:
    """An exclusive advisory lock on `<db>.lock`: one process writes a log at a time."""

    def __init__(self, db_path: str | os.PathLike) -> None:
        self.path = Path(str(db_path) + ".lock")
        self._lock = PidLock(self.path)

    def acquire(self) -> None:
        if not self._lock.try_acquire():
            raise LogLocked(f"another gravityd process is using {self.path.with_suffix('')}")

    def release(self) -> None:
        self._lock.release()


def check_log_file(path: str | os.PathLike) -> int:
    """A replica's start-up check, without a loop: LogMissing (wait for it), NotALog (stop), or
    the high-water mark of a usable log."""
    if not Path(path).is_file():
        raise LogMissing(f"no log at {path} yet (a writer creates it)")
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise NotALog(f"cannot open {path}: {exc}") from None
    try:
        return check_readable(conn)[0]
    finally:
        conn.close()


def open_state(conn: sqlite3.Connection) -> tuple[int, int]:
    """The top position (events and blocks share one sequence) and the recorded cursor."""
    sql = (
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0),"
        " COALESCE((SELECT MAX(id) FROM blocks), 0)),"
        " COALESCE((SELECT cursor FROM gravity_cursor WHERE id = 1), 0)"
    )
    return conn.execute(sql).fetchone()


def check_readable(conn: sqlite3.Connection) -> tuple[int, LogIdentity]:
    """A replica's check: is this a gravityd log of this version? Its high-water mark and
    identity if so.

    Every read runs in one read transaction, so a writer creating or migrating the file at the
    same moment is seen before or after its commit, never half-way (a version of one moment
    and the tables of another made a new log look like "not a gravityd log"). A file locked
    while its writer sets it up is "not there yet", like an empty one.
    """
    try:
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            has_events = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone()
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            ready = has_events and version == SCHEMA_VERSION
            top = max_position(conn) if ready else 0
            identity = read_identity(conn) if ready else None
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise LogMissing(f"the log is being set up by its writer ({exc})") from None
        raise NotALog(f"not a gravityd log: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise NotALog(f"not a gravityd log: {exc}") from None
    if version > SCHEMA_VERSION:
        raise NotALog(
            f"the log's schema version {version} is newer than this gravityd's ({SCHEMA_VERSION})"
        )
    if not has_events and version == 0:
        # An empty file a writer is creating right now, or somebody else's database.
        if tables:
            raise NotALog("not a gravityd log: it has tables but no events table")
        raise LogMissing("the log is still empty (its writer has not created it yet)")
    if version < SCHEMA_VERSION or identity is None:
        raise LogMissing(f"the log is at schema version {version}; waiting for a writer to migrate")
    return top, identity


def read_identity(conn: sqlite3.Connection) -> LogIdentity:
    """The log's identity, the snapshots adopted for it, and the highest position it has
    given out or reserved (events, blocks, the recorded snapshot cursor)."""
    (log_id,) = conn.execute("SELECT log_id FROM log_identity WHERE id = 1").fetchone()
    adopted = conn.execute("SELECT origin, cursor FROM adopted_snapshots").fetchall()
    claimed = max(max_position(conn), get_cursor(conn))
    return LogIdentity(IDENTITY_PREFIX + log_id, frozenset(map(tuple, adopted)), claimed)


def record_adoption(conn: sqlite3.Connection, origin: str, cursor: int, snapshot: str) -> None:
    """`gravityd restore` installed a snapshot of another log (`origin`) for this one: from now
    on this log accepts that snapshot. Run it in the transaction that records the cursor."""
    conn.execute(
        "INSERT INTO adopted_snapshots (origin, cursor, snapshot, adopted_at) VALUES (?,?,?,?)"
        " ON CONFLICT(origin, cursor) DO UPDATE SET snapshot = excluded.snapshot,"
        " adopted_at = excluded.adopted_at",
        (origin, cursor, snapshot, time.time()),
    )


def max_position(conn: sqlite3.Connection) -> int:
    """The committed high-water mark: a block after the last event is a position too."""
    sql = (
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0),"
        " COALESCE((SELECT MAX(id) FROM blocks), 0))"
    )
    return conn.execute(sql).fetchone()[0]
