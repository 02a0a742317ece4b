"""The SQLite backend of the event log: the source of truth every graph state is rebuilt from.

One writer task owns every write and commits in groups: requests enqueue validated events and
wait; the writer takes everything queued, writes it with one executemany and one commit, then
wakes every waiter. While a commit is in flight new requests pile up, so batches grow with load
and a 202 always means "committed" without paying one commit per request. Reads (the fold) use
their own connection; WAL lets them run beside the writer, in this process or in a replica's.

Every SQL statement of the SQLite backend lives in gravityd/log/: the events here, the schema,
its migrations and the identity in sqlite_schema.py, the catalogue, the graph tables the
snapshotter publishes and retention in sqlite_tables.py, the bulk load in bulk.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from gravityd.core.events import MAX_ELAPSED_MS, FoldEvent, ValidEvent
from gravityd.core.takedowns import ADMIN_EVENT_TYPES, BLOCK
from gravityd.log import (
    Appended,
    BadRows,
    CommitTimes,
    EdgeRow,
    GalaxyRow,
    LogError,
    LogIdentity,
    LogMissing,
    NotALog,
)
from gravityd.log.event_ids import new_event_ids
from gravityd.log.sqlite_schema import (
    ProcessLock,
    check_readable,
    connect_sync,
    max_position,
    open_state,
    prepare,
    read_identity,
    transaction,
)
from gravityd.log.sqlite_tables import (
    catalog_size,
    current_blocks,
    delete_folded_before,
    set_cursor,
    track_meta,
    write_track_edges,
    write_track_galaxies,
)

T = TypeVar("T")

log = logging.getLogger("gravityd.log")

INSERT_EVENT = (
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
# (the fold ignores them; gravityd.core.takedowns applies them).
_READ_AFTER = (
    f"SELECT id, session_id, track_id, CASE WHEN {_PROBLEM} IS NULL THEN event_type END, ts,"
    " elapsed_ms, context FROM events WHERE id > ?1"
    " UNION ALL SELECT id, '', track_id, CASE blocked WHEN 1 THEN 'block' ELSE 'unblock' END, at,"
    " NULL, NULL FROM blocks WHERE id > ?1 ORDER BY 1 LIMIT ?2"
)
_INSERT_BLOCK = "INSERT INTO blocks (id, track_id, blocked, at) VALUES (?,?,?,?)"
_BAD_ROWS = (
    f"SELECT id, {_PROBLEM} AS problem FROM events WHERE id > ? AND id <= ? AND problem IS NOT NULL"
)


def _write_batch(
    conn: sqlite3.Connection, work: list[tuple[list[ValidEvent], float]], next_id: int
) -> tuple[list[list[Appended]], int]:
    """Assign ids, drop repeats of known event_ids, insert the rest in one transaction.

    Runs on the writer connection's thread. Ids are assigned here, by the only writer, so the
    answer carries them without a RETURNING round trip.
    """
    client_ids = list(dict.fromkeys(e.event_id for events, _ in work for e in events if e.event_id))
    existing = _lookup(conn, client_ids)
    anonymous = sum(1 for events, _ in work for e in events if e.event_id is None)
    fresh = iter(new_event_ids(anonymous))
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
                eid = next(fresh)
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
        with transaction(conn):
            conn.executemany(INSERT_EVENT, rows)
            if block_rows:
                conn.executemany(_INSERT_BLOCK, block_rows)
    return results, next_id


class _DbThread:
    """One SQLite connection on a thread of its own; callables run there one at a time, in order.

    sqlite3 connections belong to one thread, and a whole transaction (the duplicate check, the
    insert, the commit) must run in one hop: a hop per statement waits for a busy event loop
    each time. This is the shape of Datasette's execute_write_fn, owned by the log, instead of
    aiosqlite's internals.
    """

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, fut, loop))
        return await fut

    async def stop(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        opened: BaseException | None = None
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to every job, the first one is open()'s
            opened = exc
        while (job := self._jobs.get()) is not None:
            fn, args, fut, loop = job
            try:
                if conn is None:
                    raise LogError(f"cannot open the log: {opened}")
                result = fn(conn, *args)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, fut, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, fut, result, None)
        if conn is not None:
            conn.close()


def _settle(fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the waiter was cancelled (client gone); the work itself is done
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _noop(conn: sqlite3.Connection) -> None:
    return None


class SqliteLog:
    """The log in one SQLite file: a group-committing writer, or a read-only tail of it.

    `readonly=True` is a replica's view: it never creates, migrates or writes the events, takes
    no writer lock, and learns of other processes' commits by watching the WAL file (a stat per
    `poll_ms`, no query unless it changed; one query per second regardless, in case).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "FULL",
        max_commit_events: int = 20000,
        busy_timeout_ms: int = 5000,
        readonly: bool = False,
        poll_ms: float = 2.0,
    ) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.max_commit_events = max_commit_events
        self.readonly = readonly
        self.poll_s = poll_ms / 1000
        self.last_id = 0  # highest committed id this process knows of
        # Called after each commit with (new events, seconds), and after a failed one.
        self.on_commit: Callable[[int, float], None] | None = None
        self.on_commit_error: Callable[[], None] | None = None
        self._w: _DbThread | None = None
        self._r: _DbThread | None = None
        self._lock = ProcessLock(self.path)
        self._queue: deque[tuple[list[ValidEvent], float, asyncio.Future]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._next_id = 1
        self.reserved = 0  # ids up to here were reserved, not written: the fold skips them
        self.commits = CommitTimes()  # when each position became visible here: fold lag
        self.committed = asyncio.Event()  # set whenever last_id grows; the fold task waits on it
        self.identity: LogIdentity | None = None  # read by open()

    @property
    def description(self) -> str:
        return f"sqlite:///{self.path}"

    async def open(self) -> None:
        if self.readonly:
            await self._open_reader()
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._w = _DbThread("gravityd-log-writer", self._connect_writer)
            top, recorded = await self._w.run(open_state)
            self.last_id = top
            self._next_id = top + 1
            # Ids never go back, even when retention deleted every folded event.
            self.reserve_after(recorded)
            self.identity = await self._w.run(read_identity)
            self._r = _DbThread("gravityd-log-reader", self._connect_reader)
            await self._r.run(_noop)
        except sqlite3.DatabaseError as exc:
            await self._stop_threads()
            self._lock.release()
            raise NotALog(f"cannot open the log {self.path}: {exc}") from None
        except BaseException:
            await self._stop_threads()
            self._lock.release()
            raise
        self._tasks.append(asyncio.create_task(self._write_loop(), name="gravityd-log-writer"))

    async def _open_reader(self) -> None:
        if not Path(self.path).is_file():
            raise LogMissing(f"no log at {self.path} yet (a writer creates it)")
        self._r = _DbThread("gravityd-log-reader", self._connect_readonly)
        try:
            self.last_id, self.identity = await self._r.run(check_readable)
        except BaseException:
            await self._stop_threads()
            raise
        self.commits.note(self.last_id)
        self._tasks.append(asyncio.create_task(self._watch(), name="gravityd-log-watch"))

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        prepare(conn, self.synchronous)
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        return conn

    def _wal_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path + "-wal")
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    async def _watch(self) -> None:
        """Another process's commit grows or rewrites the WAL file: a stat notices it within
        poll_ms without a query; the query confirms and moves last_id."""
        assert self._r is not None
        loop = asyncio.get_running_loop()
        seen = self._wal_signature()
        checked = loop.time()
        while not self._closing:
            await asyncio.sleep(self.poll_s)
            sig = self._wal_signature()
            now = loop.time()
            if sig == seen and now - checked < 1.0:
                continue
            seen, checked = sig, now
            try:
                await self.refresh()
            except Exception as exc:  # a locked or vanished file: keep serving, keep trying
                log.warning("log poll failed", extra={"error": str(exc)})

    async def refresh(self) -> int:
        """Read the committed high-water mark now; wake the fold if it grew."""
        top = await self.high_water()
        if top > self.last_id:
            self.last_id = top
            self.commits.note(top)
            self.committed.set()
        return self.last_id

    async def high_water(self) -> int:
        if not self.readonly:
            return self.last_id
        if self._r is None:
            raise LogError(f"the log {self.path} is not open yet")
        return await self._r.run(max_position)

    async def append(
        self, events: list[ValidEvent], received_at: float | None = None
    ) -> list[Appended]:
        """Queue events for the next group commit; return once they are durable."""
        if self.readonly:
            raise LogError("this process opened the log read-only")
        if self._closing or not self._tasks:
            raise LogError("the log is closed")
        if not events:
            return []
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((events, received_at or time.time(), fut))
        self._wake.set()
        return await fut

    async def lookup(self, event_ids: list[str]) -> dict[str, int]:
        assert self._r is not None
        return await self._r.run(_lookup, list(dict.fromkeys(event_ids)))

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
        """One group commit: a single hop to the writer thread runs the whole transaction."""
        assert self._w is not None
        started = time.perf_counter()
        work = [(events, received_at) for events, received_at, _ in batch]
        try:
            results, next_id = await self._w.run(_write_batch, work, self._next_id)
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
            self.commits.note(self.last_id)
            self.committed.set()
        if self.on_commit is not None:
            self.on_commit(new, time.perf_counter() - started)
        for (_, _, fut), out in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(out)

    async def read_after(self, cursor: int, limit: int) -> tuple[list[FoldEvent], BadRows]:
        """Committed events with id > cursor, in id order: what the fold consumes; and the
        (id, problem) of the rows among them that the fold must skip.

        Plain rows in FoldEvent's field order: the fold only unpacks them, and building 2,000
        named tuples would hold the event loop for about a millisecond. Both queries run in one
        hop to the reader's thread.
        """
        assert self._r is not None
        return await self._r.run(_read_checked, cursor, limit)

    def forget_through(self, cursor: int) -> None:
        self.commits.forget_through(cursor)

    def lag_seconds(self, cursor: int, now: float | None = None) -> float:
        return self.commits.lag_seconds(cursor, now)

    def reserve_after(self, cursor: int) -> None:
        """New ids must come after a loaded snapshot's cursor, or the fold would skip them."""
        if self.readonly:
            return
        if cursor >= self._next_id:
            self._next_id = cursor + 1
            self.last_id = cursor
            self.reserved = cursor

    async def current_blocks(self) -> list[tuple[str, int, float]]:
        """(track_id, position, at) of every track blocked now, read from the log."""
        assert self._r is not None
        return await self._r.run(current_blocks)

    async def page_count(self) -> int:
        """The file's size in pages, as the writer sees it."""
        assert self._w is not None
        return await self._w.run(_pragma_value, "page_count")

    async def set_max_pages(self, pages: int) -> None:
        """Cap the log's size (SQLite's max_page_count on the writer): past it every commit
        fails whole with "database or disk is full", as on a full disk."""
        assert self._w is not None
        await self._w.run(_pragma_value, f"max_page_count = {int(pages)}")

    async def count(self) -> int:
        assert self._r is not None
        return await self._r.run(_count_events)

    async def track_meta(self, track_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """Titles and artists from the catalogue for these ids (absent ids are left out)."""
        assert self._r is not None
        return await self._r.run(track_meta, list(dict.fromkeys(track_ids)))

    async def catalog_size(self) -> int:
        assert self._r is not None
        return await self._r.run(catalog_size)

    async def publish_graph(
        self, cursor: int, snapshot: str, rows: Callable[[], Iterator[list[EdgeRow]]] | None
    ) -> None:
        """The snapshotter's tables: `gravity_cursor` and (when `rows`) `track_edges`.

        A short-lived connection of its own, in a worker thread: these tables are the graph's,
        not the events', so a replica may hold this duty while never writing an event.
        """

        def run() -> None:
            conn = connect_sync(self.path, self.synchronous, migrate=False)
            try:
                conn.execute("BEGIN IMMEDIATE")
                set_cursor(conn, cursor, snapshot)
                conn.execute("COMMIT")
                if rows is not None:
                    now = time.time()
                    write_track_edges(conn, rows(), now)
            finally:
                conn.close()

        await asyncio.to_thread(run)

    async def publish_galaxies(
        self, cursor: int, rows: Callable[[], Iterator[list[GalaxyRow]]]
    ) -> None:
        """The `track_galaxies` table, in a worker thread on a connection of its own."""

        def run() -> None:
            conn = connect_sync(self.path, self.synchronous, migrate=False)
            try:
                write_track_galaxies(conn, rows(), cursor)
            finally:
                conn.close()

        await asyncio.to_thread(run)

    async def retain(self, cursor: int, older_than: float) -> int:
        """Log retention (writer only): delete events at or below `cursor` received before
        `older_than`; the newest id always stays so ids never go back."""
        if self.readonly:
            return 0

        def run() -> int:
            conn = connect_sync(self.path, self.synchronous, migrate=False)
            try:
                return delete_folded_before(conn, cursor, older_than)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def drain(self) -> None:
        """Stop taking events and wait until every queued one is committed."""
        self._closing = True
        self._wake.set()
        for task in list(self._tasks):
            if task.get_name() == "gravityd-log-writer":
                await asyncio.shield(task)

    async def close(self) -> None:
        """Drain every queued event into the log, then close."""
        self._closing = True
        self._wake.set()
        try:
            for task in self._tasks:
                if task.get_name() == "gravityd-log-writer":
                    await task
                else:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            self._tasks = []
            await self._stop_threads()
            if not self.readonly:
                self._lock.release()

    async def _stop_threads(self) -> None:
        for worker in (self._w, self._r):
            if worker is not None:
                # closing after a failure must not mask it
                with contextlib.suppress(Exception):
                    await worker.stop()
        self._w = self._r = None


def _pragma_value(conn: sqlite3.Connection, pragma: str) -> int:
    return conn.execute(f"PRAGMA {pragma}").fetchone()[0]


def _count_events(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def _lookup(conn: sqlite3.Connection, event_ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(event_ids), 500):
        chunk = event_ids[i : i + 500]
        sql = f"SELECT event_id, id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})"
        out.update(conn.execute(sql, chunk).fetchall())
    return out


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
