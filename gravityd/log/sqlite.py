"""The SQLite backend of the event log: the source of truth every graph state is rebuilt from.

One writer task owns every write and commits in groups: requests enqueue validated events and
wait; the writer takes everything queued, writes it with one executemany and one commit, then
wakes every waiter. While a commit is in flight new requests pile up, so batches grow with load
and a 202 always means "committed" without paying one commit per request. Reads (the fold) use
their own connection; WAL lets them run beside the writer.

The log sits behind a small interface (append a batch, read after a position, the committed
high-water mark) so a replicated stream can replace it later without touching the fold.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from random import getrandbits as _getrandbits

import aiosqlite

from gravityd.blocks import ADMIN_EVENT_TYPES, BLOCK
from gravityd.events import MAX_ELAPSED_MS, FoldEvent, ValidEvent
from gravityd.log import Appended, LogError, LogLocked

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
    # 3: takedowns (gravityd.blocks). Each block or unblock is a row whose id comes from the
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
]
SCHEMA_VERSION = len(MIGRATIONS)

_INSERT = (
    "INSERT INTO events (id, event_id, session_id, track_id, event_type, user_id, ts,"
    " received_at, context, meta, elapsed_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
# A row the fold cannot trust (written around the API: a hand-made INSERT, a backup from another
# version, a damaged page) is read back with a NULL event type, which the fold treats as "no
# signal, move the cursor on"; _BAD_ROWS names it and the reason so it is reported, never folded.
# SQLite checks this in C on the reader's thread, without the interpreter lock.
_PROBLEM = (
    "CASE"
    " WHEN typeof(session_id) != 'text' THEN 'session_id'"
    " WHEN typeof(track_id) != 'text' THEN 'track_id'"
    " WHEN event_type IS NULL OR event_type NOT IN"
    " ('play_start', 'play_10s', 'skip', 'radio_next', 'like') THEN 'event_type'"
    " WHEN typeof(ts) NOT IN ('real', 'integer') OR NOT ts BETWEEN -1e300 AND 1e300 THEN 'ts'"
    " WHEN elapsed_ms IS NOT NULL AND (typeof(elapsed_ms) != 'integer'"
    f" OR NOT elapsed_ms BETWEEN 0 AND {MAX_ELAPSED_MS}) THEN 'elapsed_ms'"
    " END"
)
# Block changes come back among the events, in position order, as rows of type block/unblock
# (the fold ignores them; gravityd.blocks applies them).
_READ_AFTER = (
    f"SELECT id, session_id, track_id, CASE WHEN {_PROBLEM} IS NULL THEN event_type END, ts,"
    " elapsed_ms, context FROM events WHERE id > ?1"
    " UNION ALL SELECT id, '', track_id, CASE blocked WHEN 1 THEN 'block' ELSE 'unblock' END, at,"
    " NULL, NULL FROM blocks WHERE id > ?1 ORDER BY 1 LIMIT ?2"
)
_INSERT_BLOCK = "INSERT INTO blocks (id, track_id, blocked, at) VALUES (?,?,?,?)"
_CURRENT_BLOCKS = (
    "SELECT track_id, id, at FROM blocks WHERE id IN (SELECT MAX(id) FROM blocks GROUP BY"
    " track_id) AND blocked = 1 ORDER BY id"
)
_BAD_ROWS = (
    f"SELECT id, {_PROBLEM} AS problem FROM events WHERE id > ? AND id <= ? AND problem IS NOT NULL"
)


def new_event_id() -> str:
    """A UUIDv7 (time-ordered), so server-assigned ids append at the right of the index.

    The 74 random bits come from `random`, not `secrets`: they only need to be unique, and this
    runs once per ingested event.
    """
    value = (time.time_ns() // 1_000_000) << 80 | _getrandbits(74)
    # version 7 in bits 76..79, variant 0b10 in bits 62..63
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _write_batch(
    conn: sqlite3.Connection, work: list[tuple[list[ValidEvent], float]], next_id: int
) -> tuple[list[list[Appended]], int]:
    """Assign ids, drop repeats of known event_ids, insert the rest in one transaction.

    Runs on the writer connection's thread. Ids are assigned here, by the only writer, so the
    answer carries them without a RETURNING round trip.
    """
    client_ids = list(dict.fromkeys(e.event_id for events, _ in work for e in events if e.event_id))
    existing: dict[str, int] = {}
    for i in range(0, len(client_ids), 500):
        chunk = client_ids[i : i + 500]
        sql = f"SELECT event_id, id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})"
        existing.update(conn.execute(sql, chunk).fetchall())
    rows = []
    block_rows = []
    results: list[list[Appended]] = []
    for events, received_at in work:
        out = []
        for e in events:
            if e.event_type in ADMIN_EVENT_TYPES:  # a takedown: the blocks table, same ids
                block_rows.append((next_id, e.track_id, e.event_type == BLOCK, e.ts))
                out.append(Appended(next_id, "", False))
                next_id += 1
                continue
            eid = e.event_id
            if eid is not None and eid in existing:
                out.append(Appended(existing[eid], eid, True))
                continue
            if eid is None:
                eid = new_event_id()
            else:
                existing[eid] = next_id
            rows.append(
                (
                    next_id,
                    eid,
                    e.session_id,
                    e.track_id,
                    e.event_type,
                    e.user_id,
                    e.ts,
                    received_at,
                    e.context,
                    e.meta,
                    e.elapsed_ms,
                )
            )
            out.append(Appended(next_id, eid, False))
            next_id += 1
        results.append(out)
    if rows or block_rows:
        conn.execute("BEGIN")
        try:
            conn.executemany(_INSERT, rows)
            if block_rows:
                conn.executemany(_INSERT_BLOCK, block_rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return results, next_id


def connect_sync(path: str | os.PathLike, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open (and migrate) the log synchronously: for the CLI tools that run without a loop."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    _prepare(conn, synchronous)
    return conn


def _prepare(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA busy_timeout = 5000")
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
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogLocked(
                f"another gravityd process is using {self.path.with_suffix('')}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SqliteLog:
    """Append-only event log with a single group-committing writer."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "FULL",
        max_commit_events: int = 20000,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.max_commit_events = max_commit_events
        self.last_id = 0  # highest committed id
        # Called after each commit with (new events, seconds), and after a failed one.
        self.on_commit: Callable[[int, float], None] | None = None
        self.on_commit_error: Callable[[], None] | None = None
        self._w: aiosqlite.Connection | None = None
        self._r: aiosqlite.Connection | None = None
        self._lock = ProcessLock(self.path)
        self._queue: deque[tuple[list[ValidEvent], float, asyncio.Future]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._closing = False
        self._next_id = 1
        self.reserved = 0  # ids up to here were reserved, not written: the fold skips them
        # (last id, commit time) per commit not yet folded: fold lag in seconds.
        self._commits: deque[tuple[int, float]] = deque()
        self.committed = asyncio.Event()  # set after every commit; the fold task waits on it

    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._w = await aiosqlite.connect(self.path, isolation_level=None)
            await self._w.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            conn_sync = sqlite3.connect(self.path, isolation_level=None)
            try:
                _prepare(conn_sync, self.synchronous)
            finally:
                conn_sync.close()
            await self._w.execute(f"PRAGMA synchronous = {self.synchronous}")
            sql = (
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0),"
                " COALESCE((SELECT MAX(id) FROM blocks), 0)),"
                " COALESCE((SELECT cursor FROM gravity_cursor WHERE id = 1), 0)"
            )
            async with self._w.execute(sql) as cur:
                top, recorded = await cur.fetchone()
            self.last_id = top
            self._next_id = top + 1
            # Ids never go back, even when retention deleted every folded event.
            self.reserve_after(recorded)
            self._r = await aiosqlite.connect(self.path, isolation_level=None)
            await self._r.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as exc:
            await self._close_conns()
            self._lock.release()
            raise LogError(f"cannot open the log {self.path}: {exc}") from None
        except BaseException:
            await self._close_conns()
            self._lock.release()
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="gravityd-log-writer")

    async def append(
        self, events: list[ValidEvent], received_at: float | None = None
    ) -> list[Appended]:
        """Queue events for the next group commit; return once they are durable."""
        if self._closing or self._writer is None:
            raise LogError("the log is closed")
        if not events:
            return []
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((events, received_at or time.time(), fut))
        self._wake.set()
        return await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[tuple[list[ValidEvent], float, asyncio.Future]] = []
                count = 0
                while self._queue and count < self.max_commit_events:
                    item = self._queue.popleft()
                    batch.append(item)
                    count += len(item[0])
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[tuple[list[ValidEvent], float, asyncio.Future]]) -> None:
        """One group commit: a single hop to aiosqlite's thread runs the whole transaction."""
        assert self._w is not None
        started = time.perf_counter()
        work = [(events, received_at) for events, received_at, _ in batch]
        try:
            # aiosqlite's public calls cost one thread hop each (BEGIN, executemany, COMMIT,
            # the duplicate check); under load each hop waits for a busy event loop, so the
            # transaction runs as one function on the connection's own thread. _execute and
            # _conn are aiosqlite internals (present from 0.20 to 0.22): pyproject pins the range
            # and every ingest test exercises them.
            results, next_id = await self._w._execute(
                _write_batch, self._w._conn, work, self._next_id
            )
        except sqlite3.OperationalError as exc:  # disk full, locked, I/O: nobody can commit
            self._fail(batch, exc)
            return
        except Exception as exc:
            if len(batch) > 1:
                # A row the database refuses must fail only the request that sent it.
                for item in batch:
                    await self._commit([item])
                return
            self._fail(batch, exc)
            return
        self._succeed(batch, results, next_id, started)

    def _fail(self, batch: list, exc: BaseException) -> None:
        log.error("log commit failed", extra={"error": str(exc)})
        if self.on_commit_error is not None:
            self.on_commit_error()
        err = LogError(f"the event log cannot take writes: {exc}")
        for _, _, fut in batch:
            if not fut.done():
                fut.set_exception(err)

    def _succeed(
        self, batch: list, results: list[list[Appended]], next_id: int, started: float
    ) -> None:
        new = next_id - self._next_id
        self._next_id = next_id
        if new:
            self.last_id = next_id - 1
            self._commits.append((self.last_id, time.time()))
            self.committed.set()
        if self.on_commit is not None:
            self.on_commit(new, time.perf_counter() - started)
        for (_, _, fut), out in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(out)

    async def read_after(
        self, cursor: int, limit: int
    ) -> tuple[list[FoldEvent], list[tuple[int, str]]]:
        """Committed events with id > cursor, in id order: what the fold consumes; and the
        (id, problem) of the rows among them that the fold must skip.

        Plain rows in FoldEvent's field order: the fold only unpacks them, and building 2,000
        named tuples would hold the event loop for about a millisecond. Both queries run in one
        hop to the reader's thread (aiosqlite's `_execute`, like the writer's commit).
        """
        assert self._r is not None
        return await self._r._execute(_read_checked, self._r._conn, cursor, limit)

    def forget_through(self, cursor: int) -> None:
        """Drop the commit times the fold has passed (called after every fold batch, so the
        record stays as short as the fold lag, scraped or not)."""
        commits = self._commits
        while commits and commits[0][0] <= cursor:
            commits.popleft()

    def lag_seconds(self, cursor: int, now: float | None = None) -> float:
        """Age of the oldest commit the fold has not reached yet (0 when caught up)."""
        self.forget_through(cursor)
        commits = self._commits
        if not commits:
            return 0.0
        return max(0.0, (now or time.time()) - commits[0][1])

    def reserve_after(self, cursor: int) -> None:
        """New ids must come after a loaded snapshot's cursor, or the fold would skip them."""
        if cursor >= self._next_id:
            self._next_id = cursor + 1
            self.last_id = cursor
            self.reserved = cursor

    async def count(self) -> int:
        assert self._r is not None
        async with self._r.execute("SELECT COUNT(*) FROM events") as cur:
            row = await cur.fetchone()
        return row[0]

    async def track_meta(self, track_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """Titles and artists from the catalogue for these ids (absent ids are left out)."""
        assert self._r is not None
        out: dict[str, tuple[str | None, str | None]] = {}
        ids = list(dict.fromkeys(track_ids))
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit is far above 500
            part = ids[i : i + 500]
            sql = (
                "SELECT track_id, title, artist FROM tracks WHERE track_id IN"
                f" ({','.join('?' * len(part))})"
            )
            async with self._r.execute(sql, part) as cur:
                for tid, title, artist in await cur.fetchall():
                    out[tid] = (title, artist)
        return out

    async def catalog_size(self) -> int:
        assert self._r is not None
        async with self._r.execute("SELECT COUNT(*) FROM tracks") as cur:
            row = await cur.fetchone()
        return row[0]

    async def drain(self) -> None:
        """Stop taking events and wait until every queued one is committed."""
        self._closing = True
        if self._writer is not None:
            self._wake.set()
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        """Drain every queued event into the log, then close."""
        self._closing = True
        if self._writer is not None:
            self._wake.set()
            try:
                await self._writer
            finally:
                self._writer = None
        await self._close_conns()
        self._lock.release()

    async def _close_conns(self) -> None:
        for conn in (self._w, self._r):
            if conn is not None:
                # closing after a failure must not mask it
                with contextlib.suppress(Exception):
                    await conn.close()
        self._w = self._r = None


# --------------------------------------------------------------------------- graph tables
# The daemon (from a worker thread, with its own connection) and `gravityd build` share these.

EdgeRow = tuple[str, str, float, float, float, int]


def write_track_edges(
    conn: sqlite3.Connection, chunks: Iterator[list[EdgeRow]], stamp: float
) -> int:
    """Upsert the graph's edges into track_edges chunk by chunk, then drop the ones gone.

    Short transactions per chunk keep the log's writer from waiting behind one long one. With
    decay on, every weight moves between two snapshots, so every row is rewritten; the delete
    of rows not stamped this time removes edges that were pruned.
    """
    total = 0
    for rows in chunks:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO track_edges (src, dst, weight, pos, neg, n, updated_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(src, dst) DO UPDATE SET weight=excluded.weight,"
            " pos=excluded.pos, neg=excluded.neg, n=excluded.n, updated_at=excluded.updated_at",
            [(*r, stamp) for r in rows],
        )
        conn.execute("COMMIT")
        total += len(rows)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM track_edges WHERE updated_at < ?", (stamp,))
    conn.execute("COMMIT")
    return total


def set_cursor(conn: sqlite3.Connection, cursor: int, snapshot: str) -> None:
    """Record the cursor of the newest durable snapshot (what a cron build resumes from)."""
    conn.execute(
        "INSERT INTO gravity_cursor (id, cursor, snapshot, updated_at) VALUES (1, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET cursor=excluded.cursor, snapshot=excluded.snapshot,"
        " updated_at=excluded.updated_at",
        (cursor, snapshot, time.time()),
    )


def get_cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT cursor FROM gravity_cursor WHERE id = 1").fetchone()
    return row[0] if row else 0


def _read_checked(
    conn: sqlite3.Connection, cursor: int, limit: int
) -> tuple[list[FoldEvent], list[tuple[int, str]]]:
    rows = conn.execute(_READ_AFTER, (cursor, limit)).fetchall()
    bad = conn.execute(_BAD_ROWS, (cursor, rows[-1][0])).fetchall() if rows else []
    return rows, bad


def read_after_sync(
    conn: sqlite3.Connection, cursor: int, limit: int
) -> tuple[list[FoldEvent], list[tuple[int, str]]]:
    """read_after for the CLI tools: the same rows, the same skipped ones."""
    return _read_checked(conn, cursor, limit)


def current_blocks(conn: sqlite3.Connection) -> list[tuple[str, int, float]]:
    """(track_id, position, at) of every blocked track, from the blocks table: for SQL
    consumers and checks; processes keep the state by folding the log (gravityd.blocks)."""
    return conn.execute(_CURRENT_BLOCKS).fetchall()


def delete_folded_before(
    conn: sqlite3.Connection, cursor: int, older_than: float, chunk: int = 10_000
) -> int:
    """Log retention: delete events already inside every retained snapshot and older than a
    cut-off, in short transactions. The newest id always stays so ids never go back."""
    deleted = 0
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
    limit_id = min(cursor, top - 1)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= ? AND"
            " received_at < ? ORDER BY id LIMIT ?)",
            (limit_id, older_than, chunk),
        )
        conn.execute("COMMIT")
        deleted += cur.rowcount
        if cur.rowcount < chunk:
            return deleted
